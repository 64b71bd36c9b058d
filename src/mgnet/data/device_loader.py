"""A device-resident data loader for image sets that fit in memory (MNIST, CIFAR, SVHN).

The whole set lives on the device as ONE uint8 tensor (N, C, H, W) -- CIFAR-10's 50,000
training images are 150 MB -- and each batch is gathered, randomly cropped (zero padding),
flipped and normalized there, batch-wise, with no worker processes and no host-to-device
copy per step. On a GPU this removes the input pipeline from the critical path, as the
fastest CIFAR trainers do; on a CPU it is simply a batched version of the same work.

It is a drop-in for the ``DataLoader`` + :class:`mgnet.data.EpochSampler` pair of the
training loop: ``set_epoch(epoch, skip)``, ``len()`` (batches), iteration yielding
``(images, labels)`` on the device, ``num_replicas``/``rank`` sharding and ``drop_last``.

Reproducibility: everything random in an epoch -- the sample order, the crop corners and
the flips -- is drawn up front from a CPU ``torch.Generator`` seeded with ``seed + epoch``
(the order is exactly :class:`~mgnet.data.EpochSampler`'s). So an epoch is a pure function
of ``(seed, epoch)``, identical on CPU and CUDA, and a run resumed in the middle of an
epoch (``skip``, or :meth:`DeviceLoader.load_state_dict`) sees exactly the batches the
uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from mgnet.data.vision import UInt8ImageDataset, draw_shift_flip, shift_flip_uint8
from mgnet.device import resolve_device

__all__ = ["DeviceLoader", "LOADERS", "use_device_loader"]

LOADERS = ("auto", "device", "torch")


def use_device_loader(loader: str, dataset: Any, device: torch.device | str) -> bool:
    """Whether to serve ``dataset`` with :class:`DeviceLoader`.

    ``loader``: ``"device"`` (required: the dataset must be held in memory as uint8, else
    a ValueError), ``"torch"`` (never), or ``"auto"`` (on CUDA, whenever the dataset is
    held in memory; the standard ``DataLoader`` otherwise, e.g. for ImageFolder).
    """
    if loader not in LOADERS:
        raise ValueError(f"loader: {loader!r} is not accepted; expected {', '.join(LOADERS)}")
    in_memory = isinstance(dataset, UInt8ImageDataset)
    if loader == "device" and not in_memory:
        raise ValueError(
            f"loader: 'device' needs an in-memory uint8 image set (MNIST, CIFAR, SVHN), "
            f"got {type(dataset).__name__}; use 'torch' or 'auto'"
        )
    if loader == "torch":
        return False
    return in_memory and (loader == "device" or torch.device(device).type == "cuda")


class DeviceLoader:
    """Batches of one in-memory image set, prepared on ``device``.

    Args:
        images: uint8 (N, C, H, W), the whole set (moved to ``device`` once).
        labels: (N,) class indices.
        batch_size: samples per batch.
        mean, std: per-channel statistics on the [0, 1] scale; a batch is returned as
            float ``(x / 255 - mean) / std``.
        crop_padding: random crop after zero padding by this many pixels (0: none).
        flip: random horizontal flip with probability 1/2.
        shuffle: a new random order every epoch (else the stored order).
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        seed: seeds the order and the augmentation (with the epoch, see the module).
        num_replicas, rank: data parallel sharding; rank ``r`` takes every
            ``num_replicas``-th sample of the epoch's order, all ranks equally many when
            shuffling (training), every sample exactly once otherwise (evaluation).
        device: where the set lives and batches are made (default: CUDA if available).
        channels_last: return batches in ``torch.channels_last`` memory format.
        dtype: floating type of the returned images.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        flip: bool = False,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            got = (
                f"{images.dtype} {tuple(images.shape)}"
                if isinstance(images, Tensor)
                else (type(images).__name__)
            )
            raise ValueError(f"images: need a uint8 tensor (N, C, H, W), got {got}")
        if not isinstance(labels, Tensor) or labels.shape != (images.shape[0],):
            raise ValueError(f"labels: need a tensor of shape ({images.shape[0]},)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
        c = images.shape[1]
        if len(mean) != c or len(std) != c or min(std) <= 0:
            raise ValueError(f"mean, std: need {c} values each (std > 0), got {mean}, {std}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding: must be >= 0, got {crop_padding}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        if not dtype.is_floating_point:
            raise ValueError(f"dtype: need a floating type, got {dtype}")
        self.device = resolve_device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.long)
        self.batch_size = batch_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.num_replicas, self.rank = num_replicas, rank
        self.channels_last = channels_last
        self.dtype = dtype
        shape = (1, c, 1, 1)
        self._shift = torch.tensor(self.mean, device=self.device).view(shape) * 255.0
        self._scale = 1.0 / (torch.tensor(self.std, device=self.device).view(shape) * 255.0)
        self.epoch = 0
        self.skip = 0

    @classmethod
    def from_dataset(
        cls, dataset: UInt8ImageDataset, batch_size: int, **kwargs: Any
    ) -> DeviceLoader:
        """A loader for a :class:`~mgnet.data.vision.UInt8ImageDataset`, taking its tensors,
        statistics and (when the dataset is augmented) its crop and flip settings;
        ``kwargs`` are passed on (``shuffle``, ``seed``, ``device``, ...)."""
        if not isinstance(dataset, UInt8ImageDataset):
            raise ValueError(
                f"dataset: need an in-memory UInt8ImageDataset, got {type(dataset).__name__}"
            )
        kwargs.setdefault("crop_padding", dataset.crop_padding if dataset.augment else 0)
        kwargs.setdefault("flip", dataset.flip and dataset.augment)
        return cls(dataset.images, dataset.labels, batch_size, dataset.mean, dataset.std, **kwargs)

    # ---------------------------------------------------------------- epoch protocol
    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the draws of ``epoch`` and skip this rank's first ``skip`` samples."""
        if skip < 0:
            raise ValueError(f"skip: must be >= 0, got {skip}")
        self.epoch, self.skip = int(epoch), int(skip)

    @property
    def num_samples(self) -> int:
        """Samples this rank serves in the current epoch (after ``skip``)."""
        n = self.images.shape[0]
        if self.shuffle and self.num_replicas > 1:
            n -= n % self.num_replicas
        return max(len(range(self.rank, n, self.num_replicas)) - self.skip, 0)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def state_dict(self) -> dict[str, int]:
        """What resumes this loader exactly: seed, epoch and samples already served."""
        return {"seed": self.seed, "epoch": self.epoch, "skip": self.skip}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(state["epoch"], state.get("skip", 0))

    # -------------------------------------------------------------------- iteration
    def _draws(self) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """This epoch's order and augmentation draws, for this rank's samples."""
        n = self.images.shape[0]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        offsets, mirror = draw_shift_flip(n, self.crop_padding, self.flip, g)
        if self.shuffle and self.num_replicas > 1:
            order = order[: n - n % self.num_replicas]
        pick = slice(self.rank, None, self.num_replicas)
        order = order[pick][self.skip :]
        # draws belong to positions in the epoch, so a skipped run stays aligned
        positions = torch.arange(n)[pick][self.skip : self.skip + len(order)]
        if offsets is not None:
            offsets = offsets[:, positions].to(self.device)
        if mirror is not None:
            mirror = mirror[positions].to(self.device)
        return order.to(self.device), offsets, mirror

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order, offsets, mirror = self._draws()
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.images[idx]
            part = slice(start, start + len(idx))
            x = shift_flip_uint8(
                x,
                self.crop_padding,
                None if offsets is None else offsets[:, part],
                None if mirror is None else mirror[part],
            )
            x = ((x.to(self._scale.dtype) - self._shift) * self._scale).to(self.dtype)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (
            f"DeviceLoader({n} images {c}x{h}x{w} on {self.device}, batch_size="
            f"{self.batch_size}, crop_padding={self.crop_padding}, flip={self.flip}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last})"
        )
