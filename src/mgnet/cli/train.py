"""``mgnet train``: train a classifier or a neural operator; flags override a recipe, which
overrides the data's defaults (its packaged recipe, e.g. ``darcy_operator`` for
``--data darcy``), which override TrainConfig's."""

from __future__ import annotations

import argparse
import json

from mgnet.cli import UserError

__all__ = ["add_parser", "run"]


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (``width=32``, ``blocks=[2,2]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mgnet.train.config import (
        AMP_MODES,
        LOADERS,
        LOSSES,
        OPTIMIZERS,
        PROTOCOLS,
        SCHEDULERS,
        TrainConfig,
        list_recipes,
    )

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a classifier or a neural operator (default: a small MgNet on the "
        "embedded 8x8 digits)",
        description="Train a registered model (or an MgNet spec string) on a registered "
        "dataset: a classifier on images, or a neural operator (mgno, fno, fno_small, unet) "
        "on --data darcy. Writes config.json, metrics.jsonl, checkpoint.pt (every epoch), "
        "best.pt (best validation accuracy, or lowest validation relative L2) and "
        "results.json (test figures of the model chosen on the validation split) to the "
        "output directory. Precedence: defaults < the data's recipe (darcy: darcy_operator) "
        "< -c recipe < flags.",
    )
    arg = p.add_argument
    arg(
        "-c",
        "--config",
        metavar="RECIPE",
        help="a recipe: a JSON or YAML file mapping config fields, or the name of a packaged "
        f"one ({', '.join(list_recipes())})",
    )
    arg("--model", help=f"registry name or spec string (default: {d.model})")
    arg(
        "--model-kwargs",
        dest="model_args",
        nargs="+",
        type=key_value,
        metavar="KEY=VALUE",
        help="overrides for create_model, e.g. width=32 or spec='mgnet[2,2]-32'",
    )
    arg("--in-channels", type=int, help="input channels (default: the data's)")
    arg("--data", help=f"registered dataset (default: {d.data})")
    arg("--data-dir", help="folder of the dataset files (datasets that live in files)")
    arg(
        "--data-kwargs",
        dest="data_args",
        nargs="+",
        type=key_value,
        metavar="KEY=VALUE",
        help="the dataset's options, e.g. for darcy stride=5 (Li et al.'s 421 -> 85), "
        "n_train=1000, n_test=100, val=100, resolution=33, test_resolution=129",
    )
    arg("--download", action="store_true", default=None, help="fetch missing dataset files")
    arg(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="train without the dataset's augmentation",
    )
    arg("--epochs", type=int, help=f"(default: {d.epochs})")
    arg("-b", "--batch-size", type=int, help=f"per process (default: {d.batch_size})")
    arg("--lr", type=float, help=f"peak learning rate (default: {d.lr})")
    arg("--momentum", type=float, help=f"SGD momentum (default: {d.momentum})")
    arg(
        "--wd",
        "--weight-decay",
        dest="weight_decay",
        type=float,
        help=f"(default: {d.weight_decay})",
    )
    arg("--opt", dest="optimizer", choices=OPTIMIZERS, help=f"(default: {d.optimizer})")
    arg("--lr-scheduler", choices=SCHEDULERS, help=f"(default: {d.lr_scheduler})")
    arg("--lr-step-size", type=int, help=f"epochs per step of 'step' (default: {d.lr_step_size})")
    arg("--lr-gamma", type=float, help=f"factor per step of 'step' (default: {d.lr_gamma})")
    arg("--warmup-epochs", type=int, help=f"linear warm-up (default: {d.warmup_epochs})")
    arg("--label-smoothing", type=float, help=f"(default: {d.label_smoothing})")
    arg(
        "--loss",
        choices=LOSSES,
        help="auto: cross_entropy for classification data, rel_l2 (relative L2 error) for "
        "operator data; rel_h1: the relative H1 error",
    )
    arg("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA); 0: off")
    arg("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(ALPHA, ALPHA); 0: off")
    arg(
        "--model-ema",
        action="store_true",
        default=None,
        help="validate, select and test an exponential moving average of the weights",
    )
    arg("--model-ema-decay", type=float, help=f"EMA decay per step (default: {d.model_ema_decay})")
    arg("--seed", type=int, help=f"(default: {d.seed})")
    arg("--device", help="auto, cpu, cuda or cuda:N (default: auto = cuda if available)")
    arg("--amp", choices=AMP_MODES, help=f"mixed precision (default: {d.amp})")
    arg("--channels-last", action="store_true", default=None, help="NHWC memory format")
    arg("-j", "--workers", type=int, help=f"DataLoader worker processes (default: {d.workers})")
    arg("--loader", choices=LOADERS, help=f"in-memory sets on the device (default: {d.loader})")
    arg("--threads", type=int, help=f"CPU threads, 0: torch's choice (default: {d.threads})")
    arg(
        "--sync-bn",
        action="store_true",
        default=None,
        help="under torchrun: BatchNorm statistics of the global batch (one process: no-op)",
    )
    arg("--compile", action="store_true", default=None, help="torch.compile the model")
    arg(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic cuDNN and torch algorithms (bit-reproducible GPU runs; slower)",
    )
    arg(
        "--protocol",
        choices=PROTOCOLS,
        help="val: choose the best epoch on a validation split (default); paper: train on "
        "all training images, report the final and the best-over-epochs test accuracy",
    )
    arg(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write the epoch metrics to RUN/tensorboard (needs tensorboard)",
    )
    arg("-o", "--output-dir", help="run directory (default: a fresh runs/train/<data>-<model>[-N])")
    arg(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bar (it is shown only on a terminal anyway)",
    )
    arg("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint.pt")
    arg(
        "--test-only",
        action="store_true",
        help="only test the model of --resume DIR (its best.pt) on the test split",
    )
    p.set_defaults(run=run)


def train_config(args: argparse.Namespace):
    """The resolved TrainConfig of a `mgnet train` command line: defaults < recipe
    (``-c``) < flags, or the stored config of ``--resume DIR`` with runtime flags. A fresh
    run without ``-o`` gets ``output_dir=""``: :func:`run` claims its folder."""
    from mgnet.train import TrainConfig, load_recipe, resume_config
    from mgnet.train.task import task_defaults

    control = {"config", "resume", "test_only", "run", "command", "debug"}
    flags = {k: v for k, v in vars(args).items() if k not in control and v is not None}
    for key in ("model_args", "data_args"):
        if key in flags:
            flags[key] = dict(flags[key])
    if args.test_only and not args.resume:
        raise UserError("--test-only needs --resume DIR, the run whose model to test")
    if args.resume:
        if args.config:
            raise UserError("--resume continues a run with its stored config; leave -c out")
        return resume_config(args.resume, flags)
    values = {**(load_recipe(args.config) if args.config else {}), **flags}
    defaults = task_defaults(values.get("data", TrainConfig.data))
    return TrainConfig.from_dict({"output_dir": "", **defaults, **values})


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgnet.train import test_checkpoint, train
    from mgnet.train.rundir import fresh_run_dir

    cfg = train_config(args)
    if args.resume:
        if args.test_only:
            test_checkpoint(cfg)
        else:
            train(cfg, resume=True)
        return 0
    claimed = None
    if not cfg.output_dir:  # a fresh runs/train/<data>-<model>[-N], claimed atomically
        claimed = fresh_run_dir("runs/train", f"{cfg.data}-{cfg.model}")
        cfg.output_dir = str(claimed)
    try:
        train(cfg)
    except BaseException:
        if claimed is not None and not any(Path(claimed).iterdir()):
            Path(claimed).rmdir()  # a run that never started leaves no empty folder
        raise
    return 0
