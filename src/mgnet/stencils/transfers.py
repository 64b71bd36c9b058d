"""R, P and Pi: grid transfers between a grid and its coarsening by two in every axis.

A Dirichlet axis of n = 2m + 1 interior nodes coarsens to m nodes: coarse node I sits on
fine node 2I + 1 (0-based). A periodic axis of n = 2m nodes coarsens to m: coarse I sits
on fine 2I. All three transfers are tensor products of their 1D forms and act on tensors
shaped (batch, 1, *grid).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mgnet.core.cycle import residual
from mgnet.stencils import kernels
from mgnet.stencils.operators import StencilOperator

__all__ = [
    "CubicInterpolation",
    "SparseTransfer",
    "operator_interpolation_matrix",
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


def _add(a: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """out <- a + b. ``out=`` is not differentiable, so with autograd recording a graph
    the sum is copied in and added instead (a gradient through R and P)."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return out.copy_(a).add_(b)
    return torch.add(a, b, out=out)


def _ax_fresh(t: Tensor, axis: int, start: int, stop: int | None, step: int | None = None):
    return t[(slice(None),) * (axis + 2) + (slice(start, stop, step),)]


class _Scratch:
    """Private buffers for the intermediate results of a tensor-product transfer.

    A buffer is handed out only where nothing outside the transfer can see it (the
    partial results between the 1D passes), and only without autograd, so reusing it
    from call to call saves the allocation (and the page faults of a large one).
    """

    def __init__(self) -> None:
        self.buffers: dict = {}
        self.views: dict = {}

    def get(self, slot: int, shape: list[int], like: Tensor) -> Tensor:
        if torch.is_grad_enabled():  # a recorded pass (training through the cycle)
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        key = (slot, tuple(shape), like.dtype, like.device)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    def view(self, t: Tensor, axis: int, start: int, stop: int | None, step: int | None = None):
        """t[..., start:stop:step, ...] along grid axis ``axis``. On a small tensor (where
        building a view costs more than the arithmetic) and without autograd the view is
        kept for the next call on the same tensor; the cache holds at most 64 views of at
        most 16384 numbers each, which keeps those tensors alive until it is cleared."""
        if t.numel() > 16384 or torch.is_grad_enabled():
            return _ax(t, axis, slice(start, stop, step))
        key = (id(t), t.data_ptr(), axis, start, stop, step)
        v = self.views.get(key)
        if v is None:
            if len(self.views) >= 64:
                self.views.clear()
            v = self.views[key] = _ax(t, axis, slice(start, stop, step))
        return v


class _GridTransfer(nn.Module):
    """A transfer between the grid ``fine_shape`` and its coarsening (the one checked here)."""

    def __init__(self, fine_shape: Sequence[int], bc: str = "dirichlet") -> None:
        super().__init__()
        self.fine_shape = tuple(fine_shape)
        self.bc = bc
        if coarse_shape(self.fine_shape, bc) is None:
            raise ValueError(f"fine_shape: {self.fine_shape} cannot be coarsened with bc={bc!r}")
        self._scratch = _Scratch()
        self.coarse_shape = coarse_shape(self.fine_shape, bc)

    def _compiled(self, x: Tensor, grid: tuple[int, ...]) -> bool:
        """True when the compiled CPU kernel takes a call on x, a tensor on ``grid`` (see
        :mod:`mgnet.stencils.kernels`)."""
        return x.dim() == len(grid) + 2 and tuple(x.shape[2:]) == grid and kernels.usable(x)

    def _coarse_empty(self, x: Tensor) -> Tensor:
        return torch.empty(*x.shape[:2], *self.coarse_shape, dtype=x.dtype, device=x.device)


def _colour_steps(A, Bs, fine_shape, bc, u, f) -> list | None:
    """[(parity, scale)] of red-black colour steps B (``colour_step``) on the stencil A of
    this grid, when the compiled kernels can run them on (u, f); else None."""
    if not (
        isinstance(A, StencilOperator)
        and A.shape == fine_shape
        and A.bc == bc
        and (A.axis_neighbours or not Bs)
        and A.compiled(u, f)
    ):
        return None
    steps = [getattr(B, "colour_step", None) for B in Bs]
    if any(s is None for s in steps):
        return None
    if len({isinstance(s[1], Tensor) for s in steps}) > 1:
        return None
    return steps


