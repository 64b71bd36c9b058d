"""Image datasets in torchvision's on-disk formats, all described by ONE table.

:data:`VISION_DATASETS` holds, per dataset, everything that decides the numbers a run sees:
the expected file layout, the normalization statistics (per-channel mean and std of the
official training split, pixels scaled to [0, 1]), the validation split carved from the
training files, and the training augmentation. Nothing else in the package restates them.

=================  ===========================================  ============================
name               files under ``root``                         training augmentation
=================  ===========================================  ============================
``mnist``          ``MNIST/raw/{train,t10k}-{images-idx3,       none (digits: no flip)
                   labels-idx1}-ubyte[.gz]``
``fashion_mnist``  ``FashionMNIST/raw/`` (same four files)      horizontal flip
``cifar10``        ``cifar-10-batches-py/{data_batch_1..5,      random crop (pad 4) + flip
                   test_batch, batches.meta}``
``cifar100``       ``cifar-100-python/{train, test, meta}``     random crop (pad 4) + flip
``svhn``           ``{train,test}_32x32.mat``                   random crop (pad 4), no flip
``imagefolder``    ``{train,val}/<class>/<image>`` (ImageNet)   RandomResizedCrop 224 + flip
=================  ===========================================  ============================

The layouts are exactly the ones torchvision's ``MNIST``, ``FashionMNIST``, ``CIFAR10``,
``CIFAR100``, ``SVHN`` and ``ImageFolder`` read and download, so a folder prepared for
torchvision works here and ``download=True`` fetches the official files with torchvision
(nothing is ever downloaded unless asked). MNIST-type files are read by torchvision's
classes; ``.gz`` files are decompressed next to themselves first, as torchvision's own
download does, but never beyond the size their header declares and never left half
written. CIFAR pickles and SVHN ``.mat`` files are read directly, because torchvision's
classes insist on the MD5 sums of the official archives; here each file is checked for
the keys and shapes of its format instead, so that a wrong file gives a one-line error
naming it. CIFAR batches are Python pickles, which can run code when unpickled; they are
read by a restricted unpickler that accepts only what the format holds (dicts, lists,
strings, bytes, numbers and NumPy arrays) and refuses any other object in one line.

Splits: ``val`` is a fixed, seeded random subset of the training files (``val_fraction``
of them, :data:`SPLIT_SEED`), used for model selection; ``test`` is the official test
split (``val/`` for an ImageFolder, as for ImageNet). ``train`` is the rest.

MNIST, CIFAR and SVHN are held in memory as one uint8 tensor (N, C, H, W) in a
:class:`UInt8ImageDataset`; :class:`mgnet.data.device_loader.DeviceLoader` can take it
onto the GPU whole. ImageFolder sets are read from disk with PIL, for a ``DataLoader`` with
worker processes.
"""

from __future__ import annotations

import copy
import gzip
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from mgnet.errors import DownloadError, first_line, quote

__all__ = [
    "VisionSpec",
    "VISION_DATASETS",
    "SPLIT_SEED",
    "UInt8ImageDataset",
    "augment_uint8",
    "draw_shift_flip",
    "shift_flip_uint8",
    "load_arrays",
    "load_vision",
    "split_indices",
    "vision_spec",
]

SPLIT_SEED = 0


@dataclass(frozen=True)
class VisionSpec:
    """One dataset: its files, statistics, split and augmentation.

    ``crop_padding`` (pixels; 0 = no crop) and ``flip`` describe the random crop and the
    horizontal flip of in-memory sets; ``imagefolder`` instead uses ``RandomResizedCrop``
    to ``input_size`` plus flip for training and ``Resize(resize)`` + ``CenterCrop`` for
    evaluation. ``num_classes`` is the class count of the official files (for an
    ImageFolder: of ImageNet; the datasets returned carry the count actually found).
    """

    name: str
    title: str
    layout: str
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sizes: dict[str, int]
    val_fraction: float
    crop_padding: int
    flip: bool
    in_memory: bool
    resize: int = 0

    @property
    def augmentation(self) -> str:
        """The training augmentation in words."""
        if not self.in_memory:
            return (
                f"RandomResizedCrop({self.input_size}) + horizontal flip; evaluation: "
                f"Resize({self.resize}) + CenterCrop({self.input_size})"
            )
        parts = [f"random crop (pad {self.crop_padding})"] if self.crop_padding else []
        parts += ["horizontal flip"] if self.flip else []
        return " + ".join(parts) if parts else "none"

    @property
    def split(self) -> dict[str, int]:
        """Split sizes for the official files (``{}`` where the size depends on the folder)."""
        if not self.sizes:
            return {}
        n_val = _val_count(self.sizes["train"], self.val_fraction)
        return {"train": self.sizes["train"] - n_val, "val": n_val, "test": self.sizes["test"]}


