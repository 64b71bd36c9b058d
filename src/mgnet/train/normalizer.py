"""Pointwise Gaussian normalisation of fields, as FNO's reference scripts normalise Darcy data.

A neural operator trains on inputs and targets scaled at every grid point by the
statistics of the training split: x -> (x - mean) / (std + eps), mean and std taken over
the training samples at each point (and channel), eps = 1e-5. Its output is decoded,
y = out * (std + eps) + mean, *before* the loss and the metrics, so errors are measured
on the solution itself.

:class:`NormalizedOperator` holds the two normalisers (of the input a and of the target u)
as buffers around the operator, so the statistics are part of the model's ``state_dict``:
a run's checkpoints carry them, and resume, ``mgnet eval`` and ``mgnet export`` use the
same ones (an exported operator takes the raw coefficient and returns the raw solution).
On a grid of another size than the statistics' (resolution transfer: trained at 65, run at
129) they are interpolated bilinearly between the nodes, corners included
(``align_corners=True``: the grids are vertex-centred, boundary included).

One safeguard differs from FNO's normaliser: the input's pointwise standard deviation is
floored at :data:`INPUT_STD_FLOOR` times its mean over the grid. With few training samples
a point can hold the same coefficient in all of them (std 0), and a test coefficient that
differs there would be divided by eps = 1e-5; with Li et al.'s 1000 samples the pointwise
std of the 12/3 coefficient is about 4.5 everywhere and the floor never acts. The target's
std is not floored: it is only multiplied (and is 0 on the Dirichlet boundary).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EPS", "INPUT_STD_FLOOR", "NormalizedOperator", "PointwiseNormalizer"]

#: added to the standard deviation, as in FNO's ``UnitGaussianNormalizer``
EPS = 1e-5
#: the input normaliser's std is at least this fraction of its mean over the grid
INPUT_STD_FLOOR = 0.1


class PointwiseNormalizer(nn.Module):
    """x -> (x - mean) / (std + eps) with a mean and a standard deviation per grid point and
    channel, ``mean`` and ``std`` buffers shaped (C, s, s). Before :meth:`fit` they are
    0 and 1 (shape (1, 1, 1)): the identity up to eps. ``floor``: :meth:`fit` raises the
    std of each channel to at least ``floor`` times its mean over the grid (0: never)."""

    mean: Tensor
    std: Tensor

    def __init__(self, eps: float = EPS, floor: float = 0.0) -> None:
        super().__init__()
        self.eps, self.floor = eps, floor
        self.register_buffer("mean", torch.zeros(1, 1, 1))
        self.register_buffer("std", torch.ones(1, 1, 1))

    @torch.no_grad()
    def fit(self, samples: Tensor) -> PointwiseNormalizer:
        """Take the statistics of ``samples`` (N, C, s, s) or (N, s, s): the mean and the
        standard deviation over N at every point, computed in float64 (the unbiased
        estimate for N >= 2, as ``torch.std``; 0 for one sample)."""
        x = samples if samples.dim() == 4 else samples.unsqueeze(1)
        if x.dim() != 4 or x.shape[0] < 1:
            raise ValueError(
                f"samples: expected (N, C, s, s) or (N, s, s) with N >= 1, got "
                f"{tuple(samples.shape)}"
            )
        x = x.double()
        std = x.std(0, correction=1 if x.shape[0] > 1 else 0)
        if self.floor:
            std = torch.maximum(std, self.floor * std.mean((1, 2), keepdim=True))
        self.mean = x.mean(0).float()
        self.std = std.float()
        return self

    @property
    def fitted(self) -> bool:
        return self.mean.shape[-1] > 1

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """mean and std + eps on the grid of ``x`` (interpolated when its size differs)."""
        mean, scale = self.mean, self.std + self.eps
        if self.fitted and tuple(mean.shape[-2:]) != tuple(x.shape[-2:]):
            both = torch.stack([mean, scale])
            both = F.interpolate(both, size=x.shape[-2:], mode="bilinear", align_corners=True)
            mean, scale = both[0], both[1]
        return mean.to(x.dtype), scale.to(x.dtype)

    def encode(self, x: Tensor) -> Tensor:
        mean, scale = self._stats(x)
        return (x - mean) / scale

    def decode(self, y: Tensor) -> Tensor:
        mean, scale = self._stats(y)
        return y * scale + mean

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args) -> None:
        # the statistics' grid is the data's: take the stored shape before loading
        for name in ("mean", "std"):
            stored = state_dict.get(prefix + name)
            if isinstance(stored, Tensor) and stored.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        shape = tuple(self.mean.shape) if self.fitted else "not fitted"
        return f"stats {shape}, eps={self.eps:g}, floor={self.floor:g}"


class NormalizedOperator(nn.Module):
    """``net`` between normalisers: a -> decode_u(net(encode_a(a))).

    ``net`` is a neural operator (:mod:`mgnet.models.operators`), ``x_norm`` and ``y_norm``
    the :class:`PointwiseNormalizer` of its input (std floored, see the module) and of its
    target, fitted by :meth:`fit` on the training split. The parameters are ``net``'s; the
    statistics are buffers.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.x_norm = PointwiseNormalizer(floor=INPUT_STD_FLOOR)
        self.y_norm = PointwiseNormalizer()

    def fit(self, inputs: Tensor, targets: Tensor) -> NormalizedOperator:
        """Take the pointwise statistics of the training ``inputs`` and ``targets``."""
        self.x_norm.fit(inputs)
        self.y_norm.fit(targets)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.y_norm.decode(self.net(self.x_norm.encode(x)))

    @property
    def resolution(self) -> int | None:
        """Points per side of the grid the statistics were taken on (None: not fitted)."""
        return int(self.x_norm.mean.shape[-1]) if self.x_norm.fitted else None

    @property
    def in_channels(self) -> int:
        return self.net.in_channels

    @property
    def out_channels(self) -> int:
        return self.net.out_channels

    @property
    def min_input_size(self) -> int:
        return self.net.min_input_size

    def accepts(self, side: int) -> bool:
        """Whether ``net`` takes a grid of ``side`` points per side."""
        return self.net.accepts(side)

    def sides_accepted(self) -> str:
        return self.net.sides_accepted()
