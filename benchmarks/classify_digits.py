"""MgNet vs pre-activation ResNet vs a plain CNN on the embedded 8x8 digits.

One run trains the three models with the same recipe (the ``mgnet train`` defaults) at
the same parameter budget, about 575k parameters:

* MgNet        ``mgnet_digits`` = mgnet[2,2,2]-[32,64,128]-Bl        575,594
* pre-act ResNet  ``preact_resnet_digits`` with width=29, blocks [2,2,2]  571,629
* plain CNN    ``plain_cnn`` with width=45, depth=3                    568,450

and prints, per model and seed, the test accuracy (of the model chosen on the validation
split), the parameter count and the training throughput (median images/s over the
epochs), with the ratios of MgNet's figures to each baseline's from the same run.

    python benchmarks/classify_digits.py                 # 30 epochs, seed 0
    python benchmarks/classify_digits.py --seeds 0 1 2 --threads 1

Throughput depends on the machine and its load; compare figures only within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from mgnet.train import TrainConfig, train

# name shown, registry name, create_model overrides: the ~575k-parameter budget
MODELS = [
    ("MgNet", "mgnet_digits", {}),
    ("pre-act ResNet", "preact_resnet_digits", {"width": 29}),
    ("plain CNN", "plain_cnn", {"width": 45, "depth": 3}),
]


def run_one(name: str, model: str, overrides: dict, seed: int, args, root: Path) -> dict:
    cfg = TrainConfig(
        model=model,
        model_args=overrides,
        data="digits",
        seed=seed,
        epochs=args.epochs,
        threads=args.threads,
        device=args.device,
        progress=False,
        output_dir=str(root / f"{model}-seed{seed}"),
    )
    log = StringIO()
    with redirect_stdout(log):
        results = train(cfg)
    rows = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").open()]
    return {
        "name": name,
        "model": model,
        "overrides": overrides,
        "seed": seed,
        "parameters": results["parameters"],
        "test_accuracy": results["test_accuracy"],
        "best_epoch": results["best_epoch"],
        "wall_time_s": results["wall_time_s"],
        "images_per_s": statistics.median(r["images_per_s"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="mgnet-bench-") as tmp:
        for seed in args.seeds:
            for name, model, overrides in MODELS:
                row = run_one(name, model, overrides, seed, args, Path(tmp))
                rows.append(row)
                print(
                    f"  {name:<15} seed {seed}: {row['test_accuracy']:6.2f}%  "
                    f"{row['images_per_s']:7.0f} img/s  {row['wall_time_s']:6.1f} s",
                    file=sys.stderr,
                    flush=True,
                )

    print(f"digits 8x8, {args.epochs} epochs, recipe of `mgnet train`, seeds {args.seeds}")
    print(
        f"{'model':<16}{'spec / overrides':<30}{'params':>9}{'test acc %':>12}"
        f"{'(min..max)':>17}{'train img/s':>13}"
    )
    summary = {}
    for name, model, overrides in MODELS:
        mine = [r for r in rows if r["name"] == name]
        acc = [r["test_accuracy"] for r in mine]
        ips = statistics.median(r["images_per_s"] for r in mine)
        summary[name] = (statistics.mean(acc), ips)
        spec = model + (
            "" if not overrides else " " + ",".join(f"{k}={v}" for k, v in overrides.items())
        )
        print(
            f"{name:<16}{spec:<30}{mine[0]['parameters']:>9,}{statistics.mean(acc):>12.2f}"
            f"{f'({min(acc):.2f}..{max(acc):.2f})':>17}{ips:>13,.0f}"
        )
    mg_acc, mg_ips = summary["MgNet"]
    for name in list(summary)[1:]:
        acc, ips = summary[name]
        print(
            f"MgNet / {name}: test accuracy {mg_acc:.2f} vs {acc:.2f} "
            f"(difference {mg_acc - acc:+.2f} points), throughput {mg_ips:,.0f} vs "
            f"{ips:,.0f} img/s (ratio {mg_ips / ips:.2f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