_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# THE table. Statistics: per-channel mean and std over all pixels of the official training
# split, with pixel values scaled to [0, 1] (ImageFolder: the usual ImageNet values).
_TABLE = [
    VisionSpec(
        name="mnist", title="MNIST",
        layout="{root}/MNIST/raw/ holding " + ", ".join(_IDX_FILES) + " (each may be .gz)",
        num_classes=10, in_channels=1, input_size=28, mean=(0.1307,), std=(0.3081,),
        sizes={"train": 60000, "test": 10000}, val_fraction=1 / 12,
        crop_padding=0, flip=False, in_memory=True,
    ),
    VisionSpec(
        name="fashion_mnist", title="Fashion-MNIST",
        layout="{root}/FashionMNIST/raw/ holding " + ", ".join(_IDX_FILES) + " (each may be .gz)",
        num_classes=10, in_channels=1, input_size=28, mean=(0.2860,), std=(0.3530,),
        sizes={"train": 60000, "test": 10000}, val_fraction=1 / 12,
        crop_padding=0, flip=True, in_memory=True,
    ),
    VisionSpec(
        name="cifar10", title="CIFAR-10",
        layout="{root}/cifar-10-batches-py/ holding data_batch_1 .. data_batch_5, test_batch "
        "and batches.meta (the 'python version' of CIFAR-10)",
        num_classes=10, in_channels=3, input_size=32,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        sizes={"train": 50000, "test": 10000}, val_fraction=0.1,
        crop_padding=4, flip=True, in_memory=True,
    ),
    VisionSpec(
        name="cifar100", title="CIFAR-100",
        layout="{root}/cifar-100-python/ holding train, test and meta (the 'python version' "
        "of CIFAR-100)",
        num_classes=100, in_channels=3, input_size=32,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        sizes={"train": 50000, "test": 10000}, val_fraction=0.1,
        crop_padding=4, flip=True, in_memory=True,
    ),
    VisionSpec(
        name="svhn", title="SVHN",
        layout="{root}/train_32x32.mat and {root}/test_32x32.mat (the cropped-digits format)",
        num_classes=10, in_channels=3, input_size=32,
        mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
        sizes={"train": 73257, "test": 26032}, val_fraction=0.1,
        crop_padding=4, flip=False, in_memory=True,  # digits are not mirror-symmetric
    ),
    VisionSpec(
        name="imagefolder", title="ImageFolder",
        layout="{root}/train/<class>/<image> and {root}/val/<class>/<image> (the ImageNet "
        "layout: one folder per class, the same class folders in both)",
        num_classes=1000, in_channels=3, input_size=224,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        sizes={}, val_fraction=0.01,
        crop_padding=0, flip=True, in_memory=False, resize=256,
    ),
]  # fmt: skip
VISION_DATASETS: dict[str, VisionSpec] = {spec.name: spec for spec in _TABLE}


def vision_spec(name: str) -> VisionSpec:
    """The table entry for ``name``."""
    if name not in VISION_DATASETS:
        raise ValueError(
            f"data: unknown torchvision-format dataset {quote(name)}; accepted: "
            f"{', '.join(VISION_DATASETS)}"
        )
    return VISION_DATASETS[name]


