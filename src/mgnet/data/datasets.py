"""Datasets for the classifiers, each defined in ONE place: a :class:`DatasetInfo`.

A registered dataset states its classes, image shape, normalization statistics (mean and
std per channel, of the training split), how it is split into train/val/test and which
augmentation the training split gets. :func:`get_dataset` returns the three splits as
map-style datasets of ``(image, label)`` with images already normalized, ready for a
``DataLoader``.

Registered now:

* ``digits``: the 8x8 handwritten digits of the UCI "Optical Recognition of Handwritten
  Digits" data (E. Alpaydin and C. Kaynak, 1998), as scikit-learn bundles them (1,797
  images, 10 classes, pixel values 0..16), shipped with this package as
  ``mgnet/data/digits.npz`` (attribution and licences in ``DIGITS_LICENSE.txt`` next to
  it), so nothing is downloaded and scikit-learn is not needed. A fixed stratified split:
  1,257 train / 180 val / 360 test images (70 / 10 / 20 %), stored in the same file
  (drawn once with scikit-learn's ``train_test_split``, seed 0; a test checks both the
  images and the split against scikit-learn when it is installed).

* ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``imagefolder``:
  files in torchvision's layouts under ``root``, described by the one table of
  :mod:`mgnet.data.vision` (statistics, split, augmentation) and registered here.

* ``darcy`` (``task="operator"``): pairs (coefficient, solution) of Darcy flow from
  ``root/train.mat`` and ``root/test.mat`` (``mgnet data darcy``, or Li et al.'s
  published files), read by :func:`mgnet.data.darcy.darcy_splits`; its ``options``
  (``stride``, ``resolution``, ``n_train``, ``n_test``, ``val``, ``test_resolution``)
  come from ``TrainConfig.data_args``. It has no classes and no per-channel statistics:
  an operator run normalises pointwise with the training split's statistics.

Another dataset plugs in as one more :func:`register_dataset` call whose ``build`` returns
the three splits; the training loop does not change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mgnet.errors import quote

__all__ = [
    "DatasetInfo",
    "DataSplits",
    "TensorImageDataset",
    "RandomShift",
    "get_dataset",
    "list_datasets",
    "dataset_info",
    "register_dataset",
]


class TensorImageDataset(Dataset):
    """Images and labels held in memory: ``images`` (N, C, *space), ``labels`` (N,).

    ``transform`` (optional) is applied to one image at a time, in the process that reads
    the sample, drawing from torch's global random generator.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"labels: {labels.shape[0]} labels for {images.shape[0]} images")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.images[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[index]


class RandomShift:
    """Translate a (C, H, W) image by up to ``max_shift`` pixels each way, zero fill.

    Zero is the background after normalization only approximately, so the fill value is
    given explicitly (``fill``: the normalized value of a blank pixel).
    """

    def __init__(self, max_shift: int = 1, fill: float = 0.0) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift: must be >= 0, got {max_shift}")
        self.max_shift = max_shift
        self.fill = fill

    def __call__(self, x: Tensor) -> Tensor:
        s = self.max_shift
        if s == 0:
            return x
        dy, dx = (torch.randint(-s, s + 1, (2,))).tolist()
        padded = torch.nn.functional.pad(x, (s, s, s, s), value=self.fill)
        h, w = x.shape[-2:]
        return padded[..., s + dy : s + dy + h, s + dx : s + dx + w]

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, fill={self.fill:.4f})"


