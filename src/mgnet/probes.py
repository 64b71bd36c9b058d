"""Operator probes: what can be learned about a linear module by applying it.

:func:`operator_matrix` (the dense matrix of a small operator, column by column),
:func:`operator_diagonal` (diag(A) of a stencil-like operator from interleaved probes),
:func:`power_iteration` (its largest eigenvalue) and :class:`Adjoint` (A^T as a module,
by a vector-Jacobian product). They need nothing but ``A(u)``, so they work for
convolutions, stencils and compositions alike; the theory pages, the projected iteration
(:mod:`mgnet.constrained`) and the inspection tools use them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Adjoint", "operator_diagonal", "operator_matrix", "power_iteration"]


def _feature_shape(A: nn.Module, f: Tensor) -> tuple[int, ...]:
    c = getattr(A, "in_channels", f.shape[1])
    return (f.shape[0], c, *f.shape[2:])


class Adjoint(nn.Module):
    """A^T, the adjoint of a linear module ``A`` (data -> feature), scaled by ``omega``.

    Computed as a vector-Jacobian product of A at zero, so it works for any linear module
    (convolutions, stencils, compositions); ``B = Adjoint(A, omega)`` makes the smoothing
    step a projected Landweber (gradient) step for min ||A u - f||^2.
    """

    def __init__(self, A: nn.Module, omega: float = 1.0) -> None:
        super().__init__()
        self.A = A
        self.omega = omega

    def forward(self, r: Tensor) -> Tensor:
        if isinstance(self.A, nn.Conv1d | nn.Conv2d | nn.Conv3d) and self.A.bias is None:
            conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
            A = self.A
            if A.padding_mode == "zeros" and A.stride == (1,) * (r.dim() - 2):
                return self.omega * conv_t[r.dim() - 2](
                    r, A.weight, padding=A.padding, dilation=A.dilation, groups=A.groups
                )
        with torch.enable_grad():
            x = torch.zeros(
                _feature_shape(self.A, r), dtype=r.dtype, device=r.device, requires_grad=True
            )
            (g,) = torch.autograd.grad(self.A(x), x, grad_outputs=r)
        return self.omega * g


def operator_diagonal(A: nn.Module, like: Tensor, radius: int = 1) -> Tensor:
    """diag(A), shaped like a feature tensor, by probing A with interleaved unit grids.

    Exact for a linear A that couples a point only to points within ``radius`` grid steps in
    each direction (a (2 radius + 1)^d stencil, channel-mixing allowed): (2 radius + 1)^d
    probes per channel. ``like`` is a feature tensor fixing batch, channels and grid.
    """
    if radius < 0:
        raise ValueError(f"radius: must be >= 0, got {radius}")
    d = like.dim() - 2
    k = 2 * radius + 1
    diag = torch.zeros_like(like)
    grids = torch.meshgrid(
        *[torch.arange(n, device=like.device) for n in like.shape[2:]], indexing="ij"
    )
    with torch.no_grad():
        for c in range(like.shape[1]):
            for offset in range(k**d):
                mask = torch.ones(like.shape[2:], dtype=torch.bool, device=like.device)
                rest = offset
                for g in grids:
                    mask &= (g % k) == (rest % k)
                    rest //= k
                probe = torch.zeros_like(like)
                probe[:, c][:, mask] = 1
                diag[:, c][:, mask] = A(probe)[:, c][:, mask]
    return diag


def operator_matrix(
    A: nn.Module, feature_shape: Sequence[int], dtype: torch.dtype = torch.float64
) -> Tensor:
    """The dense matrix of a linear module A for one sample (small problems only).

    Column j is A applied to the j-th unit feature of shape ``feature_shape``
    (channel, *space); rows follow ``A(u).flatten()``.
    """
    shape = tuple(int(s) for s in feature_shape)
    n = math.prod(shape)
    if n > 20_000:
        raise ValueError(
            f"feature_shape: {shape} has {n} unknowns; operator_matrix is for "
            "small problems (at most 20000)"
        )
    param = next(A.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    eye = torch.eye(n, dtype=dtype, device=device).reshape(n, *shape)
    if param is not None and param.dtype != dtype:
        A = copy.deepcopy(A).to(dtype)  # never change the caller's module
    with torch.no_grad():
        cols = A(eye)
    return cols.reshape(n, -1).T.contiguous()


def power_iteration(apply: Callable[[Tensor], Tensor], like: Tensor, iters: int = 60) -> float:
    """The largest eigenvalue of a linear map with a real, positive dominant eigenvalue (a
    symmetric positive operator, or one similar to it such as D^-1 A), by ``iters`` steps
    of the power iteration from a fixed positive start shaped like ``like`` (seeded, so
    the estimate is the same on every call). ``apply`` maps such a tensor to its image."""
    if iters < 1:
        raise ValueError(f"iters: need at least one power step, got {iters}")
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(like.shape, generator=gen, dtype=like.dtype).to(like.device) + 0.5
    lam = 0.0
    with torch.no_grad():
        for _ in range(iters):
            y = apply(x)
            lam = (y.flatten() @ x.flatten() / (x.flatten() @ x.flatten())).item()
            x = y / y.norm().clamp_min(1e-300)
    return lam
