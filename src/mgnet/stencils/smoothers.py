"""B^{l,i}: smoothers written as the data -> feature operator of one smoothing step.

One smoothing step of the cycle is u <- u + B (f - A u). Classical smoothers are choices
of B:

* damped Jacobi: B = w D^-1 on every step (:class:`Jacobi`);
* red-black Gauss-Seidel: two steps, B^{l,1} = M_red D^-1 and B^{l,2} = M_black D^-1
  with M a 0/1 mask (:class:`ColoredJacobi`, built by :func:`red_black`);
* Chebyshev: B^{l,i} = w_i D^-1 with the Chebyshev step sizes (:func:`chebyshev_weights`);
* Newton-Jacobi / Newton-Gauss-Seidel for a nonlinear A (FAS): B = w (D + N'(u))^-1,
  which depends on the current u (``needs_u = True``, called as ``B(r, u)``);
* a direct coarse solve: B = A^-1 (:class:`DirectSolve`), factorized once at setup.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse.linalg as spla
import torch
from torch import Tensor, nn

from mgnet.core.cycle import residual
from mgnet.stencils import kernels
from mgnet.stencils.operators import NonlinearOperator, StencilOperator

__all__ = [
    "Jacobi",
    "ColoredJacobi",
    "red_black",
    "chebyshev_weights",
    "NewtonJacobi",
    "DirectSolve",
    "default_omega",
]


def default_omega(dim: int) -> float:
    """The damping w that best smooths the Laplacian: 2/3 (1D), 4/5 (2D), 6/7 (3D)."""
    return 2 * dim / (2 * dim + 1)


def _inv_diag(A: StencilOperator) -> float | Tensor:
    d = A.diagonal()
    if isinstance(d, Tensor):
        if not bool((d != 0).all()):
            raise ValueError("A: the diagonal has zeros; Jacobi-type smoothers need D != 0")
        return 1.0 / d
    if d == 0:
        raise ValueError("A: the diagonal is zero; Jacobi-type smoothers need D != 0")
    return 1.0 / d


class Jacobi(nn.Module):
    """B = w D^-1, damped Jacobi (one step of it); ``omega`` is w."""

    def __init__(self, A: StencilOperator, omega: float) -> None:
        super().__init__()
        if not 0 < omega < 2:
            raise ValueError(f"omega: the damping must lie in (0, 2), got {omega}")
        self.omega = float(omega)
        scale = _inv_diag(A)
        if isinstance(scale, Tensor):
            self.register_buffer("scale", omega * scale)
        else:
            self.scale = omega * scale

    def forward(self, r: Tensor) -> Tensor:
        return r * self.scale

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor:
        """u <- u + w D^-1 (f - A u), in place: the cycle's step with this B, fused (one
        pass over memory with the compiled CPU kernel)."""
        if isinstance(A, StencilOperator) and A.compiled(u, f):
            return kernels.jacobi_update_(A, u, f, self.scale)
        r = residual(A, u, f)
        if isinstance(self.scale, Tensor):
            return u.addcmul_(r, self.scale)
        return u.add_(r, alpha=self.scale)

    def extra_repr(self) -> str:
        return f"B = {self.omega:.4g} D^-1 (damped Jacobi)"


class ColoredJacobi(nn.Module):
    """B = M D^-1: a Jacobi step on the nodes of one colour (M is a 0/1 mask).

    ``parity`` (0 or 1, set by :func:`red_black`) says that M is the red (0) or black (1)
    colouring, (i_1 + ... + i_d) mod 2 = parity, which lets :meth:`update_` work in blocks;
    ``mask`` may then be None (M is built from the parity, and only when a grid is needed:
    the compiled kernels of a constant stencil never need it).
    """

    def __init__(
        self,
        A: StencilOperator,
        mask: Tensor | None,
        color: str = "",
        parity: int | None = None,
    ) -> None:
        super().__init__()
        self.color = color
        self.parity = parity
        scale = _inv_diag(A)
        # D^-1 at the nodes of the colour when it is one number (the compiled kernel's scale)
        self.value = None if isinstance(scale, Tensor) else float(scale)
        self.shape = tuple(A.shape)
        # the 0-dim anchor carries the module's device and dtype for a grid built later
        self.register_buffer("_anchor", torch.zeros((), dtype=torch.float64), persistent=False)
        if self.value is not None and parity is not None:
            # M D^-1 is built on first use: the compiled kernels never need the grid
            self.register_buffer("_scale", None, persistent=False)
        else:
            if mask is None:
                if parity is None:
                    raise ValueError("mask: give the colour's mask, or its parity (0 or 1)")
                mask = _parity(self.shape) == parity
            scale = torch.as_tensor(scale, dtype=torch.float64)
            zero = torch.zeros((), dtype=scale.dtype)
            self.register_buffer("_scale", torch.where(mask, scale, zero), persistent=False)

    @property
    def scale(self) -> Tensor:
        """M D^-1 as a grid (zero off the colour), on the module's device and dtype."""
        if self._scale is None:
            grid = torch.zeros(self.shape, dtype=self._anchor.dtype, device=self._anchor.device)
            mask = _parity(self.shape).to(grid.device) == self.parity
            self._scale = grid.masked_fill_(mask, self.value)
        return self._scale

    def forward(self, r: Tensor) -> Tensor:
        return r * self.scale

    @property
    def colour_step(self) -> tuple[int, float | Tensor] | None:
        """(parity, scale) of this step for the compiled sweeps of
        :mod:`mgnet.stencils.kernels` (scale: D^-1 as a number when constant, else the
        masked grid), or None for a mask that is not a red-black colour."""
        if self.parity is None:
            return None
        return self.parity, (self.scale if self.value is None else self.value)

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor:
        """u <- u + M D^-1 (f - A u), in place: the cycle's step with this B, fused.

        For a red-black colour and a stencil with axis neighbours only, the nodes this
        step changes are coupled only to nodes it leaves alone, so the residual and the
        update can run block by block while a block is in cache
        (:meth:`~mgnet.stencils.StencilOperator.masked_update_`). On the CPU the compiled
        kernel does it in one pass that writes the nodes of this colour only."""
        if (
            self.parity is not None
            and isinstance(A, StencilOperator)
            and A.axis_neighbours
            and u.shape == f.shape
        ):
            if A.compiled(u, f):
                return kernels.colour_update_(A, u, f, *self.colour_step)
            if u.device.type != "cpu":  # a GPU: the colour's nodes only, no blocks
                return A.colour_update_(u, f, *self.colour_step)
            return A.masked_update_(u, f, self.scale)
        return u.addcmul_(residual(A, u, f), self.scale)

    def extra_repr(self) -> str:
        return f"B = M_{self.color} D^-1"


