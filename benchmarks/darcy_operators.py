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
/ 100 test at 65^2, solved at 129^2 with seed 0; 8 epochs, batch 10, channels-last, one
thread), torch 2.14.1 CPU, on a 2-core VM shared with other jobs. Two runs on the same
data: the one before mgno's transfers started as the multigrid ones (load about 3) and the
one after (load 5 to 6, so its seconds are 1.5 to 2.6 times the first run's). On one thread
the errors are deterministic: fno's, fno_small's and unet's are the same in both runs.

    model         params   rel L2  rel H1   L2@129  H1@129  s/epoch  L2/fno
    mgno         482,705   0.0184  0.1139   0.0399  0.1561    178.7    0.83
    fno        2,368,001   0.0223  0.1456   0.0638  0.3052    121.7    1.00
    fno_small    457,409   0.0323  0.1698   0.0606  0.2717     63.8    1.45
    unet         482,449   0.0218  0.1327   0.3969  0.7009     16.9    0.98
    mgno, before 482,705   0.0378  0.2186   0.2024  0.7718     69.6    1.70

(The second run, 58 minutes in all, except "mgno, before": the first run, at about half
the load, where fno took 63.4 s/epoch, fno_small 42.1 and unet 11.1. mgno's L2@129 and
H1@129 are those of the refined cycle below: the second run's code predates the record of
the trained grid, so its weights were evaluated again (``mgnet eval``'s
evaluate_checkpoint) with the grid, 65 x 65, added to them; the J = 5 grids as they are
give 0.238 and 0.509. With the code as it is, training records the grid and the
benchmark reports the refined figures.)

Test relative L2 after each epoch (metrics.jsonl, logged, never used for selection):

    mgno       0.091 0.094 0.065 0.055 0.039 0.024 0.021 0.018  (train 0.0183, val 0.0176)
    fno        0.109 0.081 0.046 0.037 0.027 0.024 0.023 0.022  (train 0.0178, val 0.0200)
    fno_small  0.112 0.101 0.062 0.049 0.039 0.035 0.034 0.032
    unet       0.102 0.129 0.082 0.033 0.030 0.032 0.022 0.022
    mgno, before 0.116 0.117 0.082 0.060 0.052 0.046 0.039 0.038  (train 0.0376, val 0.0377)

What changed, and why:

* Initialisation of R and P. mgno underfitted (training error = validation error), and
  the cause is in the parameterisation: with PyTorch's default initialisation every 3 x 3
  convolution is a random map of gain about 1/sqrt(3), and the path through grid l of a
  V-cycle is a product of 2l + 1 of them, so the coarse grids, which carry the global
  part of the operator, start almost silent (a fresh cycle passes a smooth field and
  noise with the same gain) and learn through equally small gradients. R now starts as
  full weighting and P as bilinear interpolation on every channel (``transfer_init``,
  docs/theory.md section 8); A and B start random, everything stays learned. Same
  parameters, same cost per epoch. After 8 epochs: 0.0378 -> 0.0184, from 1.70x fno's
  error to 0.83x: mgno now beats fno with a fifth of its parameters, and fno_small (its
  parameter match) by 1.75x.
* Resolution transfer. The learned stencils are in grid units and a J-grid cycle on a
  grid twice as fine has its coarsest grid twice as fine too: another operator (0.24 at
  129^2). mgno now records the grid it trains on, and on a grid 2^k times finer runs each
  cycle on k more finest grids that reuse the finest grid's A, R, P and its B scaled by
  4^-i (i grids finer: a smoother's correction from local data shrinks like h^2 for a
  second-order operator), so the coarse grids are the physical grids it learned on
  (``mgnet.models.operators.refined_cycle``; no new parameters). On the same weights:
  L2@129 0.238 -> 0.040, better than fno's 0.064. Scaling B alone is what works here:
  also scaling A by 4 (the consistent rediscretisation) gave 0.137, no scaling 0.196.
* Probes (400 train / 100 val / 100 test at 65^2, 3 epochs, same recipe; test rel L2):

      mgno, random R, P (before)                         0.1068
      mgno, R full weighting, P bilinear (now)           0.0790
      ... R = 2 x full weighting, B x J / sum of 2^l     0.0992
      ... R = P^T (Galerkin, 4 x), B x J / sum of 4^l    0.245 after 2 epochs (stuck)
      ... nu = (1, 0) on every grid, 5 layers (472,937)  0.0988
      fno                                                0.1047
      fno_small                                          0.1075

  The published MgNO configuration (pre-smoothing only, five layers) trained worse than
  nu = (1, 1) with four; louder coarse grids at the start (the Galerkin scaling that an
  inverse Laplacian would want) trained worse or not at all.

What falls short:

* The issue's target, mgno at 0.6x fno's test error, is not met in this CPU budget:
  0.83x (0.0184 against 0.0223; 0.6x is 0.0134). mgno still underfits (train 0.0183 =
  test 0.0184) and is still descending at the last epoch (0.021 -> 0.018), as fno is;
  in 8 epochs (800 steps) neither has converged, and the ratio after 100 epochs is not
  known here (run it on a GPU, command below).
* Learning rate: with a peak lr of 3e-3 (400 train + 100 val, 3 epochs) mgno still
  diverges, multigrid start or not (training rel L2 5.9 in the first epoch, 1e10 in the
  second), where fno improves (an earlier probe on 500 samples: 0.096 -> 0.059). The
  V-cycle is a deep linear composition (2J - 1 maps or more in a row, no normalisation),
  and Adam's steps, about lr each, compound along it; the shared recipe keeps 1e-3.
* Time: an mgno epoch costs about an fno epoch on this CPU (69.6 against 63.4 s in the
  first run); unet is 6x cheaper. On a GPU FNO's FFTs are cheap, so the ratios there will
  differ; run the longer comparison there:

      python benchmarks/darcy_operators.py --train 1000 --epochs 100 -b 20 --device cuda

How this mgno differs from MgNO as published (He, Liu, Xu, ICLR 2024, and its authors'
public Darcy script): grids of 2^k + 1 points with 3 x 3 stride-2 R and 3 x 3 transposed
P (the vertex-centred transfers; the published code works on 2^k points with a 4 x 4
transposed P and restricts f and u separately), zero padding as the Dirichlet boundary
(the script's default is reflection), nu = (1, 1) on every grid and 4 layers (the script:
pre-smoothing only, 1, 1, 1, 2, 2 steps from fine to coarse, and 5 layers of width 24),
a 1x1 lift and FNO's two-layer projection (the paper has neither: its first layer takes
a itself, its last is a 3 x 3 convolution), the multigrid start of R and P and the
refined cycle on finer grids (the published code initialises every convolution at
PyTorch's default), and the training recipe: this benchmark's shared one (AdamW, lr
1e-3, one-cycle, 8 epochs) against the script's Adam at 3e-4, one-cycle, 500 epochs,
batch 8.
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