class FullWeighting(_GridTransfer):
    """R^{l+1}_l, full-weighting restriction: weights (1/4, 1/2, 1/4) per axis (sum 1)."""

    def forward(self, x: Tensor) -> Tensor:
        if self._compiled(x, self.fine_shape):
            return kernels.restrict(self.fine_shape, self.bc, x, self._coarse_empty(x))
        ax = self._scratch.view
        # one 1D pass (1, 2, 1) per axis, finest axis last (on the smallest array); the
        # factor 1/4 per axis is applied once, as 1/4^d, to the coarse result
        d = len(self.fine_shape)
        for axis in range(d):
            shape = list(x.shape)
            shape[axis + 2] = (
                (shape[axis + 2] - 1) // 2 if self.bc == "dirichlet" else (shape[axis + 2] // 2)
            )
            last = axis == d - 1
            out = (
                torch.empty(shape, dtype=x.dtype, device=x.device)
                if last
                else self._scratch.get(axis, shape, x)
            )
            if self.bc == "dirichlet":
                _add(ax(x, axis, 0, -2, 2), ax(x, axis, 2, None, 2), out)
                out.add_(ax(x, axis, 1, -1, 2), alpha=2.0)
            else:
                odd = ax(x, axis, 1, None, 2)
                _add(odd, odd.roll(1, dims=axis + 2), out)
                out.add_(ax(x, axis, 0, None, 2), alpha=2.0)
            x = out
        return x.mul_(0.25**d)

    def restrict_residual(self, A: nn.Module, u: Tensor | None, f: Tensor) -> Tensor:
        """R (f - A u) (u = None is zero). For a :class:`~mgnet.stencils.StencilOperator` on
        the CPU the compiled kernel computes it in one pass over u and f, without storing the
        fine-grid residual; otherwise it is R applied to ``residual(A, u, f)``."""
        if (
            u is not None
            and isinstance(A, StencilOperator)
            and A.shape == self.fine_shape
            and A.bc == self.bc
            and A.compiled(u, f)
        ):
            return kernels.residual_restrict(A, u, f, self._coarse_empty(f))
        return self(residual(A, u, f))

    def smooth_restrict_(
        self, A: nn.Module, u: Tensor | None, f: Tensor, Bs: list[nn.Module]
    ) -> tuple[Tensor, Tensor] | None:
        """The smoothing steps u <- u + B_i (f - A u) in place (from zero when u is None),
        then R (f - A u), in one pass over memory (the compiled CPU kernel): returns
        (u, R (f - A u)); None when it cannot (the steps are not red-black colour steps of
        this stencil, or the tensors are not the kernels')."""
        steps = _colour_steps(A, Bs, self.fine_shape, self.bc, f if u is None else u, f)
        if steps is None:
            return None
        u = torch.zeros_like(f) if u is None else u
        out = self._coarse_empty(f)
        kernels.sweep_(A, u, f, steps, out=out)
        return u, out

    def extra_repr(self) -> str:
        return f"full weighting, fine_shape={self.fine_shape}, bc={self.bc}"


