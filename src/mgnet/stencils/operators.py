"""A^l: discrete PDE operators on structured grids, as modules the MgNet cycle accepts.

Grids are vertex-centred on the unit cube [0, 1]^d (d = 1, 2, 3). A Dirichlet grid of
``shape = (n_1, ..., n_d)`` holds the interior nodes x_i = i h, i = 1..n, h = 1/(n + 1);
a periodic grid holds the nodes x_i = i h, i = 0..n-1, h = 1/n. Tensors are shaped
(batch, 1, *shape).

Every operator here is a :class:`StencilOperator`: for each offset o of its stencil a
coefficient (a number, or a tensor over the grid for variable coefficients), and

    (A u)_i = sum_o c_o[i] * u[i + o]

with u = 0 outside a Dirichlet grid (homogeneous boundary values; inhomogeneous ones are
moved to the right-hand side by :func:`dirichlet_lift`) and wrap-around on a periodic one.
Application is by slicing, not by convolution: each offset is one fused multiply-add over
the grid, which on the CPU is several times faster than a single-channel ``conv2d``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from mgnet.stencils import kernels

__all__ = [
    "StencilOperator",
    "NonlinearOperator",
    "laplacian",
    "anisotropic",
    "diffusion",
    "grid_points",
    "dirichlet_lift",
]

BOUNDARIES = ("dirichlet", "periodic")

# Numbers per block of a blocked residual (512 KiB of float64: three such blocks, of f, u
# and f - A u, stay in a core's L2 cache). Measured on one core: 2047^2 33 -> 23 ms,
# 1023^2 6.0 -> 5.0 ms, 511^2 1.4 -> 1.1 ms per 5-point residual.
_BLOCK = 65536


def _check_shape(shape: int | Sequence[int], dim: int | None, bc: str) -> tuple[int, ...]:
    if bc not in BOUNDARIES:
        raise ValueError(f"bc: {bc!r} is not one of {', '.join(BOUNDARIES)}")
    if isinstance(shape, int):
        if dim not in (1, 2, 3):
            raise ValueError(f"dim: must be 1, 2 or 3, got {dim!r}")
        shape = (shape,) * dim
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2, 3):
        raise ValueError(f"shape: need 1 to 3 grid sizes, got {shape}")
    if dim is not None and len(shape) != dim:
        raise ValueError(f"shape: {shape} has {len(shape)} sizes but dim={dim}")
    low = 1 if bc == "dirichlet" else 3
    if any(s < low for s in shape):
        raise ValueError(f"shape: every size must be >= {low} for bc={bc!r}, got {shape}")
    return shape


def _segments(o: int, n: int, periodic: bool) -> list[tuple[slice, slice]]:
    """(dst, src) index ranges with dst + o = src along one axis."""
    main = (slice(max(0, -o), n - max(0, o)), slice(max(0, o), n - max(0, -o)))
    if not periodic or o == 0:
        return [main]
    wrap = (slice(n - o, n), slice(0, o)) if o > 0 else (slice(0, -o), slice(n + o, n))
    return [main, wrap]


def _strided_segments(e: int, o: int, n: int, periodic: bool) -> list[tuple[slice, slice]]:
    """(dst, src) ranges along one axis for the sub-lattice i = e + 2m (m = 0..M-1) and
    the offset o: dst in m, src in i = e + 2m + o (stride 2); a periodic axis adds the
    wrapped single nodes, a Dirichlet one drops the neighbours outside the grid."""
    M = (n - e + 1) // 2
    s0 = e + o
    lo = (max(0, -s0) + 1) // 2  # the first m whose neighbour lies on the grid
    hi = min(M, (n - 1 - s0) // 2 + 1) if n - 1 - s0 >= 0 else 0
    pieces = []
    if hi > lo:
        pieces.append((slice(lo, hi), slice(s0 + 2 * lo, s0 + 2 * (hi - 1) + 1, 2)))
    if periodic:
        for m in [*range(0, min(lo, M)), *range(max(hi, lo), M)]:
            src = (s0 + 2 * m) % n
            pieces.append((slice(m, m + 1), slice(src, src + 1)))
    return pieces


class StencilOperator(nn.Module):
    """A^l, a linear stencil operator u -> A u on a structured grid (see module docstring).

    Args:
        shape: grid sizes (n_1, ..., n_d).
        h: mesh widths, one per axis.
        stencil: ``{offset: coefficient}``; an offset is a d-tuple of -1/0/1 entries; a
            coefficient is a float or a tensor shaped like the grid (variable coefficients).
        bc: ``"dirichlet"`` or ``"periodic"``.
        name: a short label shown by ``repr`` and ``print(solver)``.
        rediscretize: optional ``f(coarse_shape, coarse_h) -> StencilOperator``, the same
            PDE discretized on the coarse grid (used by coarse="rediscretize").

    ``forward(u)`` returns a fresh tensor A u. ``residual(u, f)`` returns f - A u in one
    fused sequence of in-place operations; the cycle of :mod:`mgnet.core` uses it when
    present. With ``workspace=True`` (set by solvers on their own copies) ``residual``
    writes into a buffer that its next call overwrites, so the hot path allocates nothing,
    and it keeps the sliced views of its last four iterates u (which keeps those tensors
    alive until :meth:`release`), so that a small grid does not pay for building a dozen
    views on every call. Large grids on the CPU are processed in cache-sized blocks of rows;
    on a GPU every pass covers the whole grid (one kernel per pass).

    On the CPU, without autograd, ``forward`` and ``residual`` (and the smoothers' and
    transfers' hot paths) run the compiled kernels of :mod:`mgnet.stencils.kernels`, one
    pass over memory per call; the PyTorch code below is the reference and the path for
    autograd and CUDA.
    """

    def __init__(
        self,
        shape: Sequence[int],
        h: Sequence[float],
        stencil: dict,
        bc: str = "dirichlet",
        name: str = "stencil",
        rediscretize: Callable[[tuple, tuple], StencilOperator] | None = None,
    ) -> None:
        super().__init__()
        self.shape = _check_shape(tuple(shape), None, bc)
        self.dim = len(self.shape)
        self.h = tuple(float(x) for x in h)
        self.bc = bc
        self.name = name
        self.rediscretize = rediscretize
        self.workspace = False
        self._ws: dict = {}
        self._plans: dict = {}
        self._colour_plans: dict = {}
        self.offsets: list[tuple[int, ...]] = []
        self._scalar: dict[int, float] = {}
        periodic = bc == "periodic"
        self._pieces: list[list[tuple[tuple, tuple]]] = []
        for k, (o, c) in enumerate(stencil.items()):
            o = tuple(int(x) for x in o)
            if len(o) != self.dim or any(abs(x) > 1 for x in o):
                raise ValueError(f"stencil: offset {o} must be a {self.dim}-tuple of -1, 0, 1")
            self.offsets.append(o)
            if isinstance(c, Tensor):
                if tuple(c.shape) != self.shape:
                    raise ValueError(
                        f"stencil: coefficient of offset {o} has shape "
                        f"{tuple(c.shape)}, expected the grid shape {self.shape}"
                    )
                self.register_buffer(f"c{k}", c.to(torch.float64).clone())
            else:
                self._scalar[k] = float(c)
            per_axis = [_segments(oi, n, periodic) for oi, n in zip(o, self.shape)]
            pieces = []
            for combo in itertools.product(*per_axis):
                dst = (slice(None), slice(None)) + tuple(s[0] for s in combo)
                src = (slice(None), slice(None)) + tuple(s[1] for s in combo)
                pieces.append((dst, src))
            self._pieces.append(pieces)
        center = (0,) * self.dim
        if center not in self.offsets:
            raise ValueError("stencil: needs the centre offset (0, ..., 0)")
        self._center = self.offsets.index(center)
        self._axis_neighbours = all(sum(abs(x) for x in o) <= 1 for o in self.offsets)

    # ---------------------------------------------------------------- coefficients
    def coefficient(self, k: int) -> float | Tensor:
        """The coefficient c_o of ``self.offsets[k]``."""
        return self._scalar[k] if k in self._scalar else getattr(self, f"c{k}")

    def diagonal(self) -> float | Tensor:
        """D, the diagonal of A (a number when constant), shaped like the grid if a tensor."""
        return self.coefficient(self._center)

    @property
    def unknowns(self) -> int:
        return math.prod(self.shape)

    @property
    def is_constant(self) -> bool:
        return len(self._scalar) == len(self.offsets)

    def _check_input(self, u: Tensor, arg: str = "u") -> None:
        if u.dim() != self.dim + 2 or tuple(u.shape[2:]) != self.shape:
            raise ValueError(
                f"{arg}: expected shape (batch, channels, {', '.join(map(str, self.shape))})"
                f", got {tuple(u.shape)}"
            )

    # ----------------------------------------------------------------- application
    def _apply(self, fn, recurse: bool = True):  # .to(), .double(), ...: drop cached views
        self._ws, self._plans, self._colour_plans = {}, {}, {}
        self.__dict__.pop("_kernel_data", None)  # the compiled kernels' copy of the stencil
        return super()._apply(fn, recurse)

    def compiled(self, u: Tensor, f: Tensor | None = None) -> bool:
        """True when the compiled CPU kernels (:mod:`mgnet.stencils.kernels`) take this call:
        plain contiguous CPU tensors shaped (batch, channels, *grid), no autograd graph."""
        if u.shape[2:] != self.shape or (f is not None and f.shape != u.shape):
            return False
        return kernels.usable(u) if f is None else kernels.usable(u, f)

    def _out(self, f: Tensor) -> Tensor:
        """The residual's buffer: the reused workspace (``workspace=True``) or a fresh one."""
        if not self.workspace:
            return torch.empty_like(f)
        key = (tuple(f.shape), f.dtype, f.device)
        out = self._ws.get(key)
        if out is None:
            out = self._ws[key] = torch.empty_like(f)
        return out

    def _plan(self, out: Tensor, u: Tensor) -> list[tuple]:
        """The views of one residual, per block of rows along the first grid axis.

        A grid of more than ``_BLOCK`` numbers is cut into slabs of about that many, so the
        five (seven, nine) passes of f - A u over a slab run while it is in cache instead
        of streaming the whole grid from memory once per stencil offset. Each block is
        (b0, b1, out view, u view, centre coefficient view or None, off-centre terms), and
        each term (out view, u view, coefficient view or None, -c or None).
        """
        n0 = self.shape[0]
        slab = u.numel() // n0  # numbers per index of the first grid axis
        # blocks are for a CPU core's cache; on a GPU each pass is one kernel over the grid
        whole = u.numel() <= _BLOCK or u.device.type != "cpu"
        rows = n0 if whole else max(1, _BLOCK // slab)
        centre = self.diagonal()
        plan = []
        for b0 in range(0, n0, rows):
            b1 = min(n0, b0 + rows)
            blk = (slice(None), slice(None), slice(b0, b1))
            c_blk = centre[b0:b1] if isinstance(centre, Tensor) else None
            terms = []
            for k in range(len(self.offsets)):
                if k == self._center:
                    continue
                c = self.coefficient(k)
                for dst, src in self._pieces[k]:
                    a, b = max(dst[2].start, b0), min(dst[2].stop, b1)
                    if a >= b:
                        continue
                    shift = src[2].start - dst[2].start
                    d = dst[:2] + (slice(a, b),) + dst[3:]
                    r = src[:2] + (slice(a + shift, b + shift),) + src[3:]
                    if isinstance(c, Tensor):
                        terms.append((out[d], u[r], c[d[2:]], None))
                    else:
                        terms.append((out[d], u[r], None, -c))
            plan.append((b0, b1, out[blk], u[blk], c_blk, terms))
        return plan

    def release(self) -> None:
        """Drop the cached views (and with them the iterates they keep alive)."""
        self._plans = {}

    def _accumulate(self, out: Tensor, u: Tensor, sign: float, skip_center: bool) -> None:
        for k in range(len(self.offsets)):
            if skip_center and k == self._center:
                continue
            c = self.coefficient(k)
            for dst, src in self._pieces[k]:
                if isinstance(c, Tensor):
                    out[dst].addcmul_(c[dst[2:]], u[src], value=sign)
                else:
                    out[dst].add_(u[src], alpha=sign * c)

    def forward(self, u: Tensor) -> Tensor:
        """A u."""
        self._check_input(u)
        if self.compiled(u):
            return kernels.stencil(self, u, None, torch.empty_like(u))
        c = self.diagonal()
        out = u * c
        self._accumulate(out, u, 1.0, skip_center=True)
        return out

    def residual(self, u: Tensor | None, f: Tensor) -> Tensor:
        """f - A u (u = None is zero), fused: one pass per stencil offset. While autograd
        records a graph through u or f (training through the cycle) it is f - A(u)."""
        if u is None:
            return f
        if torch.is_grad_enabled() and (u.requires_grad or f.requires_grad):
            return f - self.forward(u)
        if self.compiled(u, f):
            return kernels.stencil(self, u, f, self._out(f))
        return self._blocks(u, f, None)

    def residual_norm(self, u: Tensor, f: Tensor) -> Tensor | None:
        """||f - A u|| per sample (2-norm over all but the batch axis, float64) computed
        without storing f - A u, by the compiled CPU kernel; None where it does not run
        (the caller then forms the residual)."""
        if not self.compiled(u, f):
            return None
        return kernels.residual_norms(self, u, f)

    def masked_update_(self, u: Tensor, f: Tensor, scale: Tensor) -> Tensor:
        """u <- u + scale * (f - A u) in place, one cache-sized block of rows at a time.

        The residual of a block is computed just before that block of u is updated, so
        the result equals the unblocked update exactly when no node with scale != 0 is
        coupled to another node with scale != 0: one colour of a red-black ordering with
        a stencil that reaches only the axis neighbours (see ``axis_neighbours``).
        """
        return self._blocks(u, f, scale)

    def colour_update_(self, u: Tensor, f: Tensor, parity: int, scale: float | Tensor) -> Tensor:
        """u <- u + scale (f - A u) on the nodes of one colour, (i_1 + .. + i_d) % 2 ==
        parity, in place, computing the residual at those nodes only: the colour is the
        union of 2^(d-1) stride-2 sub-lattices, and every stencil offset is a stride-2 view
        of u. Half the bytes of the masked update and no grid-sized mask, so this is the
        red-black step on a GPU (one kernel per term and sub-lattice, no blocks). Exact
        for stencils with axis neighbours only; ``scale`` is a number or a grid (read at
        the colour's nodes)."""
        for view, terms in self._colour_plan(parity):
            r = f[view].clone()
            for dst, src, c in terms:
                ud = u[src]
                if isinstance(c, Tensor):
                    r[dst].addcmul_(c[view[2:]][dst[2:]], ud, value=-1.0)
                else:
                    r[dst].add_(ud, alpha=-c)
            if isinstance(scale, Tensor):
                u[view].addcmul_(r, scale[view[2:]])
            else:
                u[view].add_(r, alpha=scale)
        return u

    def _colour_plan(self, parity: int) -> list[tuple]:
        """Per sub-lattice of the colour: (its view, [(dst in the sub-lattice, src in u,
        coefficient)]), built once per parity."""
        plan = self._colour_plans.get(parity)
        if plan is not None:
            return plan
        periodic = self.bc == "periodic"
        plan = []
        for e in itertools.product((0, 1), repeat=self.dim):
            if sum(e) % 2 != parity or any(ei >= n for ei, n in zip(e, self.shape)):
                continue
            view = (slice(None), slice(None)) + tuple(slice(ei, None, 2) for ei in e)
            terms = []
            for k, o in enumerate(self.offsets):
                per_axis = [
                    _strided_segments(ei, oi, n, periodic) for ei, oi, n in zip(e, o, self.shape)
                ]
                c = self.coefficient(k)
                for combo in itertools.product(*per_axis):
                    dst = (slice(None), slice(None)) + tuple(p[0] for p in combo)
                    src = (slice(None), slice(None)) + tuple(p[1] for p in combo)
                    terms.append((dst, src, c))
            plan.append((view, terms))
        self._colour_plans[parity] = plan
        return plan

    @property
    def axis_neighbours(self) -> bool:
        """True when the stencil couples a node only to itself and its +-1 axis neighbours
        (3-, 5-, 7-point): then red and black nodes are coupled only to each other."""
        return self._axis_neighbours

    def _blocks(self, u: Tensor, f: Tensor, scale: Tensor | None) -> Tensor:
        out = self._out(f)
        if not self.workspace:
            plan = self._plan(out, u)
        else:  # same iterate and buffer as a recent call: reuse the views
            key = (id(u), u.data_ptr(), id(out), out.data_ptr())
            hit = self._plans.get(key)
            if hit is None:
                if len(self._plans) >= 4:  # keep the latest iterates only
                    self._plans.pop(next(iter(self._plans)))
                hit = self._plans[key] = (u, out, self._plan(out, u))
            plan = hit[2]
        c = self.diagonal()
        single = len(plan) == 1
        for b0, b1, o_blk, u_blk, c_blk, terms in plan:
            f_blk = f if single else f[:, :, b0:b1]
            if c_blk is not None:
                torch.addcmul(f_blk, c_blk, u_blk, value=-1.0, out=o_blk)
            else:
                torch.add(f_blk, u_blk, alpha=-c, out=o_blk)
            for o, v, cv, alpha in terms:
                if cv is None:
                    o.add_(v, alpha=alpha)
                else:
                    o.addcmul_(cv, v, value=-1.0)
            if scale is not None:
                u_blk.addcmul_(o_blk, scale if single else scale[b0:b1])
        return out if scale is None else u

    # ------------------------------------------------------------------ conversions
    def to_sparse(self) -> sp.csr_matrix:
        """A as a SciPy CSR matrix (unknowns in C order of the grid)."""
        idx = np.arange(self.unknowns).reshape(self.shape)
        rows, cols, vals = [], [], []
        for k in range(len(self.offsets)):
            c = self.coefficient(k)
            c = c.detach().cpu().double().numpy() if isinstance(c, Tensor) else c
            for dst, src in self._pieces[k]:
                d, s = dst[2:], src[2:]
                rows.append(idx[d].ravel())
                cols.append(idx[s].ravel())
                v = c[d] if isinstance(c, np.ndarray) else np.full(idx[d].shape, c)
                vals.append(np.asarray(v, dtype=np.float64).ravel())
        n = self.unknowns
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )

    @classmethod
    def from_sparse(
        cls,
        M: sp.spmatrix,
        shape: Sequence[int],
        h: Sequence[float],
        bc: str = "dirichlet",
        name: str = "galerkin",
    ) -> StencilOperator:
        """The stencil form of a sparse matrix whose couplings reach at most one node away.

        Coefficients that are the same at every node where they act become numbers.
        """
        shape = tuple(shape)
        M = M.tocoo()
        ri = np.array(np.unravel_index(M.row, shape))
        ci = np.array(np.unravel_index(M.col, shape))
        off = ci - ri
        if bc == "periodic":
            n = np.array(shape)[:, None]
            off = (off + n // 2) % n - n // 2
        if np.abs(off).max(initial=0) > 1:
            raise ValueError("M: couplings reach beyond the nearest neighbours")
        stencil: dict = {}
        keys = np.ravel_multi_index(off + 1, (3,) * len(shape))
        for key in np.unique(keys):
            sel = keys == key
            o = tuple(int(x) - 1 for x in np.unravel_index(key, (3,) * len(shape)))
            arr = np.zeros(shape)
            present = np.zeros(shape, dtype=bool)
            where = tuple(ri[:, sel])
            np.add.at(arr, where, M.data[sel])
            present[where] = True
            vals = arr[present]
            if np.allclose(vals, vals[0], rtol=1e-13, atol=0) and (
                present.all() or _only_truncated(present, o)
            ):
                stencil[o] = float(vals[0])
            else:
                stencil[o] = torch.from_numpy(arr)
        center = (0,) * len(shape)
        stencil.setdefault(center, 0.0)
        return cls(shape, h, stencil, bc=bc, name=name)

    def extra_repr(self) -> str:
        kind = "constant" if self.is_constant else "variable"
        return (
            f"{self.name}, shape={self.shape}, bc={self.bc}, {len(self.offsets)}-point, "
            f"{kind} coefficients"
        )


def _only_truncated(present: np.ndarray, o: tuple[int, ...]) -> bool:
    """True when a coefficient is missing only where its neighbour i + o is off the grid."""
    expect = np.ones(present.shape, dtype=bool)
    for axis, oi in enumerate(o):
        idx = [slice(None)] * present.ndim
        if oi > 0:
            idx[axis] = slice(present.shape[axis] - oi, None)
        elif oi < 0:
            idx[axis] = slice(0, -oi)
        else:
            continue
        expect[tuple(idx)] = False
    return bool((present == expect).all())


# ------------------------------------------------------------------------ builders
def _mesh(shape: tuple[int, ...], bc: str) -> tuple[float, ...]:
    return tuple(1.0 / (n + 1) if bc == "dirichlet" else 1.0 / n for n in shape)


def grid_points(
    shape: Sequence[int],
    bc: str = "dirichlet",
    boundary: bool = False,
    dtype: torch.dtype = torch.float64,
) -> list[Tensor]:
    """Coordinates of the grid's nodes, one tensor per axis (``indexing='ij'``).

    ``boundary=True`` (Dirichlet only) includes the boundary nodes x = 0 and x = 1.
    """
    axes = []
    for n in shape:
        if bc == "dirichlet":
            h = 1.0 / (n + 1)
            i = torch.arange(n + 2) if boundary else torch.arange(1, n + 1)
        else:
            h = 1.0 / n
            i = torch.arange(n)
        axes.append(i.to(dtype) * h)
    return list(torch.meshgrid(*axes, indexing="ij"))


def _zero_order(stencil: dict, c: float | Tensor | None, shape: tuple) -> None:
    if c is None:
        return
    center = (0,) * len(shape)
    if isinstance(c, Tensor):
        if tuple(c.shape) != shape:
            raise ValueError(
                f"c: expected a number or a tensor of shape {shape}, got {tuple(c.shape)}"
            )
        stencil[center] = stencil[center] + c.to(torch.float64)
    else:
        stencil[center] = stencil[center] + float(c)


def laplacian(
    shape: int | Sequence[int],
    dim: int | None = None,
    points: int | None = None,
    bc: str = "dirichlet",
    c: float | Tensor | None = None,
) -> StencilOperator:
    """A = -Laplacian (+ c, the zero-order term of -Delta u + c u).

    ``points``: 3 (1D), 5 or 9 (2D), 7 (3D); default the compact one of each dimension.
    """
    shape = _check_shape(shape, dim, bc)
    d = len(shape)
    accepted = {1: (3,), 2: (5, 9), 3: (7,)}[d]
    points = accepted[0] if points is None else points
    if points not in accepted:
        raise ValueError(f"points: {points} is not available in {d}D; accepted: {accepted}")
    h = _mesh(shape, bc)
    if points == 9:
        if not math.isclose(h[0], h[1]):
            raise ValueError(f"points: the 9-point Laplacian needs equal mesh widths, got h={h}")
        s = 1.0 / (6 * h[0] ** 2)
        stencil = {
            o: -s * (4 if abs(o[0]) + abs(o[1]) == 1 else 1)
            for o in itertools.product((-1, 0, 1), repeat=2)
            if o != (0, 0)
        }
        stencil[(0, 0)] = 20 * s
        _zero_order(stencil, c, shape)
        name = "laplacian 9-point" + ("" if c is None else " + c")

        def redisc(cs: tuple, ch: tuple) -> StencilOperator:
            cc = None if c is None else (c if not isinstance(c, Tensor) else _inject(c, bc))
            return laplacian(cs, points=9, bc=bc, c=cc)

        return StencilOperator(shape, h, stencil, bc=bc, name=name, rediscretize=redisc)
    op = anisotropic(shape, eps=(1.0,) * d, bc=bc, c=c)
    op.name = f"laplacian {points}-point" + ("" if c is None else " + c")
    return op


def _inject(t: Tensor, bc: str) -> Tensor:
    """Values at the coarse nodes (every second node) of a grid function without boundary."""
    idx = tuple(
        slice(1, None, 2) if bc == "dirichlet" else slice(0, None, 2) for _ in range(t.dim())
    )
    return t[idx].contiguous()


def anisotropic(
    shape: int | Sequence[int],
    eps: Sequence[float],
    dim: int | None = None,
    bc: str = "dirichlet",
    c: float | Tensor | None = None,
) -> StencilOperator:
    """A = -sum_k eps_k d^2/dx_k^2 (+ c): constant-coefficient anisotropic diffusion."""
    shape = _check_shape(shape, dim if dim is not None else len(eps), bc)
    d = len(shape)
    eps = tuple(float(e) for e in eps)
    if len(eps) != d or any(e <= 0 for e in eps):
        raise ValueError(f"eps: need {d} positive coefficients, got {eps}")
    h = _mesh(shape, bc)
    center = (0,) * d
    stencil: dict = {center: 0.0}
    for k in range(d):
        w = eps[k] / h[k] ** 2
        stencil[center] += 2 * w
        for s in (-1, 1):
            o = tuple(s if j == k else 0 for j in range(d))
            stencil[o] = -w
    _zero_order(stencil, c, shape)

    def redisc(cs: tuple, ch: tuple) -> StencilOperator:
        cc = c if not isinstance(c, Tensor) else _inject(c, bc)
        return anisotropic(cs, eps, bc=bc, c=cc)

    name = "anisotropic" if len(set(eps)) > 1 else f"laplacian {2 * d + 1}-point"
    return StencilOperator(
        shape, h, stencil, bc=bc, name=name + ("" if c is None else " + c"), rediscretize=redisc
    )


def diffusion(
    shape: int | Sequence[int],
    a: Tensor | Callable[..., Tensor],
    dim: int | None = None,
    bc: str = "dirichlet",
    c: float | Tensor | None = None,
) -> StencilOperator:
    """A = -div(a grad u) (+ c), a > 0 given per node's control cell, harmonic at faces.

    ``a``: a tensor over the grid including its boundary nodes (shape n + 2 per axis) for
    Dirichlet, over the grid for periodic; or a function of the coordinates (x_1, ..., x_d)
    that returns such a tensor. The face coefficient between nodes i and i + e_k is the
    harmonic mean 2 a_i a_{i+e_k} / (a_i + a_{i+e_k}).
    """
    shape = _check_shape(shape, dim, bc)
    d = len(shape)
    h = _mesh(shape, bc)
    dirichlet = bc == "dirichlet"
    if callable(a):
        a = a(*grid_points(shape, bc, boundary=dirichlet))
    full = tuple(n + 2 for n in shape) if dirichlet else shape
    if not isinstance(a, Tensor) or tuple(a.shape) != full:
        raise ValueError(
            f"a: expected a tensor of shape {full} (grid{' with boundary' if dirichlet else ''}) "
            f"or a function of the coordinates, got "
            f"{tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__}"
        )
    a = a.to(torch.float64)
    if not bool((a > 0).all()):
        raise ValueError("a: the diffusion coefficient must be positive everywhere")
    center = (0,) * d
    diag = torch.zeros(shape, dtype=torch.float64)
    stencil: dict = {}
    inner = (
        tuple(slice(1, -1) for _ in range(d)) if dirichlet else tuple(slice(None) for _ in range(d))
    )
    a_c = a[inner]
    for k in range(d):
        for s in (-1, 1):
            nb = (
                a.roll(-s, dims=k)[inner]
                if not dirichlet
                else a[
                    tuple(
                        slice(1 + s, a.shape[j] - 1 + s) if j == k else slice(1, -1)
                        for j in range(d)
                    )
                ]
            )
            face = 2 * a_c * nb / (a_c + nb) / h[k] ** 2
            o = tuple(s if j == k else 0 for j in range(d))
            stencil[o] = -face
            diag = diag + face
    stencil[center] = diag
    _zero_order(stencil, c, shape)

    def redisc(cs: tuple, ch: tuple) -> StencilOperator:
        idx = tuple(slice(0, None, 2) for _ in range(d))
        cc = c if not isinstance(c, Tensor) else _inject(c, bc)
        return diffusion(cs, a[idx].contiguous(), bc=bc, c=cc)

    return StencilOperator(
        shape,
        h,
        stencil,
        bc=bc,
        name="diffusion -div(a grad)" + ("" if c is None else " + c"),
        rediscretize=redisc,
    )


def dirichlet_lift(op: StencilOperator, g: Tensor | Callable[..., Tensor]) -> Tensor:
    """The right-hand side correction for inhomogeneous Dirichlet values g.

    Returns -(A_full g)|interior where g is extended by zero inside: add it to f so that
    A u = f + dirichlet_lift(A, g) is the problem with u = g on the boundary. Works for any
    stencil of radius one, including variable coefficients. ``g`` is a tensor over the
    grid with boundary (shape n + 2 per axis) whose interior is ignored, or a function of
    the coordinates.
    """
    if op.bc != "dirichlet":
        raise ValueError(f"op: boundary values need a Dirichlet grid, got bc={op.bc!r}")
    if callable(g):
        g = g(*grid_points(op.shape, "dirichlet", boundary=True))
    g = torch.as_tensor(g, dtype=torch.float64)
    full = tuple(n + 2 for n in op.shape)
    if tuple(g.shape) != full:
        raise ValueError(f"g: expected shape {full} (grid with boundary), got {tuple(g.shape)}")
    gb = g.clone()
    gb[tuple(slice(1, -1) for _ in op.shape)] = 0.0  # interior neighbours are unknowns
    out = torch.zeros(op.shape, dtype=torch.float64)
    for k, o in enumerate(op.offsets):
        if k == op._center:
            continue
        src = tuple(slice(1 + oi, n + 1 + oi) for oi, n in zip(o, op.shape))
        c = op.coefficient(k)
        out -= (c.detach().cpu().double() if isinstance(c, Tensor) else c) * gb[src]
    return out


class NonlinearOperator(nn.Module):
    """A(u) = L u + N(u): a linear stencil L plus a pointwise nonlinearity (FAS operator).

    ``kind="cubic"``: N(u) = u^3 (the problem -Delta u + u^3 = f).
    ``kind="bratu"``: N(u) = -lam * exp(u) (the Bratu problem -Delta u - lam e^u = f).
    ``dN(u)`` is the derivative used by Newton smoothers.
    """

    KINDS = ("cubic", "bratu")

    def __init__(self, linear: StencilOperator, kind: str = "cubic", lam: float = 1.0) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(self.KINDS)}")
        self.linear = linear
        self.kind = kind
        self.lam = float(lam)
        self.shape = linear.shape
        self.dim = linear.dim
        self.h = linear.h
        self.bc = linear.bc
        self.name = f"{linear.name} + " + ("u^3" if kind == "cubic" else f"-{lam:g} e^u")

    def N(self, u: Tensor) -> Tensor:
        return u * u * u if self.kind == "cubic" else -self.lam * torch.exp(u)

    def dN(self, u: Tensor | None, like: Tensor) -> Tensor | float:
        if u is None:
            return 0.0 if self.kind == "cubic" else -self.lam
        return 3 * u * u if self.kind == "cubic" else -self.lam * torch.exp(u)

    def diagonal(self) -> float | Tensor:
        return self.linear.diagonal()

    def forward(self, u: Tensor) -> Tensor:
        """A(u) = L u + N(u)."""
        return self.linear(u) + self.N(u)

    def residual(self, u: Tensor | None, f: Tensor) -> Tensor:
        """f - A(u) (u = None is zero)."""
        return f - self.forward(torch.zeros_like(f) if u is None else u)

    def coarsen(self, shape: tuple, h: tuple) -> NonlinearOperator:
        return NonlinearOperator(self.linear.rediscretize(shape, h), self.kind, self.lam)

    def extra_repr(self) -> str:
        return f"{self.name}, shape={self.shape}, bc={self.bc}"
