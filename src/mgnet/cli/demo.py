"""``mgnet demo``: MgNet against a ResNet on the digits, then the same cycle solving Poisson."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="MgNet vs pre-act ResNet-18 on the digits, then the same cycle solving Poisson",
        description="Train MgNet (mgnet_digits) and the pre-activation ResNet-18 baseline "
        "with the same recipe on the embedded 8x8 digits; print test accuracy and parameter "
        "count side by side. Then solve 2D Poisson with the same cycle (sigma = identity, "
        "fixed stencils) and print iterations, convergence factor and time next to PyAMG's.",
    )
    p.add_argument("--epochs", type=int, help="epochs per model (default: the train default)")
    p.add_argument(
        "--baseline",
        default="preact_resnet18",
        help="the model MgNet is compared with (default: preact_resnet18)",
    )
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="CPU threads, 0: torch's (default: 1)")
    p.add_argument(
        "-o", "--output-dir", help="keep the runs here (default: a temporary folder, removed after)"
    )
    p.add_argument(
        "--poisson-n", type=int, default=1023, help="Poisson grid: n x n nodes (default: 1023)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mgnet.demo import run_demo

    run_demo(
        epochs=args.epochs,
        baseline=args.baseline,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        output_dir=args.output_dir,
        poisson_n=args.poisson_n,
    )
    return 0