class Interpolation(_GridTransfer):
    """P^l_{l+1}, (bi/tri)linear interpolation from the coarse grid to ``fine_shape``."""

    def forward(self, x: Tensor) -> Tensor:
        """P x, a fresh tensor on the fine grid."""
        if self._compiled(x, self.coarse_shape):
            out = torch.empty(*x.shape[:2], *self.fine_shape, dtype=x.dtype)
            return kernels.interpolate(self.fine_shape, self.bc, x, out)
        return self._interpolate(x, None)

    def add_to(self, u: Tensor, x: Tensor) -> Tensor:
        """u <- u + P x, in place (the coarse correction), without forming P x on the fine
        grid: the last 1D pass adds straight into u (on the CPU: the compiled kernel, one
        pass over u). Returns u."""
        fine = (*x.shape[:2], *self.fine_shape)
        if self._compiled(x, self.coarse_shape) and u.shape == fine and kernels.usable(u, x):
            return kernels.interpolate_add_(self.fine_shape, self.bc, u, x)
        return self._interpolate(x, u)

    def add_to_smooth_(
        self, u: Tensor, e: Tensor, A: nn.Module, f: Tensor, Bs: list[nn.Module]
    ) -> Tensor | None:
        """u <- u + P e, then the smoothing steps u <- u + B_i (f - A u), in place and in one
        pass over memory (the compiled CPU kernel); None when it cannot (see
        :meth:`FullWeighting.smooth_restrict_`)."""
        steps = _colour_steps(A, Bs, self.fine_shape, self.bc, u, f)
        if steps is None or not self._compiled(e, self.coarse_shape) or e.dtype != u.dtype:
            return None
        if e.shape[:2] != u.shape[:2]:
            return None
        return kernels.sweep_(A, u, f, steps, e=e)

    def _interpolate(self, x: Tensor, target: Tensor | None) -> Tensor:
        ax = self._scratch.view
        d = len(self.fine_shape)
        for axis, n in enumerate(self.fine_shape):
            shape = list(x.shape)
            shape[axis + 2] = n
            if axis == d - 1 and target is not None:
                return self._accumulate_last(target, x)
            out = (
                torch.empty(shape, dtype=x.dtype, device=x.device)
                if axis == d - 1
                else self._scratch.get(axis, shape, x)
            )
            # views of a scratch buffer are reused, those of the fresh result are not
            ao = ax if axis < d - 1 else _ax_fresh
            if self.bc == "dirichlet":
                ao(out, axis, 1, None, 2).copy_(x)
                _add(ax(x, axis, 0, -1), ax(x, axis, 1, None), ao(out, axis, 2, -1, 2))
                ao(out, axis, 0, 1).copy_(ax(x, axis, 0, 1))
                ao(out, axis, n - 1, n).copy_(ax(x, axis, -1, None))
                ao(out, axis, 0, None, 2).mul_(0.5)
            else:
                ao(out, axis, 0, None, 2).copy_(x)
                _add(x, x.roll(-1, dims=axis + 2), ao(out, axis, 1, None, 2))
                ao(out, axis, 1, None, 2).mul_(0.5)
            x = out
        return x

    def _accumulate_last(self, u: Tensor, x: Tensor) -> Tensor:
        """u += (1D interpolation of x along the last axis), in place."""
        ax = self._scratch.view
        axis = len(self.fine_shape) - 1
        n, m = self.fine_shape[-1], x.shape[-1]
        if self.bc == "dirichlet":
            ax(u, axis, 1, None, 2).add_(x)  # coarse nodes: weight 1
            if m > 1:  # between two coarse nodes: weights 1/2, 1/2
                shape = list(x.shape)
                shape[-1] = m - 1
                mid = self._scratch.get(-1, shape, x)
                torch.add(ax(x, axis, 0, -1), ax(x, axis, 1, None), out=mid)
                ax(u, axis, 2, n - 1, 2).add_(mid, alpha=0.5)
            ax(u, axis, 0, 1).add_(ax(x, axis, 0, 1), alpha=0.5)
            ax(u, axis, n - 1, n).add_(ax(x, axis, m - 1, m), alpha=0.5)
        else:
            ax(u, axis, 0, None, 2).add_(x)
            mid = self._scratch.get(-1, list(x.shape), x)
            torch.add(
                ax(x, axis, 0, m - 1),
                ax(x, axis, 1, m),
                out=ax(mid, axis, 0, m - 1),
            )
            torch.add(
                ax(x, axis, m - 1, m),
                ax(x, axis, 0, 1),
                out=ax(mid, axis, m - 1, m),
            )
            ax(u, axis, 1, None, 2).add_(mid, alpha=0.5)
        return u

    def extra_repr(self) -> str:
        return f"linear interpolation, fine_shape={self.fine_shape}, bc={self.bc}"