def _parity(shape: tuple[int, ...]) -> Tensor:
    """(i_1 + ... + i_d) mod 2 over the grid (0: red, 1: black), built by broadcasting."""
    p = torch.zeros((1,) * len(shape), dtype=torch.int8)
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        p = p + (torch.arange(n) % 2).to(torch.int8).view(view)
    return p % 2


def red_black(A: StencilOperator) -> tuple[ColoredJacobi, ColoredJacobi]:
    """(B_red, B_black) = (M_red D^-1, M_black D^-1); red nodes have an even index sum.

    For 3-, 5- and 7-point stencils the two steps together are exactly one red-black
    Gauss-Seidel sweep. Periodic axes need an even size so that the colouring closes.
    """
    if A.bc == "periodic" and any(n % 2 for n in A.shape):
        raise ValueError(
            f"A: red-black colouring of a periodic grid needs even sizes, got {A.shape}"
        )
    # the masks are made by the smoothers themselves, and only where they need them
    return ColoredJacobi(A, None, "red", 0), ColoredJacobi(A, None, "black", 1)


def chebyshev_weights(nu: int, lam_max: float, lower: float = 0.25) -> list[float]:
    """w_1..w_nu of B^{l,i} = w_i D^-1: the inverse roots of the degree-nu Chebyshev
    polynomial on [lower * lam_max, lam_max], the high end of the spectrum of D^-1 A."""
    if nu < 1:
        raise ValueError(f"nu: need at least one Chebyshev step, got {nu}")
    a, b = lower * lam_max, lam_max
    return [
        1.0 / ((b + a) / 2 + (b - a) / 2 * math.cos(math.pi * (2 * i - 1) / (2 * nu)))
        for i in range(1, nu + 1)
    ]


