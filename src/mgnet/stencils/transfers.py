"""R, P and Pi: grid transfers between a grid and its coarsening by two in every axis.

A Dirichlet axis of n = 2m + 1 interior nodes coarsens to m nodes: coarse node I sits on
fine node 2I + 1 (0-based). A periodic axis of n = 2m nodes coarsens to m: coarse I sits
on fine 2I. All three transfers are tensor products of their 1D forms and act on tensors
shaped (batch, 1, *grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import scipy.sparse as sp
import torch
from torch import Tensor, nn

__all__ = [
    "FullWeighting",
    "Interpolation",
    "Injection",
    "coarse_shape",
    "interpolation_matrix",
    "restriction_matrix",
]


def coarse_shape(shape: Sequence[int], bc: str) -> tuple[int, ...] | None:
    """The coarse grid of ``shape``, or None when some axis cannot be halved."""
    if bc == "dirichlet":
        if all(n % 2 == 1 and n >= 3 for n in shape):
            return tuple((n - 1) // 2 for n in shape)
        return None
    if all(n % 2 == 0 and n >= 8 for n in shape):
        return tuple(n // 2 for n in shape)
    return None


def _ax(t: Tensor, axis: int, s: slice) -> Tensor:
    return t[(slice(None),) * (axis + 2) + (s,)]


class FullWeighting(nn.Module):
    """R^{l+1}_l, full-weighting restriction: weights (1/4, 1/2, 1/4) per axis (sum 1)."""

    def __init__(self, fine_shape: Sequence[int], bc: str = "dirichlet") -> None:
        super().__init__()
        self.fine_shape = tuple(fine_shape)
        self.bc = bc
        if coarse_shape(self.fine_shape, bc) is None:
            raise ValueError(f"fine_shape: {self.fine_shape} cannot be coarsened with bc={bc!r}")

    def forward(self, x: Tensor) -> Tensor:
        for axis in range(len(self.fine_shape)):
            if self.bc == "dirichlet":
                out = torch.add(_ax(x, axis, slice(0, -2, 2)), _ax(x, axis, slice(2, None, 2)))
                out.add_(_ax(x, axis, slice(1, -1, 2)), alpha=2.0).mul_(0.25)
            else:
                odd = _ax(x, axis, slice(1, None, 2))
                out = torch.add(odd, odd.roll(1, dims=axis + 2))
                out.add_(_ax(x, axis, slice(0, None, 2)), alpha=2.0).mul_(0.25)
            x = out
        return x

    def extra_repr(self) -> str:
        return f"full weighting, fine_shape={self.fine_shape}, bc={self.bc}"


class Interpolation(nn.Module):
    """P^l_{l+1}, (bi/tri)linear interpolation from the coarse grid to ``fine_shape``."""

    def __init__(self, fine_shape: Sequence[int], bc: str = "dirichlet") -> None:
        super().__init__()
        self.fine_shape = tuple(fine_shape)
        self.bc = bc
        if coarse_shape(self.fine_shape, bc) is None:
            raise ValueError(f"fine_shape: {self.fine_shape} cannot be coarsened with bc={bc!r}")

    def forward(self, x: Tensor) -> Tensor:
        for axis, n in enumerate(self.fine_shape):
            shape = list(x.shape)
            shape[axis + 2] = n
            out = torch.empty(shape, dtype=x.dtype, device=x.device)
            if self.bc == "dirichlet":
                _ax(out, axis, slice(1, None, 2)).copy_(x)
                torch.add(
                    _ax(x, axis, slice(0, -1)),
                    _ax(x, axis, slice(1, None)),
                    out=_ax(out, axis, slice(2, -1, 2)),
                )
                _ax(out, axis, slice(0, 1)).copy_(_ax(x, axis, slice(0, 1)))
                _ax(out, axis, slice(n - 1, n)).copy_(_ax(x, axis, slice(-1, None)))
                _ax(out, axis, slice(0, None, 2)).mul_(0.5)
            else:
                _ax(out, axis, slice(0, None, 2)).copy_(x)
                torch.add(x, x.roll(-1, dims=axis + 2), out=_ax(out, axis, slice(1, None, 2)))
                _ax(out, axis, slice(1, None, 2)).mul_(0.5)
            x = out
        return x

    def extra_repr(self) -> str:
        return f"linear interpolation, fine_shape={self.fine_shape}, bc={self.bc}"


class Injection(nn.Module):
    """Pi^{l+1}_l, injection: the coarse value is the fine value at the same node (FAS)."""

    def __init__(self, fine_shape: Sequence[int], bc: str = "dirichlet") -> None:
        super().__init__()
        self.fine_shape = tuple(fine_shape)
        self.bc = bc

    def forward(self, x: Tensor) -> Tensor:
        s = slice(1, None, 2) if self.bc == "dirichlet" else slice(0, None, 2)
        return x[(slice(None), slice(None)) + (s,) * len(self.fine_shape)].contiguous()

    def extra_repr(self) -> str:
        return f"injection, fine_shape={self.fine_shape}, bc={self.bc}"


def _p1d(n: int, bc: str) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    if bc == "dirichlet":
        m = (n - 1) // 2
        for I in range(m):
            for i, w in ((2 * I, 0.5), (2 * I + 1, 1.0), (2 * I + 2, 0.5)):
                rows.append(i), cols.append(I), vals.append(w)
    else:
        m = n // 2
        for I in range(m):
            for i, w in ((2 * I - 1, 0.5), (2 * I, 1.0), (2 * I + 1, 0.5)):
                rows.append(i % n), cols.append(I), vals.append(w)
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, m))


def interpolation_matrix(fine_shape: Sequence[int], bc: str = "dirichlet") -> sp.csr_matrix:
    """P as a sparse matrix (fine unknowns x coarse unknowns, C order)."""
    M = sp.csr_matrix([[1.0]])
    for n in fine_shape:
        M = sp.kron(M, _p1d(n, bc), format="csr")
    return M


def restriction_matrix(fine_shape: Sequence[int], bc: str = "dirichlet") -> sp.csr_matrix:
    """R = P^T / 2^d, full weighting, as a sparse matrix."""
    return (interpolation_matrix(fine_shape, bc).T / 2 ** len(fine_shape)).tocsr()