# ------------------------------------------------------------------------------ splits
def _val_count(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    return min(max(round(n * fraction), 1), n - 1)


def split_indices(n: int, val_fraction: float, seed: int = SPLIT_SEED) -> dict[str, Tensor]:
    """The fixed train/val split of ``n`` training samples: sorted indices per split.

    ``val`` is ``round(n * val_fraction)`` samples (at least 1 when ``n >= 2``) drawn by a
    generator seeded with ``seed``, so the split never changes between runs.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: must be in [0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = _val_count(n, val_fraction)
    return {"train": order[n_val:].sort().values, "val": order[:n_val].sort().values}


# ------------------------------------------------------------------ in-memory datasets
def shift_flip_uint8(
    images: Tensor,
    padding: int,
    offsets: Tensor | None = None,
    mirror: Tensor | None = None,
) -> Tensor:
    """Crop-after-padding and horizontal flip of a uint8 batch (N, C, H, W) with GIVEN
    draws: ``offsets`` (2, N) in [0, 2 * padding] is the top-left corner of each crop in
    the image zero-padded by ``padding`` pixels (row, column); ``mirror`` (N,) bool flips.

    The crop equals ``torchvision.transforms.RandomCrop(size, padding=padding)`` for that
    corner: a shift by (offset - padding) with a black (0) border. ``None`` skips a part.
    """
    n, c, h, w = images.shape
    device = images.device
    out = images
    if offsets is not None and padding > 0:
        padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
        rows = offsets[0, :, None] + torch.arange(h, device=device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=device)  # (N, W)
        batch = torch.arange(n, device=device)[:, None, None, None]
        chan = torch.arange(c, device=device)[None, :, None, None]
        out = padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
    if mirror is not None:
        out = torch.where(mirror[:, None, None, None], out.flip(-1), out)
    return out


def draw_shift_flip(
    n: int, padding: int, flip: bool, generator: torch.Generator | None = None
) -> tuple[Tensor | None, Tensor | None]:
    """Random draws for :func:`shift_flip_uint8`: crop corners uniform in [0, 2 * padding]
    (``None`` when ``padding`` is 0), then flips with probability 1/2 (``None`` without
    ``flip``), in that order, from ``generator`` (CPU)."""
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator) if padding else None
    mirror = torch.rand(n, generator=generator) < 0.5 if flip else None
    return offsets, mirror


def augment_uint8(
    images: Tensor,
    crop_padding: int,
    flip: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random crop after zero padding by ``crop_padding`` pixels, and random horizontal
    flip with probability 1/2, of a uint8 batch (N, C, H, W), each sample drawn on its own
    (see :func:`draw_shift_flip` and :func:`shift_flip_uint8`)."""
    offsets, mirror = draw_shift_flip(images.shape[0], crop_padding, flip, generator)
    if offsets is not None:
        offsets = offsets.to(images.device)
    if mirror is not None:
        mirror = mirror.to(images.device)
    return shift_flip_uint8(images, crop_padding, offsets, mirror)


class UInt8ImageDataset(Dataset):
    """A whole image set in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,).

    Item ``i`` is ``(image, label)`` with the image as float32 normalized by ``mean`` and
    ``std`` (per channel, on the [0, 1] scale). When ``augment`` is true the image is first
    randomly cropped (``crop_padding``) and flipped (``flip``), drawing from torch's global
    generator in the reading process (``DataLoader`` seeds each worker).

    The raw tensors and the augmentation settings stay visible so that a device-resident
    loader can do the same work batch-wise on the GPU
    (:meth:`mgnet.data.device_loader.DeviceLoader.from_dataset`).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        flip: bool = False,
        augment: bool = False,
        classes: Sequence[str] = (),
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images: need a uint8 tensor (N, C, H, W), got {images.dtype} with shape "
                f"{tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels: need shape ({images.shape[0]},) for {images.shape[0]} images, got "
                f"{tuple(labels.shape)}"
            )
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(
                f"mean, std: need {images.shape[1]} values each (one per channel), got "
                f"{len(mean)} and {len(std)}"
            )
        self.images = images
        self.labels = labels.long()
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.augment = bool(augment)
        self.classes = list(classes)
        if self.classes:
            self.num_classes = len(self.classes)
        else:
            self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0
        shape = (1, -1, 1, 1)
        self._shift = torch.tensor(self.mean).view(shape) * 255.0
        self._scale = 1.0 / (torch.tensor(self.std).view(shape) * 255.0)

    def __len__(self) -> int:
        return self.images.shape[0]

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (N, C, H, W) -> float32 (x / 255 - mean) / std."""
        return (images.float() - self._shift) * self._scale

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.images[index].unsqueeze(0)
        if self.augment:
            x = augment_uint8(x, self.crop_padding, self.flip)
        return self.normalize(x)[0], self.labels[index]

    def subset(self, indices: Tensor, augment: bool | None = None) -> UInt8ImageDataset:
        """The samples at ``indices`` (a copy of the tensors), same settings."""
        return UInt8ImageDataset(
            self.images[indices].contiguous(),
            self.labels[indices],
            self.mean,
            self.std,
            self.crop_padding,
            self.flip,
            self.augment if augment is None else augment,
            self.classes,
        )

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        aug = f"crop_padding={self.crop_padding}, flip={self.flip}" if self.augment else "none"
        return f"UInt8ImageDataset({len(self)} images {c}x{h}x{w}, augmentation: {aug})"


# ------------------------------------------------------------------------------ readers
class _Missing(Exception):
    """A required file or folder is not there (reported with the expected layout)."""


def _fail(spec: VisionSpec, root: Path, what: str, missing: bool) -> Exception:
    layout = spec.layout.format(root=str(root).rstrip("/"))
    if missing:
        hint = "; pass --download to fetch it" if spec.name != "imagefolder" else ""
        return FileNotFoundError(
            f"data_dir: {spec.title} not found: {what}; expected {layout}{hint}"
        )
    return ValueError(f"data_dir: {spec.title} files are malformed: {what}; expected {layout}")


# IDX element types (the third byte of the magic number) and their sizes in bytes
_IDX_TYPES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}
#: the most a decompressed MNIST-type file may take (the largest official one is 47 MB)
MAX_IDX_BYTES = 256 * 2**20