class CubicInterpolation(_GridTransfer):
    """P^l_{l+1} of full multigrid: tensor-product cubic interpolation from the coarse grid
    to ``fine_shape``, the FMG interpolation (Pi-hat in some texts).

    FMG carries a coarse solution u^{l+1} up as the start of level l's cycles. Linear
    interpolation leaves an O(h^2) error in it, of the size of the discretization error;
    cubic interpolation leaves O(h^4), so one V(1,1) cycle per level reaches the
    discretization error where linear interpolation needs two. Along an axis (per axis in
    turn) a coarse node keeps its value and a node between two coarse nodes takes
    (-1, 9, 9, -1) / 16 of its four nearest (the Dirichlet boundary's zero among them; next
    to the boundary the Lagrange weights (15, -5, 1) / 16 of the three nearest coarse
    nodes). An axis with fewer than 3 coarse nodes (Dirichlet) or 4 (periodic) is
    interpolated linearly. Exact for cubic polynomials that vanish on the boundary.
    """

    def __init__(self, fine_shape: Sequence[int], bc: str = "dirichlet") -> None:
        super().__init__(fine_shape, bc)
        self._linear = Interpolation(fine_shape, bc)
        self._cubic = tuple(m >= (4 if bc == "periodic" else 3) for m in self.coarse_shape)

    def forward(self, x: Tensor) -> Tensor:
        """P x, a fresh tensor on the fine grid."""
        if not all(self._cubic):
            return self._linear(x) if not any(self._cubic) else self._mixed(x)
        periodic = self.bc == "periodic"
        compiled = self._compiled(x, self.coarse_shape)
        # the contiguous axis first, while the array is smallest
        for axis in reversed(range(len(self.fine_shape))):
            x = kernels.cubic_axis(x, axis, periodic) if compiled else self._axis(x, axis)
        return x

    def _mixed(self, x: Tensor) -> Tensor:
        """Linear along the short axes, cubic along the others (both per axis)."""
        for axis in reversed(range(len(self._cubic))):
            x = self._axis(x, axis) if self._cubic[axis] else self._linear_axis(x, axis)
        return x

    def _linear_axis(self, x: Tensor, axis: int) -> Tensor:
        """Linear along one axis: :class:`Interpolation` of the 1D grid, every other axis
        folded into the batch."""
        n = self.fine_shape[axis]
        lines = x.movedim(axis + 2, -1)
        folded = lines.reshape(-1, 1, lines.shape[-1])
        out = Interpolation((n,), self.bc)(folded.contiguous())
        return out.reshape(*lines.shape[:-1], n).movedim(-1, axis + 2)

    def _axis(self, x: Tensor, axis: int) -> Tensor:
        """Cubic along one axis with PyTorch (autograd, CUDA, or no compiled kernels)."""
        x = x.movedim(axis + 2, -1)
        if self.bc == "periodic":
            nxt, prv, nxt2 = x.roll(-1, -1), x.roll(1, -1), x.roll(-2, -1)
            mid = (9 * (x + nxt) - (prv + nxt2)) / 16
            out = torch.stack([x, mid], -1).flatten(-2)
        else:
            z = torch.zeros_like(x[..., :1])
            pad = torch.cat([z, z, x, z, z], -1)  # the boundary (0) and a ghost (unused 0)
            # between padded nodes k + 1 and k + 2 (coarse k - 1 and k), k = 0..m
            mid = (9 * (pad[..., 1:-2] + pad[..., 2:-1]) - (pad[..., :-3] + pad[..., 3:])) / 16
            ends = (15 * x[..., [0, -1]] - 5 * x[..., [1, -2]] + x[..., [2, -3]]) / 16
            mid = torch.cat([ends[..., :1], mid[..., 1:-1], ends[..., 1:]], -1)
            out = torch.stack([mid[..., :-1], x], -1).flatten(-2)
            out = torch.cat([out, mid[..., -1:]], -1)
        return out.movedim(-1, axis + 2)

    def extra_repr(self) -> str:
        return f"cubic interpolation, fine_shape={self.fine_shape}, bc={self.bc}"


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


# ------------------------------------------------------ operator-dependent interpolation
def _stencil_arrays(A) -> dict[tuple[int, ...], np.ndarray]:
    """{offset: coefficient over the grid} of a stencil operator (numbers broadcast)."""
    out = {}
    for k, o in enumerate(A.offsets):
        c = A.coefficient(k)
        c = c.detach().cpu().double().numpy() if isinstance(c, Tensor) else float(c)
        out[o] = np.broadcast_to(np.asarray(c, dtype=np.float64), A.shape)
    return out


def _collapsed(coef: dict, k: int, s: int, zero: np.ndarray) -> np.ndarray:
    """sum over t of the 2D stencil coefficient at offset s along axis k, t along the other."""
    return sum(coef.get(tuple(s if a == k else t for a in range(2)), zero) for t in (-1, 0, 1))


