"""Sample order that is a pure function of (seed, epoch): resumable and shardable."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler"]


class EpochSampler(Sampler[int]):
    """Indices of one epoch, shuffled by a generator seeded with ``seed + epoch``.

    Because the order depends on nothing but (seed, epoch), a resumed run sees exactly the
    batches an uninterrupted run would; ``skip`` drops the first samples of the epoch, for
    resuming in the middle of one. With ``num_replicas > 1`` (data parallel), replica
    ``rank`` takes every ``num_replicas``-th index of the shuffled order; replicas get
    equal shares when ``drop_last`` (training) and the exact partition otherwise
    (evaluation, where every sample must be counted once).

    Call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.
    """

    def __init__(
        self,
        size: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if size < 0:
            raise ValueError(f"size: must be >= 0, got {size}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the order of ``epoch`` and drop its first ``skip`` indices of this rank."""
        self.epoch = epoch
        self.skip = skip

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last and self.num_replicas > 1:
            order = order[: self.size - self.size % self.num_replicas]
        return order[self.rank :: self.num_replicas][self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        n = self.size
        if self.drop_last and self.num_replicas > 1:
            n -= n % self.num_replicas
        share = len(range(self.rank, n, self.num_replicas))
        return max(share - self.skip, 0)