def _gunzip_idx(gz: Path, path: Path) -> None:
    """Decompress the IDX file ``gz`` to ``path``: no more than the size its header
    declares (and :data:`MAX_IDX_BYTES`), into a temporary file that is renamed into place
    only when complete, so an interruption never leaves a partial file. Raises
    ``ValueError`` (a one-line reason) for a file that is not a gzipped IDX file."""
    tmp = path.with_name(f".{path.name}.part-{os.getpid()}")
    try:
        with gzip.open(gz, "rb") as src:
            head = src.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_TYPES:
                raise ValueError("it does not start with an IDX magic number")
            dims_raw = src.read(4 * head[3])
            if len(dims_raw) < 4 * head[3]:
                raise ValueError("its IDX header is cut short")
            dims = struct.unpack(f">{head[3]}I", dims_raw)
            size = 4 + len(dims_raw) + math.prod(dims) * _IDX_TYPES[head[2]]
            if size > MAX_IDX_BYTES:
                raise ValueError(
                    f"its header declares {size:,} bytes, more than the {MAX_IDX_BYTES:,} "
                    "an MNIST-type file may take"
                )
            with open(tmp, "wb") as dst:
                dst.write(head + dims_raw)
                left = size - len(head) - len(dims_raw)
                while left > 0:
                    chunk = src.read(min(2**20, left))
                    if not chunk:
                        break  # shorter than declared: the IDX reader reports it
                    dst.write(chunk)
                    left -= len(chunk)
                if src.read(1):
                    raise ValueError(f"it holds more than the {size:,} bytes its header declares")
        os.replace(tmp, path)
    except (OSError, EOFError, zlib.error, struct.error) as e:
        raise ValueError(first_line(e)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_idx(spec: VisionSpec, raw: Path, stem: str) -> Tensor:
    """One MNIST IDX file via torchvision's reader; a lone ``.gz`` is decompressed first
    (next to itself, as torchvision's download does; see :func:`_gunzip_idx`)."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    path = raw / stem
    gz = raw / f"{stem}.gz"
    if not path.is_file() and gz.is_file():
        try:
            _gunzip_idx(gz, path)
        except ValueError as e:
            raise _fail(
                spec, raw.parent.parent, f"{gz} could not be decompressed ({e})", missing=False
            ) from None
    if not path.is_file():
        raise _Missing(f"{path} is missing")
    try:
        return (read_label_file if "labels" in stem else read_image_file)(str(path))
    except Exception as e:  # torchvision asserts on a bad magic number or size
        raise _fail(
            spec,
            raw.parent.parent,
            f"{path} is not an IDX "
            f"{'label' if 'labels' in stem else 'image'} file ({first_line(e)})",
            missing=False,
        ) from None


def _load_mnist(spec: VisionSpec, root: Path, download: bool) -> dict[str, Any]:
    from torchvision import datasets

    cls = datasets.MNIST if spec.name == "mnist" else datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    if download:
        _download(spec, lambda: [cls(str(root), train=t, download=True) for t in (True, False)])
    if not raw.is_dir():
        raise _Missing(f"{raw} is not a folder")
    out: dict[str, Any] = {"classes": list(cls.classes)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(spec, raw, f"{prefix}-images-idx3-ubyte")
        labels = _read_idx(spec, raw, f"{prefix}-labels-idx1-ubyte")
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise _fail(
                spec,
                root,
                f"{raw}/{prefix}-images-idx3-ubyte holds "
                f"{tuple(images.shape)} {images.dtype}, not uint8 (N, H, W) images",
                missing=False,
            )
        if labels.shape != (images.shape[0],):
            raise _fail(
                spec,
                root,
                f"{raw}/{prefix}-labels-idx1-ubyte holds "
                f"{labels.numel()} labels for {images.shape[0]} images",
                missing=False,
            )
        out[split] = (images.unsqueeze(1).contiguous(), labels.long())
    return out


# Everything a CIFAR batch may hold besides dicts, lists, strings, bytes and numbers:
# NumPy arrays (and scalars), and the codec call with which protocol 2 stores bytes.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _RefusedGlobal(Exception):
    pass


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what the CIFAR format holds and nothing else: any other class or
    function named in the file (the way a pickle runs code) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"{module}.{name}"[:120])


def _unpickle(spec: VisionSpec, root: Path, path: Path) -> dict:
    """A CIFAR pickle, read with :class:`_CifarUnpickler` (never runs code from the file)."""
    if not path.is_file():
        raise _Missing(f"{path} is missing")
    try:
        with open(path, "rb") as fh:
            entry = _CifarUnpickler(fh, encoding="latin1").load()
    except _RefusedGlobal as e:
        raise _fail(
            spec,
            root,
            f"{path} names {e}, which a CIFAR file never holds; refused to load it (a CIFAR "
            "batch holds only dicts, lists, strings, numbers and NumPy arrays)",
            missing=False,
        ) from None
    except Exception as e:
        raise _fail(
            spec, root, f"{path} is not a Python pickle ({first_line(e)})", missing=False
        ) from None
    if not isinstance(entry, dict):
        raise _fail(spec, root, f"{path} holds a {type(entry).__name__}, not a dict", missing=False)
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _load_cifar(spec: VisionSpec, root: Path, download: bool) -> dict[str, Any]:
    from torchvision import datasets

    cls = datasets.CIFAR10 if spec.name == "cifar10" else datasets.CIFAR100
    folder = root / cls.base_folder
    if download:
        _download(spec, lambda: cls(str(root), train=True, download=True))
    if not folder.is_dir():
        raise _Missing(f"{folder} is not a folder")
    label_key = "labels" if spec.name == "cifar10" else "fine_labels"
    meta_name, meta_key = cls.meta["filename"], cls.meta["key"]
    meta = _unpickle(spec, root, folder / meta_name)
    if meta_key not in meta:
        raise _fail(spec, root, f"{folder / meta_name} has no {meta_key!r} entry", missing=False)
    out: dict[str, Any] = {"classes": [str(c) for c in meta[meta_key]]}
    for split, files in (("train", cls.train_list), ("test", cls.test_list)):
        data, labels = [], []
        for name, _md5 in files:
            entry = _unpickle(spec, root, folder / name)
            if "data" not in entry or label_key not in entry:
                raise _fail(
                    spec,
                    root,
                    f"{folder / name} lacks the 'data' or {label_key!r} "
                    f"entry (has {sorted(entry)})",
                    missing=False,
                )
            x = np.asarray(entry["data"])
            y = np.asarray(entry[label_key])
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
                raise _fail(
                    spec,
                    root,
                    f"{folder / name}: 'data' is {x.dtype} {x.shape}, not uint8 (N, 3072)",
                    missing=False,
                )
            if y.shape != (x.shape[0],):
                raise _fail(
                    spec,
                    root,
                    f"{folder / name}: {y.size} labels for {x.shape[0]} images",
                    missing=False,
                )
            data.append(x)
            labels.append(y)
        images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32).copy())
        out[split] = (images, torch.from_numpy(np.concatenate(labels).astype(np.int64)))
    return out


def _load_svhn(spec: VisionSpec, root: Path, download: bool) -> dict[str, Any]:
    import scipy.io
    from torchvision import datasets

    if download:
        _download(
            spec,
            lambda: [datasets.SVHN(str(root), split=s, download=True) for s in ("train", "test")],
        )
    out: dict[str, Any] = {"classes": [str(i) for i in range(10)]}
    for split in ("train", "test"):
        path = root / f"{split}_32x32.mat"
        if not path.is_file():
            raise _Missing(f"{path} is missing")
        try:
            mat = scipy.io.loadmat(str(path))
        except Exception as e:
            raise _fail(
                spec, root, f"{path} is not a MATLAB .mat file ({first_line(e)})", missing=False
            ) from None
        if "X" not in mat or "y" not in mat:
            raise _fail(spec, root, f"{path} lacks the 'X' or 'y' variable", missing=False)
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise _fail(
                spec,
                root,
                f"{path}: 'X' is {x.dtype} {x.shape}, not uint8 (32, 32, 3, N)",
                missing=False,
            )
        if y.shape != (x.shape[3],) or y.min(initial=1) < 1 or y.max(initial=1) > 10:
            raise _fail(
                spec,
                root,
                f"{path}: 'y' must hold {x.shape[3]} labels in 1..10 (10 stands for the digit 0)",
                missing=False,
            )
        y[y == 10] = 0
        out[split] = (torch.from_numpy(x.transpose(3, 2, 0, 1).copy()), torch.from_numpy(y))
    return out


def _download(spec: VisionSpec, fetch: Callable[[], Any]) -> None:
    try:
        fetch()
    except Exception as e:
        raise DownloadError(f"download: fetching {spec.title} failed ({first_line(e)})") from None


_READERS: dict[str, Callable[[VisionSpec, Path, bool], dict[str, Any]]] = {
    "mnist": _load_mnist,
    "fashion_mnist": _load_mnist,
    "cifar10": _load_cifar,
    "cifar100": _load_cifar,
    "svhn": _load_svhn,
}


def _check_root(spec: VisionSpec, root: str | os.PathLike | None) -> Path:
    if root is None or str(root) == "":
        where = spec.layout.format(root="DIR")
        raise ValueError(f"data_dir: {spec.name} reads files; give --data-dir DIR with {where}")
    return Path(root).expanduser()


def load_arrays(
    name: str, root: str | os.PathLike | None, download: bool = False
) -> dict[str, Any]:
    """The raw official splits of an in-memory dataset.

    Returns ``{"train": (images, labels), "test": (images, labels), "classes": [...]}``
    with ``images`` uint8 (N, C, H, W) and ``labels`` int64 (N,). Raises
    ``FileNotFoundError`` (missing files) or ``ValueError`` (malformed files) with a
    one-line message naming the file and the expected layout.
    """
    spec = vision_spec(name)
    if not spec.in_memory:
        raise ValueError(f"data: {name!r} is read from disk per image; use load_vision")
    path = _check_root(spec, root)
    try:
        out = _READERS[name](spec, path, download)
    except _Missing as e:
        raise _fail(spec, path, str(e), missing=True) from None
    for split in ("train", "test"):
        labels = out[split][1]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(out["classes"])):
            raise _fail(
                spec,
                path,
                f"{split} labels must lie in 0..{len(out['classes']) - 1}",
                missing=False,
            )
    return out


def _image_folder(spec: VisionSpec, path: Path, transform: Callable) -> Any:
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise _fail(spec, path.parent, f"{path} is not a folder", missing=True)
    try:
        return ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError, OSError) as e:
        raise _fail(spec, path.parent, f"{path}: {first_line(e)}", missing=True) from None


def _load_image_folder(
    spec: VisionSpec,
    root: Path,
    augment: bool,
    holdout: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> tuple[Dataset, Dataset, Dataset]:
    from torchvision import transforms as T

    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    evaluate = T.Compose([T.Resize(spec.resize), T.CenterCrop(spec.input_size), *normalize])
    train_tf = (
        T.Compose([T.RandomResizedCrop(spec.input_size), T.RandomHorizontalFlip(), *normalize])
        if augment
        else evaluate
    )
    train_all = _image_folder(spec, root / "train", train_tf)
    test = _image_folder(spec, root / "val", evaluate)
    if test.classes != train_all.classes:
        extra = sorted(set(test.classes) ^ set(train_all.classes))[:3]
        raise _fail(
            spec,
            root,
            f"{root / 'val'} and {root / 'train'} hold different class folders (e.g. {extra})",
            missing=False,
        )
    val_all = copy.copy(train_all)
    val_all.transform = evaluate
    idx = split_indices(len(train_all), spec.val_fraction if holdout else 0.0)
    train, val = Subset(train_all, idx["train"].tolist()), Subset(val_all, idx["val"].tolist())
    for ds in (train, val, test):
        ds.classes = list(train_all.classes)
        ds.num_classes = len(train_all.classes)
    return train, val, test


def load_vision(
    name: str,
    root: str | os.PathLike | None,
    download: bool = False,
    augment: bool = True,
    *,
    holdout: bool = True,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[Dataset, Dataset, Dataset]:
    """``(train, val, test)`` datasets of normalized ``(image, label)`` pairs.

    ``name`` is a key of :data:`VISION_DATASETS`; ``root`` the folder of its files;
    ``download`` lets torchvision fetch missing official files; ``augment`` gives the
    training split its augmentation (val and test are never augmented); ``holdout=False``
    keeps no validation split (``val`` is empty, ``train`` holds all training files);
    ``stats`` is ``(mean, std)`` to normalize with instead of the table's. In-memory sets
    come back as :class:`UInt8ImageDataset`, ImageFolder sets as ``Subset`` s of
    ``torchvision.datasets.ImageFolder``; each has ``classes`` and ``num_classes``.
    """
    spec = vision_spec(name)
    mean, std = (tuple(stats[0]), tuple(stats[1])) if stats is not None else (spec.mean, spec.std)
    if not spec.in_memory:
        if download:
            raise ValueError(
                f"download: {spec.title} cannot be downloaded; prepare "
                f"{spec.layout.format(root=str(root))}"
            )
        return _load_image_folder(spec, _check_root(spec, root), augment, holdout, mean, std)
    arrays = load_arrays(name, root, download)
    images, labels = arrays["train"]
    full = UInt8ImageDataset(
        images, labels, mean, std, spec.crop_padding, spec.flip, False, arrays["classes"]
    )
    idx = split_indices(len(full), spec.val_fraction if holdout else 0.0)
    test = UInt8ImageDataset(
        *arrays["test"], mean, std, spec.crop_padding, spec.flip, False, arrays["classes"]
    )
    return full.subset(idx["train"], augment=augment), full.subset(idx["val"]), test