def operator_interpolation_matrix(A) -> sp.csr_matrix:
    """P^l_{l+1} built from the operator A^l (black-box multigrid, after Dendy), as a sparse
    matrix (fine unknowns x coarse unknowns, C order), in 1D and 2D.

    The coarse grid is the usual one (every second node). A fine node that is a coarse node
    takes the coarse value. In 2D a node between two coarse nodes along axis k takes
    w_- e_- + w_+ e_+ with w_+- = -a_+- / a_0, where a_-, a_0, a_+ are A's stencil collapsed
    (summed) across the other axis: the weights follow the fluxes, so a jump of the
    coefficient between the two coarse nodes moves the interpolant towards the side that
    conducts. Every remaining node (in 1D the nodes between two coarse nodes, in 2D the
    cell centres) solves its own row of A u = 0 for the values just interpolated around
    it: P_F = -D_F^-1 A_{F,:} P. For the constant Laplacian this is exactly linear
    interpolation; for -div(a grad) with a jumping a it keeps the flux continuous.
    """
    shape, bc = tuple(A.shape), A.bc
    d = len(shape)
    if d not in (1, 2):
        raise ValueError(f"A: operator-dependent interpolation is built in 1D and 2D, got {d}D")
    cs = coarse_shape(shape, bc)
    if cs is None:
        raise ValueError(f"A: shape {shape} cannot be coarsened with bc={bc!r}")
    periodic = bc == "periodic"
    p = 0 if periodic else 1  # coarse nodes sit on fine indices p, p + 2, ...
    coef = _stencil_arrays(A)
    zero = np.zeros(shape)
    fine = np.arange(math.prod(shape)).reshape(shape)
    coarse = np.arange(math.prod(cs)).reshape(cs)
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    on_coarse = [(g - p) % 2 == 0 for g in grids]
    rows, cols, vals = [], [], []
    C = np.logical_and.reduce(on_coarse)
    rows.append(fine[C])
    cols.append(coarse[tuple((g[C] - p) // 2 for g in grids)])
    vals.append(np.ones(int(C.sum())))
    if d == 2:
        for k in range(2):  # nodes between two coarse nodes along axis k
            other = 1 - k
            sel = ~on_coarse[k] & on_coarse[other]

            a0 = _collapsed(coef, k, 0, zero)[sel]
            if not bool((a0 > 0).all()):
                raise ValueError(
                    "A: operator-dependent interpolation needs a positive collapsed "
                    "diagonal (an M-matrix-like stencil, e.g. -div(a grad u) + c u, c >= 0)"
                )
            for s in (-1, 1):
                ik = grids[k][sel] + s
                valid = np.ones(ik.shape, dtype=bool) if periodic else (ik >= 0) & (ik < shape[k])
                ik = ik % shape[k]
                idx = [None, None]
                idx[k] = (ik - p) // 2
                idx[other] = (grids[other][sel] - p) // 2
                w = -_collapsed(coef, k, s, zero)[sel] / a0
                rows.append(fine[sel][valid])
                cols.append(coarse[idx[0][valid], idx[1][valid]])
                vals.append(w[valid])
    n, m = math.prod(shape), math.prod(cs)
    P0 = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, m)
    )
    rest = ~np.logical_or.reduce([C] + ([~on_coarse[0] ^ ~on_coarse[1]] if d == 2 else []))
    F = fine[rest]
    M = A.to_sparse().tocsr()
    D = M.diagonal()[F]
    if not bool((D > 0).all()):
        raise ValueError("A: operator-dependent interpolation needs a positive diagonal")
    PF = -(sp.diags(1.0 / D) @ M[F] @ P0)
    scatter = sp.csr_matrix((np.ones(len(F)), (F, np.arange(len(F)))), shape=(n, len(F)))
    P = (P0 + scatter @ PF).tocsr()
    P.eliminate_zeros()
    return P


class SparseTransfer(nn.Module):
    """R or P given as a sparse matrix M: x on the grid ``in_shape`` -> M x on ``out_shape``.

    The operator-dependent transfers of :func:`operator_interpolation_matrix` (P) and their
    transposes (R = P^T / 2^d) run through this module: M is a torch CSR buffer, so it
    moves with ``.to(device, dtype)``; tensors are (batch, 1, *grid).
    """

    def __init__(self, M: sp.spmatrix, in_shape: Sequence[int], out_shape: Sequence[int]) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        M = sp.csr_matrix(M)
        if M.shape != (math.prod(self.out_shape), math.prod(self.in_shape)):
            raise ValueError(f"M: shape {M.shape} does not map {self.in_shape} to {self.out_shape}")
        self.nnz = M.nnz
        with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used as documented
            warnings.simplefilter("ignore", UserWarning)
            csr = torch.sparse_csr_tensor(
                torch.from_numpy(M.indptr.astype(np.int64)),
                torch.from_numpy(M.indices.astype(np.int64)),
                torch.from_numpy(M.data.astype(np.float64)),
                size=M.shape,
            )
        self.register_buffer("M", csr)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        y = (self.M @ flat.T.contiguous()).T
        return y.reshape(x.shape[0], x.shape[1], *self.out_shape)

    def extra_repr(self) -> str:
        return f"sparse {self.out_shape} <- {self.in_shape}, nnz={self.nnz}"
