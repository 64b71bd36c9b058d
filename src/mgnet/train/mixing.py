"""Mixup and CutMix, batch-wise, on the device.

Both pair every image of a batch with another image of the same batch (a random
permutation) and mix the two with a weight ``lam ~ Beta(alpha, alpha)``:

* mixup: ``x = lam * x + (1 - lam) * x[perm]``;
* cutmix: a box covering a fraction ``1 - lam`` of the image (a random centre, clipped at
  the border) is pasted from ``x[perm]``; ``lam`` is then the share of pixels kept.

The loss is the same mix of the two labels' losses,
``lam * loss(logits, y) + (1 - lam) * loss(logits, y[perm])``. Because cross-entropy is
linear in the target, this is exactly cross-entropy against the soft target
``lam * onehot(y) + (1 - lam) * onehot(y[perm])``, and with label smoothing each of the
two targets is smoothed, which is the smoothed soft target.

The draws of one batch are a function of (seed, epoch, step, rank) only, so a resumed run
mixes exactly as the uninterrupted one did, without any generator state to save, and the
ranks of a data-parallel run mix their shards independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["MixedBatch", "mix_batch"]


@dataclass
class MixedBatch:
    """A mixed batch: images ``x``, the two label sets and the weight ``lam`` of ``y_a``."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float
    kind: str  # "mixup", "cutmix" or "none"

    def loss(self, criterion, logits: Tensor) -> Tensor:
        """``lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)``."""
        if self.lam == 1.0:
            return criterion(logits, self.y_a)
        return self.lam * criterion(logits, self.y_a) + (1 - self.lam) * criterion(logits, self.y_b)

    @property
    def y_main(self) -> Tensor:
        """The labels with the larger weight (what a training accuracy is counted against)."""
        return self.y_a if self.lam >= 0.5 else self.y_b


def mix_batch(
    x: Tensor, y: Tensor, mixup: float, cutmix: float, seed: int, epoch: int, step: int, rank: int
) -> MixedBatch:
    """Mix batch ``(x, y)`` with mixup (alpha ``mixup``) and/or CutMix (alpha ``cutmix``).

    An alpha of 0 turns a method off; with both on, each batch uses one of them with
    probability 1/2. The draws depend on ``(seed, epoch, step, rank)`` only.
    """
    if mixup <= 0 and cutmix <= 0:
        return MixedBatch(x, y, y, 1.0, "none")
    rng = np.random.default_rng([seed, epoch, step, rank, 0x4D49])
    if mixup > 0 and cutmix > 0:
        kind = "cutmix" if rng.random() < 0.5 else "mixup"
    else:
        kind = "mixup" if mixup > 0 else "cutmix"
    alpha = mixup if kind == "mixup" else cutmix
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0]))
    if x.device.type == "cuda":  # an asynchronous copy from pinned memory: no host sync
        perm = perm.pin_memory().to(x.device, non_blocking=True)
    y_b = y[perm]
    if kind == "mixup":
        return MixedBatch(x * lam + x[perm] * (1 - lam), y, y_b, lam, kind)
    h, w = x.shape[-2:]
    cut = float(np.sqrt(1.0 - lam))
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return MixedBatch(x, y, y_b, lam, kind)
