"""Neural operators on Darcy flow: mgno against fno, fno_small and unet, one recipe, one data set.

Same data, same epochs, same recipe (the packaged ``darcy_operator`` recipe: AdamW, lr 1e-3,
weight decay 1e-4, one-cycle schedule, relative L2 loss, pointwise Gaussian normalisation)
for every model, each trained by ``mgnet.train.train`` exactly as ``mgnet train --data
darcy`` trains it. The data come from this library's generator (``write_darcy``): the
solves at 129^2, the training set subsampled to 65^2 (every second node of the same fine
solves), the test set kept at 129^2 and subsampled to 65^2 (``test_65.mat``). The model
is chosen on a validation split (the last ``--val`` training samples) and tested once;
the table reports for each model

* its parameters;
* the test relative L2 and H1 errors at 65^2 (the resolution it trained at);
* the same model on the same test solves at 129^2 (resolution transfer: the weights as
  trained, the normalisers' statistics interpolated to the finer grid);
* training seconds per epoch (one thread), and the ratios of error and time to ``fno``'s.

Run (one benchmark at a time on a shared machine)::

    python benchmarks/darcy_operators.py --quick     # tiny sizes, seconds (a test runs it)
    python benchmarks/darcy_operators.py             # 1000 / 100 / 100 samples, 8 epochs
    python benchmarks/darcy_operators.py --train 1000 --epochs 100 --device cuda

Measured with ``python benchmarks/darcy_operators.py`` (the defaults: 1000 train / 100 val
/ 100 test at 65^2, solved at 129^2 with seed 0 in 154 s; 8 epochs, batch 10,
channels-last, one thread; 27 minutes in all), one run on a 2-core VM shared with other
jobs (load about 3), torch 2.14.1 CPU:

    model         params   rel L2  rel H1   L2@129  H1@129  s/epoch  L2/fno time/fno
    mgno         482,705   0.0378  0.2186   0.2024  0.7718     69.6    1.70     1.10
    fno        2,368,001   0.0223  0.1456   0.0638  0.3052     63.4    1.00     1.00
    fno_small    457,409   0.0323  0.1698   0.0606  0.2717     42.1    1.45     0.66
    unet         482,449   0.0218  0.1327   0.3969  0.7009     11.1    0.98     0.18

Test relative L2 after each epoch (metrics.jsonl, logged, never used for selection):

    mgno       0.116 0.117 0.082 0.060 0.052 0.046 0.039 0.038  (train 0.0376, val 0.0377)
    fno        0.109 0.081 0.046 0.037 0.027 0.024 0.023 0.022  (train 0.0178, val 0.0200)
    fno_small  0.112 0.101 0.062 0.049 0.039 0.035 0.034 0.032
    unet       0.102 0.129 0.082 0.033 0.030 0.032 0.022 0.022

What this shows, and what it does not:

* The issue's target (mgno at most 0.6x fno's test relative L2, with at most fno's
  parameters and the same epochs) is NOT met in this CPU budget: after 8 epochs mgno's
  error is 1.70x fno's (and 1.17x fno_small's, at the same parameter budget). In a first
  2-epoch probe on the same data mgno was slightly ahead (0.0715 against 0.0762, 0.94x);
  fno pulls ahead from the third epoch on. mgno's training and validation errors are
  equal (0.0376 / 0.0377): it underfits, it does not overfit; in this regime the
  question is how fast it optimises, not how well it generalises.
* Learning rate: on 500 training samples, 3 epochs, a peak lr of 3e-3 instead of 1e-3
  made fno better (test 0.096 -> 0.059) and mgno diverge (training relative L2 9.1 in the
  second epoch, test 0.37 at the end). The deep linear compositions inside a V-cycle
  (no normalisation between A, B, R and P) take a smaller step than FNO's layers; the
  recipe keeps 1e-3, which both survive.
SWEEP
* Resolution transfer: fno and fno_small keep their error at 129^2 (their weights act on
  physical frequencies); mgno (0.20) and unet (0.40) do not, as their learned 3 x 3
  stencils are in grid units and represent another operator on a grid twice as fine.
* Time: on this CPU an mgno epoch costs about an fno epoch (the V-cycle's 3 x 3
  convolutions at width 24 against FFTs of width 32); unet is 6x cheaper. On a GPU FNO's
  FFTs are cheap, so the ratios there will differ; run the longer comparison there:

      python benchmarks/darcy_operators.py --train 1000 --epochs 100 -b 20 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

MODELS = ("mgno", "fno", "fno_small", "unet")
REFERENCE = "fno"


def make_data(folder: Path, n_train: int, n_test: int, fine: int, coarse: int, seed: int) -> float:
    """Write the data set (solves at ``fine``, training set at ``coarse``) unless ``folder``
    already holds at least these samples of it (sample i of a split does not depend on how
    many are drawn, so a larger set's first samples are this set); returns the seconds
    spent generating."""
    from mgnet.data.darcy import DarcyParams, write_darcy

    meta = folder / "darcy.json"
    if meta.is_file():
        have = json.loads(meta.read_text())
        same = (have.get("resolution"), have.get("seed")) == (fine, seed)
        if same and have.get("train", 0) >= n_train and have.get("test", 0) >= n_test:
            return 0.0
    t0 = time.perf_counter()
    write_darcy(
        folder,
        DarcyParams(resolution=fine, seed=seed),
        n_train,
        n_test,
        train_resolution=coarse,
        test_resolutions=[coarse],
        force=True,
    )
    return time.perf_counter() - t0


def run_model(name: str, args: argparse.Namespace, data: Path, out: Path) -> dict:
    """Train ``name`` with the operator recipe; test at the training resolution (in the
    run) and at the fine one (``mgnet eval``'s evaluation)."""
    from mgnet.train import TrainConfig, load_recipe, train
    from mgnet.train.evaluation import evaluate_checkpoint

    model_args = json.loads(args.model_kwargs).get(name, {}) if args.model_kwargs else {}
    cfg = TrainConfig(
        **{
            **load_recipe("darcy_operator"),
            "model": name,
            "model_args": model_args,
            "data_dir": str(data),
            "data_args": {
                "n_train": args.train + args.val,
                "n_test": args.test,
                "val": args.val,
                "test_resolution": args.coarse,
            },
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            **({"lr": args.lr} if args.lr else {}),
            "seed": args.seed,
            "device": args.device,
            "channels_last": args.channels_last,
            "threads": 1,
            "progress": False,
            "output_dir": str(out / name),
        }
    )
    results = train(cfg)
    seen = args.train // args.batch_size * args.batch_size  # the sampler drops a partial batch
    rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    fine = evaluate_checkpoint(
        out / name / "best.pt",
        data_args={"test_resolution": args.fine},  # over the run's n_test, val, ...
        device=args.device,
        batch_size=2 * args.batch_size,
    )
    return {
        "model": name,
        "model_args": model_args,
        "parameters": results["parameters"],
        "rel_l2": results["test_rel_l2"],
        "rel_h1": results["test_rel_h1"],
        "fine_rel_l2": fine.rel_l2,
        "fine_rel_h1": fine.rel_h1,
        "best_epoch": results["best_epoch"],
        # training only (samples seen / samples per second); the epoch's wall time adds
        # the validation and test passes
        "train_s_per_epoch": statistics.median(seen / r["images_per_s"] for r in rows),
        "epoch_s": statistics.median(r["epoch_time_s"] for r in rows),
    }


def table(rows: list[dict], args: argparse.Namespace) -> str:
    ref = next((r for r in rows if r["model"] == REFERENCE), None)
    head = (
        f"{'model':<10} {'params':>9}  {'rel L2':>7} {'rel H1':>7}  "
        f"{'L2@' + str(args.fine):>7} {'H1@' + str(args.fine):>7}  {'s/epoch':>7}  "
        f"{'L2/fno':>6} {'time/fno':>8}"
    )
    lines = [head]
    for r in rows:
        ratio = f"{r['rel_l2'] / ref['rel_l2']:6.2f}" if ref else "     -"
        tratio = f"{r['train_s_per_epoch'] / ref['train_s_per_epoch']:8.2f}" if ref else "       -"
        lines.append(
            f"{r['model']:<10} {r['parameters']:>9,}  {r['rel_l2']:7.4f} {r['rel_h1']:7.4f}  "
            f"{r['fine_rel_l2']:7.4f} {r['fine_rel_h1']:7.4f}  {r['train_s_per_epoch']:7.1f}  "
            f"{ratio} {tratio}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; returns the table's rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--train", type=int, default=1000, help="training samples")
    parser.add_argument("--val", type=int, default=100, help="validation samples")
    parser.add_argument("--test", type=int, default=100, help="test samples")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("-b", "--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None, help="(default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="NCHW instead of channels-last (channels-last is faster for every model here)",
    )
    parser.add_argument(
        "--model-kwargs",
        default=None,
        help='JSON: keyword variants per model, e.g. \'{"mgno": {"width": 32}}\'',
    )
    parser.add_argument("--data", default="runs/bench-darcy/data", help="data folder (cached)")
    parser.add_argument("--out", default="runs/bench-darcy", help="run folders")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    args.fine, args.coarse = (65, 33) if args.quick else (129, 65)
    if args.quick:
        args.train, args.val, args.test, args.epochs, args.batch_size = 8, 2, 4, 1, 4
    models = [m for m in args.models.split(",") if m]
    torch.set_num_threads(1)
    data, out = Path(args.data), Path(args.out)
    if args.quick:
        data, out = data.with_name(data.name + "-quick"), out / "quick"
    gen = make_data(data, args.train + args.val, args.test, args.fine, args.coarse, args.seed)
    if gen:
        print(f"data: {args.train + args.val} + {args.test} solves at {args.fine}^2 in {gen:.0f} s")
    import shutil

    rows = []
    for name in models:
        shutil.rmtree(out / name, ignore_errors=True)
        t0 = time.perf_counter()
        rows.append(run_model(name, args, data, out))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(
        f"{args.train} train / {args.val} val / {args.test} test at {args.coarse}^2 (solved at "
        f"{args.fine}^2, seed {args.seed}); {args.epochs} epochs, batch {args.batch_size}, "
        f"darcy_operator recipe; {args.device}, one thread"
        + (", channels-last" if args.channels_last else "")
    )
    print(table(rows, args))
    print(
        "rel L2, rel H1: test errors at the training resolution, model chosen on val; "
        f"L2@{args.fine}, H1@{args.fine}: the same model on the same solves at {args.fine}^2; "
        "s/epoch: training seconds per epoch; the ratios are to fno's, from this run"
    )
    print(
        "longer run on a GPU: python benchmarks/darcy_operators.py --train 1000 --epochs 100 "
        "-b 20 --device cuda"
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
