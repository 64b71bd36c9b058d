"""Training configuration: plain data in one dataclass.

A run is fully described by a :class:`TrainConfig`; it is saved as ``config.json`` in the
output directory and inside every checkpoint (as a plain dict), and can be read back from
a JSON or YAML recipe with :func:`load_recipe`. Precedence when the command line builds
one: the defaults below < a recipe file (``-c``) < explicit flags.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mgnet.log import clip
from mgnet.train.rundir import fresh_run_dir

__all__ = [
    "TrainConfig",
    "load_recipe",
    "fresh_run_dir",
    "OPTIMIZERS",
    "SCHEDULERS",
    "AMP_MODES",
    "DEVICES",
    "PROTOCOLS",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULERS = ("cosine", "step", "onecycle", "none")
AMP_MODES = ("none", "bf16", "fp16")
LOADERS = ("auto", "device", "torch")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
PROTOCOLS = ("val", "paper")

_TYPES = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "str | None": (str, type(None)),
    "int | None": (int, type(None)),
    "dict[str, Any]": (dict,),
    "list[float] | None": (list, tuple, type(None)),
}

# Fields that may change when a run is resumed: they do not alter the numbers it computes.
RUNTIME_FIELDS = ("device", "workers", "threads", "progress", "data_dir", "tensorboard")


@dataclass
class TrainConfig:
    """Everything a training run depends on.

    Model and data: ``model`` (registry name or MgNet spec string), ``model_args`` (keyword
    overrides for ``create_model``, e.g. ``{"width": 32}``), ``in_channels`` (None: the
    data's channels; anything else must match them), ``data`` (registry name),
    ``data_dir`` and ``download`` (for datasets that live in files), ``augment``.

    Recipe: ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``,
    ``optimizer`` (sgd | adamw), ``lr_scheduler`` (cosine | step | onecycle | none) with
    ``lr_step_size``/``lr_gamma`` for ``step`` and ``warmup_epochs`` (linear warm-up before
    cosine or step), ``label_smoothing``.

    Execution: ``seed``, ``device`` (auto | cpu | cuda | cuda:N), ``amp`` (none | bf16 |
    fp16), ``channels_last``, ``workers`` (DataLoader processes), ``loader`` (auto |
    device | torch: whether an in-memory image set is served batch-wise from the device by
    :class:`~mgnet.data.device_loader.DeviceLoader`; auto does so on CUDA), ``threads`` (CPU threads
    of torch's intra-op pool during the run; 0 keeps torch's default; the default 1 suits
    the small models here, which gain little from more threads, and stays fast when the
    cores are shared, where a full thread pool stalls), ``output_dir``,
    ``progress`` (progress bar on a terminal), ``sync_bn`` (BatchNorm statistics over the
    whole global batch under ``torchrun``; a no-op in a single process), ``compile``
    (``torch.compile`` the model and its evaluation copy), ``deterministic`` (cuDNN in
    deterministic mode without autotuning, and ``torch.use_deterministic_algorithms``
    (warnings only for operations that have no deterministic version); for runs to be
    repeated bit for bit on a GPU), ``tensorboard`` (also write the epoch metrics as
    TensorBoard scalars to ``output_dir/tensorboard``; needs the tensorboard package).

    Protocol: ``protocol="val"`` (default) carves the fixed validation split from the
    training images, chooses the best epoch on it and tests that model once;
    ``"paper"`` trains on all training images, tests after every epoch and reports the
    final epoch's test accuracy, plus the best test accuracy over the epochs (the rule
    the MgNet authors' code reports; it selects on the test split). ``mean``/``std``:
    per-channel normalization constants to use instead of the dataset table's (None:
    the table's, the statistics of the training split); the paper recipes set the
    authors' constants.
    """

    model: str = "mgnet_digits"
    model_args: dict[str, Any] = field(default_factory=dict)
    in_channels: int | None = None
    data: str = "digits"
    data_dir: str | None = None
    download: bool = False
    augment: bool = True
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    lr_scheduler: str = "cosine"
    lr_step_size: int = 10
    lr_gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    model_ema: bool = False
    model_ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    workers: int = 0
    loader: str = "auto"
    threads: int = 1
    sync_bn: bool = False
    compile: bool = False
    deterministic: bool = False
    tensorboard: bool = False
    protocol: str = "val"
    mean: list[float] | None = None
    std: list[float] | None = None
    output_dir: str = "runs/train"
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first bad field and what is accepted."""
        for f in fields(self):
            value = getattr(self, f.name)
            accepted = _TYPES.get(str(f.type))
            wrong_bool = isinstance(value, bool) and bool not in (accepted or (bool,))
            if accepted is not None and (wrong_bool or not isinstance(value, accepted)):
                raise ValueError(f"{f.name}: {clip(value)} is not accepted; expected {f.type}")
            if f.type == "float":
                setattr(self, f.name, float(value))
            if f.type == "list[float] | None" and value is not None:
                numbers = all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
                )
                if not value or not numbers:
                    raise ValueError(
                        f"{f.name}: {clip(value)} is not accepted; expected a list of "
                        "numbers, one per channel"
                    )
                setattr(self, f.name, [float(v) for v in value])
        checks = [
            ("epochs", self.epochs >= 1, "a positive integer"),
            ("batch_size", self.batch_size >= 1, "a positive integer"),
            ("lr", self.lr > 0, "a positive number"),
            ("momentum", 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, ", ".join(OPTIMIZERS)),
            ("lr_scheduler", self.lr_scheduler in SCHEDULERS, ", ".join(SCHEDULERS)),
            ("lr_step_size", self.lr_step_size >= 1, "a positive integer"),
            ("lr_gamma", 0 < self.lr_gamma <= 1, "a number in (0, 1]"),
            (
                "warmup_epochs",
                0 <= self.warmup_epochs < self.epochs,
                f"an integer in [0, epochs={self.epochs})",
            ),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
            ("mixup", self.mixup >= 0, "a number >= 0 (0: off)"),
            ("cutmix", self.cutmix >= 0, "a number >= 0 (0: off)"),
            ("model_ema_decay", 0 < self.model_ema_decay < 1, "a number in (0, 1)"),
            ("amp", self.amp in AMP_MODES, ", ".join(AMP_MODES)),
            (
                "device",
                self.device in ("auto", "cpu", "cuda")
                or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
                ", ".join(DEVICES),
            ),
            ("workers", self.workers >= 0, "an integer >= 0"),
            ("loader", self.loader in LOADERS, ", ".join(LOADERS)),
            ("threads", self.threads >= 0, "an integer >= 0 (0: torch's default)"),
            ("model_args", isinstance(self.model_args, dict), "a dict of keyword arguments"),
            ("protocol", self.protocol in PROTOCOLS, ", ".join(PROTOCOLS)),
            (
                "std",
                self.std is None or min(self.std) > 0,
                "positive numbers, one per channel",
            ),
            (
                "mean",
                (self.mean is None) == (self.std is None),
                "mean and std given together (or neither)",
            ),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(
                    f"{name}: {clip(getattr(self, name))} is not accepted; expected {accepted}"
                )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON-able, loadable with ``torch.load(weights_only=True)``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys are an error that lists the accepted ones."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            shown = ", ".join(unknown)[:200]
            raise ValueError(f"config: unknown key(s) {shown}; accepted: {', '.join(names)}")
        return cls(**values)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe: a JSON or YAML mapping of :class:`TrainConfig` fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config: no such recipe file {str(path)!r}")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                "config: reading a YAML recipe needs PyYAML (pip install "
                "pyyaml), or give the recipe as .json"
            ) from None
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(
                f"config: {str(path)!r} is not valid YAML ({str(e).splitlines()[0]})"
            ) from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config: {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"config: {str(path)!r} must hold a mapping of config fields")
    return values
