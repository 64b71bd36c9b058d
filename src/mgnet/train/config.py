"""Training configuration: plain data in one dataclass.

A run is fully described by a :class:`TrainConfig`; it is saved as ``config.json`` in the
output directory and inside every checkpoint (as a plain dict), and can be read back from
a JSON or YAML recipe with :func:`load_recipe`. Precedence when the command line builds
one: the defaults below < a recipe file (``-c``) < explicit flags.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from mgnet.constants import DEVICE_KINDS
from mgnet.errors import first_line, quote
from mgnet.train.rundir import fresh_run_dir

__all__ = [
    "TrainConfig",
    "list_recipes",
    "load_recipe",
    "fresh_run_dir",
    "OPTIMIZERS",
    "SCHEDULERS",
    "AMP_MODES",
    "DEVICES",
    "PROTOCOLS",
    "LOSSES",
]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "step", "onecycle", "none")
AMP_MODES = ("none", "bf16", "fp16")
LOADERS = ("auto", "device", "torch")
DEVICES = ("auto", *DEVICE_KINDS, "cuda:N")
PROTOCOLS = ("val", "paper")
# the training loss (mgnet.train.task.LOSSES; auto: the task's own)
LOSSES = ("auto", "cross_entropy", "rel_l2", "rel_h1")

# Recipes (load_recipe): file suffixes, and what one may hold at most.
RECIPE_SUFFIXES = (".yaml", ".yml", ".json")
MAX_RECIPE_BYTES = 1 << 20
MAX_RECIPE_VALUES = 10_000

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
    ``data_dir`` and ``download`` (for datasets that live in files), ``augment``,
    ``data_args`` (the dataset's own options, e.g. ``{"stride": 5}`` for ``darcy``; see
    ``DatasetInfo.options``).

    Recipe: ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``weight_decay``,
    ``optimizer`` (sgd | adam | adamw; ``adam`` adds the weight decay to the gradient,
    ``adamw`` decouples it), ``lr_scheduler`` (cosine | step | onecycle | none) with
    ``lr_step_size``/``lr_gamma`` for ``step`` and ``warmup_epochs`` (linear warm-up before
    cosine or step), ``label_smoothing`` (classification only), ``loss`` (auto |
    cross_entropy | rel_l2 | rel_h1: auto is cross-entropy for classification data and
    the relative L2 error for operator data such as ``darcy``).

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
    data_args: dict[str, Any] = field(default_factory=dict)
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
    loss: str = "auto"
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
                raise ValueError(f"{f.name}: {quote(value)} is not accepted; expected {f.type}")
            if f.type == "float":
                setattr(self, f.name, float(value))
            if f.type == "list[float] | None" and value is not None:
                numbers = all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
                )
                if not value or not numbers:
                    raise ValueError(
                        f"{f.name}: {quote(value)} is not accepted; expected a list of "
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
            ("loss", self.loss in LOSSES, ", ".join(LOSSES)),
            ("mixup", self.mixup >= 0, "a number >= 0 (0: off)"),
            ("cutmix", self.cutmix >= 0, "a number >= 0 (0: off)"),
            ("model_ema_decay", 0 < self.model_ema_decay < 1, "a number in (0, 1)"),
            ("amp", self.amp in AMP_MODES, ", ".join(AMP_MODES)),
            (
                "device",
                self.device in ("auto", *DEVICE_KINDS)
                or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
                ", ".join(DEVICES),
            ),
            ("workers", self.workers >= 0, "an integer >= 0"),
            ("loader", self.loader in LOADERS, ", ".join(LOADERS)),
            ("threads", self.threads >= 0, "an integer >= 0 (0: torch's default)"),
            ("model_args", isinstance(self.model_args, dict), "a dict of keyword arguments"),
            ("data_args", isinstance(self.data_args, dict), "a dict of the dataset's options"),
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
                    f"{name}: {quote(getattr(self, name))} is not accepted; expected {accepted}"
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


def list_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``mgnet train -c NAME``)."""
    folder = resources.files("mgnet") / "configs"
    return sorted(
        f.name.rsplit(".", 1)[0]
        for f in folder.iterdir()
        if f.is_file() and f.name.endswith(RECIPE_SUFFIXES)
    )


def _recipe_source(recipe: str | Path) -> tuple[str, Any]:
    """(how to name it in a message, a readable file) for a recipe path or packaged name."""
    path = Path(recipe)
    name = quote(str(recipe))
    if path.is_file():
        return name, path
    if path.exists():
        raise ValueError(f"config: {name} is a folder; expected a recipe file or name")
    stem = path.name[: -len(path.suffix)] if path.suffix in RECIPE_SUFFIXES else path.name
    packaged = list_recipes()
    if str(recipe) in (stem, path.name) and stem in packaged:  # a bare name, no folder
        folder = resources.files("mgnet") / "configs"
        found = next(f for f in folder.iterdir() if f.name.rsplit(".", 1)[0] == stem)
        return f"packaged recipe {stem!r}", found
    raise FileNotFoundError(
        f"config: {name} is neither a recipe file nor a packaged recipe; "
        f"packaged: {', '.join(packaged)}"
    )


def _check_size(values: Any, where: str) -> None:
    """Refuse a value that expands to more than MAX_RECIPE_VALUES values once its shared
    parts are counted as often as they are used (YAML aliases can nest a 400-byte file into
    billions of values, and make it self-referencing)."""
    budget = MAX_RECIPE_VALUES
    stack = [values]
    while stack:
        value = stack.pop()
        budget -= 1
        if budget < 0:
            raise ValueError(
                f"config: {where} expands to more than {MAX_RECIPE_VALUES:,} values (nested "
                "or recursive YAML aliases?); a recipe is a mapping of config fields"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set)):
            stack.extend(value)


def load_recipe(recipe: str | Path) -> dict[str, Any]:
    """Read a recipe: a JSON or YAML mapping of :class:`TrainConfig` fields.

    ``recipe`` is a file, or the name of a recipe shipped with the package (see
    :func:`list_recipes`; ``"cifar10_mgnet_paper"`` works from any folder after
    ``pip install``). A file larger than MAX_RECIPE_BYTES, or a YAML file whose aliases
    expand to more than MAX_RECIPE_VALUES values, is refused; messages quote at most about
    200 characters of what the file holds.
    """
    where, source = _recipe_source(recipe)
    with source.open("rb") as fh:
        data = fh.read(MAX_RECIPE_BYTES + 1)
    if len(data) > MAX_RECIPE_BYTES:
        raise ValueError(f"config: {where} is larger than {MAX_RECIPE_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"config: {where} is not UTF-8 text") from None
    if source.name.lower().endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                "config: reading a YAML recipe needs PyYAML (pip install "
                "pyyaml), or give the recipe as .json"
            ) from None
        parse, invalid, kind = yaml.safe_load, yaml.YAMLError, "YAML"
    else:
        parse, invalid, kind = json.loads, json.JSONDecodeError, "JSON"
    try:
        values = parse(text)
    except invalid as e:
        raise ValueError(f"config: {where} is not valid {kind} ({first_line(e)})") from None
    except RecursionError:
        raise ValueError(f"config: {where} nests too deeply") from None
    if not isinstance(values, dict):
        raise ValueError(f"config: {where} must hold a mapping of config fields")
    _check_size(values, where)
    bad = next((k for k in values if not isinstance(k, str)), None)
    if bad is not None:
        raise ValueError(f"config: {where} has the key {quote(bad)}; keys are field names")
    return values