Stats = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset, its statistics, split and augmentation, in one place.

    ``build(root, download, augment, holdout, stats, **options)`` returns ``(train, val,
    test)`` datasets of normalized ``(image, label)`` pairs; only ``train`` is augmented,
    and only when ``augment`` is true. ``holdout=False`` keeps no validation split (``val``
    is empty, ``train`` holds every training image); ``stats`` is ``(mean, std)`` to
    normalize with instead of the dataset's own ``mean`` and ``std`` (None: the dataset's).

    ``task``: ``"classification"`` (images and labels) or ``"operator"`` (pairs of fields,
    input and target, for the neural operators); ``options``: the keyword options
    ``build`` accepts (``get_dataset(..., options=)``); ``recipe``: the packaged recipe
    whose values are a command line's defaults for this dataset (None: TrainConfig's).
    """

    name: str
    description: str
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: dict[str, int]
    augmentation: str
    build: Callable[..., tuple[Dataset, Dataset, Dataset]] = field(repr=False)
    task: str = "classification"
    options: tuple[str, ...] = ()
    recipe: str | None = None

    @property
    def is_operator(self) -> bool:
        """Whether the data are pairs of fields (for neural operators), not labelled images."""
        return self.task == "operator"


@dataclass
class DataSplits:
    """The three splits of a dataset and its registry entry."""

    info: DatasetInfo
    train: Dataset
    val: Dataset
    test: Dataset


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add ``info`` to the registry (names are unique)."""
    if info.name in _DATASETS:
        raise ValueError(f"name: dataset {info.name!r} is already registered")
    _DATASETS[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``."""
    if name not in _DATASETS:
        raise ValueError(
            f"data: unknown dataset {quote(name)}; accepted: {', '.join(list_datasets())}"
        )
    return _DATASETS[name]


def get_dataset(
    name: str,
    root: str | None = None,
    download: bool = False,
    augment: bool = True,
    *,
    holdout: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    options: dict[str, Any] | None = None,
) -> DataSplits:
    """Load dataset ``name`` as normalized train/val/test splits.

    Args:
        name: a registered dataset (see :func:`list_datasets`).
        root: directory of the files, for datasets that have files (ignored by ``digits``).
        download: allow fetching missing files, for datasets that can be fetched.
        augment: give the training split its augmentation (``False``: plain images).
        holdout: carve the fixed validation split from the training images; ``False``
            trains on all of them and leaves ``val`` empty.
        mean, std: per-channel statistics to normalize with instead of the dataset's
            (both or neither; one value per channel, std > 0).
        options: the dataset's own keyword options (``DatasetInfo.options``), e.g.
            ``{"stride": 5}`` for ``darcy``.
    """
    info = dataset_info(name)
    stats = _check_stats(info, mean, std)
    options = _check_options(info, options)
    train, val, test = info.build(root, download, augment, holdout, stats, **options)
    return DataSplits(info, train, val, test)


def _check_options(info: DatasetInfo, options: dict[str, Any] | None) -> dict[str, Any]:
    if not options:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"data_args: expected a dict of options, got {type(options).__name__}")
    unknown = sorted(str(k)[:40] for k in options if k not in info.options)
    if unknown:
        accepted = ", ".join(info.options) or "none"
        raise ValueError(
            f"data_args: data {info.name!r} does not accept {', '.join(unknown)}; "
            f"accepted: {accepted}"
        )
    return dict(options)


def _check_stats(
    info: DatasetInfo, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Stats | None:
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError("mean, std: give both (one value per channel) or neither")
    if info.is_operator:
        raise ValueError(
            f"mean, std: data {info.name!r} is normalised pointwise with the statistics of "
            "its training split; per-channel constants are not accepted"
        )
    c = info.in_channels
    for label, values in (("mean", mean), ("std", std)):
        if len(values) != c:
            raise ValueError(
                f"{label}: {len(values)} value(s) given, data {info.name!r} has {c} channel(s); "
                f"accepted: {c} number(s)"
            )
    if min(std) <= 0:
        raise ValueError(f"std: every value must be positive, got {list(std)[:8]}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


# ------------------------------------------------------------------------------ digits
# Statistics of the training split after scaling pixels 0..16 to [0, 1]; a test checks
# them against the split, so a change of split cannot leave them stale.
DIGITS_MEAN = (0.30488,)
DIGITS_STD = (0.37584,)
DIGITS_SPLIT = {"train": 1257, "val": 180, "test": 360}
DIGITS_SPLIT_SEED = 0


DIGITS_FILE = Path(__file__).with_name("digits.npz")


def digits_split_indices() -> dict[str, Tensor]:
    """The fixed stratified split of the 1,797 digits: sorted sample indices per split."""
    arrays = _digits_file()
    return {name: torch.from_numpy(arrays[name].astype("int64")) for name in DIGITS_SPLIT}


@functools.lru_cache(maxsize=1)
def _digits_file() -> dict:
    import numpy as np

    with np.load(DIGITS_FILE) as z:
        return {key: z[key] for key in z.files}


def _digits_arrays():
    """The 1,797 images (N, 8, 8), pixel values 0..16, and their labels (N,)."""
    arrays = _digits_file()
    return arrays["images"], arrays["labels"]


def _build_digits(
    root: str | None, download: bool, augment: bool, holdout: bool, stats: Stats | None
):
    images, labels = _digits_arrays()
    mean, std = stats or (DIGITS_MEAN, DIGITS_STD)
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    x = (x - mean[0]) / std[0]
    y = torch.as_tensor(labels, dtype=torch.long)
    idx = digits_split_indices()
    if not holdout:  # every training image trains; no validation split
        idx["train"] = torch.cat([idx["train"], idx["val"]]).sort().values
        idx["val"] = idx["val"][:0]
    blank = (0.0 - mean[0]) / std[0]
    shift = RandomShift(1, fill=blank) if augment else None
    return (
        TensorImageDataset(x[idx["train"]], y[idx["train"]], shift),
        TensorImageDataset(x[idx["val"]], y[idx["val"]]),
        TensorImageDataset(x[idx["test"]], y[idx["test"]]),
    )


register_dataset(
    DatasetInfo(
        name="digits",
        description="the UCI 8x8 handwritten digits (as bundled by scikit-learn), 1x8x8, "
        "10 classes",
        num_classes=10,
        in_channels=1,
        input_size=8,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        split=dict(DIGITS_SPLIT),
        augmentation="random shift by up to 1 pixel (train split only)",
        build=_build_digits,
    )
)


# ------------------------------------------------------------- torchvision-format files
def _register_vision() -> None:
    from mgnet.data.vision import VISION_DATASETS, load_vision

    for spec in VISION_DATASETS.values():
        register_dataset(
            DatasetInfo(
                name=spec.name,
                description=f"{spec.title} from files in torchvision's layout (--data-dir)",
                num_classes=spec.num_classes,
                in_channels=spec.in_channels,
                input_size=spec.input_size,
                mean=spec.mean,
                std=spec.std,
                split=spec.split,
                augmentation=spec.augmentation,
                build=lambda root, download, augment, holdout, stats, name=spec.name: load_vision(
                    name, root, download, augment, holdout=holdout, stats=stats
                ),
            )
        )


_register_vision()


# ------------------------------------------------------------------------ Darcy flow
def _build_darcy(
    root: str | None, download: bool, augment: bool, holdout: bool, stats: Stats | None, **options
):
    from mgnet.data.darcy import darcy_splits

    if download:
        raise ValueError(
            "download: Darcy data are generated, not downloaded: mgnet data darcy -o DIR, "
            "then --data-dir DIR"
        )
    if root is None:
        raise ValueError(
            "data_dir: data 'darcy' lives in files; give the folder of train.mat and "
            "test.mat (written by mgnet data darcy, or Li et al.'s published files)"
        )
    return darcy_splits(root, holdout=holdout, **options)


def _register_darcy() -> None:
    from mgnet.data.darcy import DARCY_OPTIONS

    register_dataset(
        DatasetInfo(
            name="darcy",
            description="Darcy flow, coefficient -> solution, (1, s, s) fields from "
            "train.mat/test.mat (mgnet data darcy, or Li et al.'s files; --data-dir)",
            num_classes=0,
            in_channels=1,
            input_size=65,
            mean=(),
            std=(),
            split={"train": 900, "val": 100, "test": 100},
            augmentation="none",
            build=_build_darcy,
            task="operator",
            options=DARCY_OPTIONS,
            recipe="darcy_operator",
        )
    )


_register_darcy()