class NewtonJacobi(nn.Module):
    """B(r, u) = w M (D + N'(u))^-1: a pointwise Newton step for A(u) = L u + N(u).

    With a red or black ``mask`` M this is one half of a nonlinear (Newton) red-black
    Gauss-Seidel sweep; without a mask it is damped Newton-Jacobi. Called as B(r, u)
    (``needs_u = True``); u = None stands for zero.
    """

    needs_u = True

    def __init__(
        self, A: NonlinearOperator, omega: float = 1.0, mask: Tensor | None = None, color: str = ""
    ) -> None:
        super().__init__()
        self.A = A
        self.omega = float(omega)
        self.color = color
        d = A.diagonal()
        self.d = d if not isinstance(d, Tensor) else None
        if isinstance(d, Tensor):
            self.register_buffer("dtensor", d)
        self.register_buffer("mask", None if mask is None else mask.to(torch.float64))

    def forward(self, r: Tensor, u: Tensor | None) -> Tensor:
        d = self.d if self.d is not None else self.dtensor
        denom = self.A.dN(u, r) + d
        out = r * self.omega / denom
        if self.mask is not None:
            out.mul_(self.mask)
        return out

    def extra_repr(self) -> str:
        m = f"M_{self.color} " if self.mask is not None else ""
        return f"B(u) = {self.omega:.3g} {m}(D + N'(u))^-1 (Newton)"


class DirectSolve(nn.Module):
    """B = A^-1 on the coarsest grid, factorized once at construction (no inverse formed).

    Up to ``dense_max`` unknowns the factor is dense: Cholesky when A is symmetric
    positive definite, LU with partial pivoting otherwise. It is a buffer of the module,
    so it moves with ``.to(device, dtype)`` and is applied where the solver runs (two
    triangular solves; CUDA never goes through the host). Above ``dense_max`` SciPy's
    sparse LU (``splu`` with a minimum-degree ordering of A + A^T) is used, on the CPU.

    A singular A whose null space is the constants (a periodic grid without zero-order
    term) is factorized with node 0 pinned: it solves compatible systems (right-hand side
    orthogonal to the constants, which is enforced by removing the mean) and returns the
    solution of zero mean, the pseudo-inverse's. Any other singular A is refused.
    """

    def __init__(self, A: StencilOperator, dense_max: int = 1024) -> None:
        super().__init__()
        self.shape = A.shape
        self.n = A.unknowns
        M = A.to_sparse().tocsc()
        if not np.isfinite(M.data).all():
            raise ValueError("A: the coarsest-grid operator holds NaN or inf")
        scale = float(abs(M).max()) or 1.0
        # null space = constants: every row sums to zero (and, A being symmetric, every column)
        rowsum = np.abs(M @ np.ones(self.n)).max()
        self.pinned = self.n > 1 and rowsum <= 1e-12 * scale * max(1, len(A.offsets))
        if self.pinned:
            M = M.tolil()
            M[0, :] = 0
            M[:, 0] = 0
            M[0, 0] = scale
            M = M.tocsc()
        self.lu = None
        self.kind = "sparse LU"
        if self.n <= dense_max:
            dense = torch.from_numpy(M.toarray())
            symmetric = bool((dense - dense.T).abs().max() <= 1e-12 * scale)
            L, info = torch.linalg.cholesky_ex(dense) if symmetric else (None, 1)
            if int(info) == 0:
                self.register_buffer("L", L)
                self.kind = "dense Cholesky"
            else:
                LU, pivots, info = torch.linalg.lu_factor_ex(dense)
                d = LU.diagonal().abs()
                if int(info) != 0 or float(d.min()) <= 1e-14 * float(d.max()):
                    raise ValueError(
                        f"A: the coarsest-grid operator ({self.n} unknowns) is singular; "
                        "add a zero-order term or coarsen less (max_coarse)"
                    )
                self.register_buffer("LU", LU)
                self.register_buffer("pivots", pivots)
                self.kind = "dense LU"
        else:
            try:
                self.lu = spla.splu(M, permc_spec="MMD_AT_PLUS_A")
            except RuntimeError as e:  # "Factor is exactly singular"
                raise ValueError(
                    f"A: the coarsest-grid operator ({self.n} unknowns) is singular ({e})"
                ) from None

    def forward(self, r: Tensor) -> Tensor:
        flat = r.reshape(r.shape[0], self.n)
        if self.pinned:
            flat = flat - flat.mean(dim=1, keepdim=True)
            flat[:, 0] = 0
        if self.lu is not None:
            x = self.lu.solve(flat.detach().cpu().double().numpy().T).T
            x = torch.from_numpy(np.ascontiguousarray(x)).to(r)
        elif self.kind == "dense Cholesky":
            x = torch.cholesky_solve(flat.T, self.L).T
        else:
            x = torch.linalg.lu_solve(self.LU, self.pivots, flat.T).T
        if self.pinned:
            x = x - x.mean(dim=1, keepdim=True)
        return x.reshape(r.shape)

    def extra_repr(self) -> str:
        return f"B = A^-1 ({self.kind}, {self.n} unknowns)"
