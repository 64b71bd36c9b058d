"""Compiled CPU kernels for the hot paths of the fixed operators A, B, R and P.

The stencil operators (:class:`~mgnet.stencils.StencilOperator`, the Jacobi and red-black
smoothers, :class:`~mgnet.stencils.FullWeighting`, :class:`~mgnet.stencils.Interpolation`)
call these kernels where they can, so the cycle stays the one of :mod:`mgnet.core`:

* ``stencil``: r = f - A u (or A u), every grid row in one pass instead of one pass of
  the whole grid per stencil offset;
* ``colour_update_``: one red or black half-sweep u <- u + M D^-1 (f - A u) that touches
  the nodes of one colour only and writes u in place;
* ``jacobi_update_``: u <- u + w D^-1 (f - A u) in one pass (the new values of a plane
  wait in a buffer until the next plane no longer reads the old ones);
* ``restrict`` and ``residual_restrict``: R x, and R (f - A u) without storing f - A u
  (the residual of the three fine planes a coarse plane needs is computed just before);
* ``interpolate_add_`` and ``interpolate``: u <- u + P e in place, and P e;
* ``sweep_``: the pipelined pass behind the cycle's fused hooks (interpolation, colour
  steps and the restriction of the residual, plane by plane, in one pass over memory);
* ``residual_norms``: ||f - A u|| per sample without storing f - A u (the solver's
  convergence test).

Why they are shaped this way (the traffic bound, the pipeline, what remains) is in
docs/design.md, "Speed of the fixed-stencil solver".

They cover 1D, 2D and 3D grids, Dirichlet and periodic boundaries, constant and variable
coefficients, float32 and float64. They are compiled by numba (``cache=True``: the first
call on a machine compiles them, 30-45 s for both dtypes on a small shared machine; later
processes load the machine code from numba's cache in about a second; :func:`warm_up`
measures it and ``benchmarks/poisson_vs_pyamg.py`` prints it) and run on NumPy views of
CPU tensors. Their scratch buffers belong to the operator (or the process), so one
operator is not used by two threads at once.

The pure-PyTorch code of the operators stays the reference and the path for everything
else: autograd (a tensor that requires grad while grad mode is on), CUDA, other dtypes,
non-contiguous tensors, ``torch.compile`` tracing, and machines without numba. The tests
compare both paths on odd and even sizes in 1D, 2D and 3D.

The switch: the environment variable ``MGNET_KERNELS=0`` (read at import), or
``mgnet.stencils.kernels.ENABLED = False`` / ``with kernels.disabled(): ...`` at run time.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ENABLED",
    "sweep_",
    "available",
    "colour_update_",
    "compile_seconds",
    "disabled",
    "enabled",
    "interpolate",
    "interpolate_add_",
    "jacobi_update_",
    "residual_norms",
    "residual_restrict",
    "restrict",
    "stencil",
    "usable",
    "warm_up",
]

ENABLED: bool = os.environ.get("MGNET_KERNELS", "1").strip().lower() not in (
    "0",
    "false",
    "off",
    "no",
)

_DTYPES = (torch.float32, torch.float64)
_module = None  # the compiled module once imported; False when numba is missing
_load_seconds = 0.0


def _compiled():
    global _module, _load_seconds
    if _module is None:
        t0 = time.perf_counter()
        try:
            from mgnet.stencils import _compiled as module
        except ImportError:  # numba is not installed: the PyTorch path serves everything
            module = False
        _module = module
        _load_seconds = time.perf_counter() - t0
    return _module


def available() -> bool:
    """True when numba can be imported (the kernels can be compiled on this machine)."""
    return bool(_compiled())


def enabled() -> bool:
    """True when the switch is on and numba is available."""
    return ENABLED and available()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run a block on the PyTorch path (the reference), e.g. to compare timings."""
    global ENABLED
    before = ENABLED
    ENABLED = False
    try:
        yield
    finally:
        ENABLED = before


def usable(*tensors: Tensor) -> bool:
    """True when the kernels may run on these tensors: the switch is on, numba is available,
    every tensor is a plain contiguous CPU tensor of the same float32/float64 dtype, and no
    autograd graph is recorded through them (and nothing is being traced or compiled)."""
    if not ENABLED:
        return False
    dtype = tensors[0].dtype
    if dtype not in _DTYPES:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if (
            type(t) is not Tensor
            or not t.is_cpu
            or t.dtype != dtype
            or not t.is_contiguous()
            or (grad and t.requires_grad)
        ):
            return False
    if torch.compiler.is_compiling():
        return False
    return bool(_module) or bool(_compiled())


# ----------------------------------------------------------------------------- geometry
def _as3(t: tuple[int, ...], fill: int) -> tuple[int, int, int]:
    """A 1D, 2D or 3D tuple on the axes (0, 1, 2): (n,) -> (fill, fill, n),
    (a, b) -> (a, fill, b), (a, b, c) as is."""
    if len(t) == 1:
        return (fill, fill, t[0])
    if len(t) == 2:
        return (t[0], fill, t[1])
    return tuple(t)


def grid3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The grid as (n0, n1, n2): (n,) -> (1, 1, n), (a, b) -> (a, 1, b), (a, b, c) as is."""
    return _as3(shape, 1)


def _offset3(o: tuple[int, ...]) -> tuple[int, int, int]:
    """A stencil offset on the grid3 axes: the added axes have offset 0."""
    return _as3(o, 0)


@functools.cache
def _modes(dim: int, bc: str) -> np.ndarray:
    m = 1 if bc == "dirichlet" else 2
    return np.array({1: (0, 0, m), 2: (m, 0, m), 3: (m, m, m)}[dim], dtype=np.int64)


_NP = {torch.float32: np.float32, torch.float64: np.float64}
# the fused loops of _compiled._stencil_row, by the offsets that share a source row
_CONST_CENTRE, _CONST_THREE, _VAR_CENTRE, _VAR_THREE, _GENERIC = range(5)
# constant stencils whose residual row is one loop (2D 5-point, 3D 7-point, 2D 9-point)
_NOT_FUSED, _CROSS2, _CROSS4, _BOX3 = range(4)
# the weights (1/4, 1/2, 1) of R and P in each dtype
_W = {dt: np.array([0.25, 0.5, 1.0], dtype=_NP[dt]) for dt in _DTYPES}
_NO_GRID = {dt: np.zeros(1, dtype=_NP[dt]) for dt in _DTYPES}
# the stencil arguments of a kernel call that uses no stencil (interpolation alone)
_NO_STENCIL = {
    dt: (
        np.zeros((1, 2), dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        np.zeros((1, 3), dtype=_NP[dt]),
        np.zeros((1, 3), dtype=np.int64),
        np.zeros(1, dtype=_NP[dt]),
        _NP[dt](-1),
        False,
        0,
    )
    for dt in _DTYPES
}


class StencilData:
    """The arrays a kernel needs for one StencilOperator and one dtype (built once).

    The offsets, mapped to the (n0, n1, n2) grid, are grouped by the row of u they read,
    (o0, o1): ``gsrc`` (G, 2) those rows, ``gc`` (G, 3) the constant coefficients of
    o2 = -1, 0, 1 (``neg`` = -gc for residuals), ``gv`` (G, 3) the index of a variable
    coefficient in ``cv`` (Kv, n0, n1, n2) or -1 (constant) or -2 (no such offset), and
    ``gkind`` the fused loop that serves the group (see ``_compiled._stencil_row``).
    """

    def __init__(self, op, dtype: torch.dtype) -> None:
        npdt = _NP[dtype]
        self.shape3 = grid3(op.shape)
        self.periodic = op.bc == "periodic"
        rows: dict[tuple[int, int], int] = {(0, 0): 0}  # the row's own group first
        gc: list[list[float]] = [[0.0, 0.0, 0.0]]
        gv: list[list[int]] = [[-2, -2, -2]]
        grids = []
        for k, o in enumerate(op.offsets):
            o0, o1, o2 = _offset3(o)
            g = rows.setdefault((o0, o1), len(rows))
            if g == len(gc):
                gc.append([0.0, 0.0, 0.0])
                gv.append([-2, -2, -2])
            c = op.coefficient(k)
            if isinstance(c, Tensor):
                gv[g][o2 + 1] = len(grids)
                grids.append(c.detach().to("cpu", dtype).contiguous().reshape(self.shape3))
            else:
                gv[g][o2 + 1] = -1
                gc[g][o2 + 1] = c
        self.gsrc = np.array(list(rows), dtype=np.int64).reshape(-1, 2)
        self.gc = np.array(gc, dtype=npdt).reshape(-1, 3)
        self.neg = -self.gc
        self.gv = np.array(gv, dtype=np.int64).reshape(-1, 3)
        kinds = []
        for v in gv:
            if v == [-2, -1, -2]:
                kinds.append(_CONST_CENTRE)
            elif v == [-1, -1, -1]:
                kinds.append(_CONST_THREE)
            elif v[0] == v[2] == -2 and v[1] >= 0:
                kinds.append(_VAR_CENTRE)
            elif min(v) >= 0:
                kinds.append(_VAR_THREE)
            else:
                kinds.append(_GENERIC)
        self.gkind = np.array(kinds, dtype=np.int64)
        self.fused = _NOT_FUSED
        if kinds[0] == _CONST_THREE and all(k == _CONST_CENTRE for k in kinds[1:]):
            self.fused = {3: _CROSS2, 5: _CROSS4}.get(len(kinds), _NOT_FUSED)
        elif len(kinds) == 3 and all(k == _CONST_THREE for k in kinds):
            self.fused = _BOX3
        if grids:
            self._cv = torch.stack(grids)  # owns the memory of the view
            self.cv = self._cv.numpy().reshape(-1)
        else:
            self.cv = np.zeros(1, dtype=npdt)
        rest = (self.gv, self.cv)
        tail = (self.periodic, self.fused)
        self._residual = (self.gsrc, self.gkind, self.neg, *rest, npdt(-1), *tail)
        self._apply = (self.gsrc, self.gkind, self.gc, *rest, npdt(1), *tail)
        self.buffers: dict = {}
        self.sweeps: dict = {}  # prepared arguments of sweep_ calls

    def args(self, residual: bool) -> tuple:
        """The stencil as a kernel takes it: (gsrc, gkind, gc, gv, cv, sg, periodic, fused),
        sg = -1 with negated constants for a residual, sg = 1 for A u."""
        if residual:
            return self._residual
        return self._apply

    def buffer(self, name: str, size: int) -> np.ndarray:
        """A scratch array of ``size`` numbers of this dtype, kept for the next call."""
        key = (name, size)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = np.empty(size, dtype=self.cv.dtype)
        return buf


def stencil_data(op, dtype: torch.dtype) -> StencilData:
    """The operator's :class:`StencilData` for ``dtype``, cached on the operator (the cache
    is dropped when the operator is moved or cast)."""
    cache = op.__dict__.setdefault("_kernel_data", {})
    data = cache.get(dtype)
    if data is None:
        data = cache[dtype] = StencilData(op, dtype)
    return data


# ------------------------------------------------------------------------------ kernels
_FLAT: dict = {}
_FLAT_SMALL = 16384  # numbers; the cache holds at most 64 such arrays (8 MiB in float64)


def _flat(t: Tensor) -> np.ndarray:
    """A contiguous CPU tensor as a flat NumPy array sharing its memory. The arrays of small
    tensors (the coarse grids, where making the array costs more than the arithmetic) are
    kept for the next call on the same tensor; the cache keeps those tensors alive."""
    n = t.numel()
    if n > _FLAT_SMALL:
        return (t.detach() if t.requires_grad else t).numpy().reshape(-1)
    hit = _FLAT.get(id(t))
    if hit is not None and hit[0] is t and hit[1] == t.data_ptr() and hit[2].size == n:
        return hit[2]
    arr = (t.detach() if t.requires_grad else t).numpy().reshape(-1)
    if len(_FLAT) >= 64:
        _FLAT.clear()
    _FLAT[id(t)] = (t, t.data_ptr(), arr)
    return arr


def _batch(t: Tensor, shape3: tuple[int, ...]) -> int:
    return t.numel() // (shape3[0] * shape3[1] * shape3[2])


def stencil(op, u: Tensor, f: Tensor | None, out: Tensor) -> Tensor:
    """out = f - A u (f given) or out = A u (f None); returns out."""
    d = stencil_data(op, u.dtype)
    uv = _flat(u)
    fv = uv if f is None else _flat(f)
    _compiled().stencil(uv, fv, _flat(out), _batch(u, d.shape3), *d.shape3, *d.args(f is not None))
    return out


def colour_update_(op, u: Tensor, f: Tensor, parity: int, scale: float | Tensor) -> Tensor:
    """u <- u + scale (f - A u) on the nodes with index sum % 2 == parity (red 0, black 1),
    in place. Exact only for stencils with axis neighbours (``op.axis_neighbours``);
    ``scale`` is a number or a grid (read at the nodes of this colour only)."""
    sweep_(op, u, f, [(parity, scale)])
    return u


def residual_norms(op, u: Tensor, f: Tensor) -> Tensor:
    """||f - A u|| per sample (the 2-norm over all but the batch axis), in float64, in one
    pass over u and f that stores no residual."""
    d = stencil_data(op, u.dtype)
    B = _batch(u, d.shape3)
    sq = np.empty(B, dtype=np.float64)
    row = d.buffer("row", d.shape3[2])
    acc = _scratch("acc", d.shape3[2], torch.float64)
    _compiled().residual_sq(_flat(u), _flat(f), sq, row, acc, B, *d.shape3, *d.args(True))
    return torch.from_numpy(sq).reshape(u.shape[0], -1).sum(dim=1).sqrt_()


def jacobi_update_(op, u: Tensor, f: Tensor, scale: float | Tensor) -> Tensor:
    """u <- u + scale (f - A u) at every node, in place, in one pass."""
    d = stencil_data(op, u.dtype)
    planes = d.buffer("planes", 3 * d.shape3[1] * d.shape3[2])
    s, sv, use = _scale(scale, d, u.dtype)
    _compiled().jacobi_update(
        _flat(u), _flat(f), planes, _batch(u, d.shape3), *d.shape3, *d.args(True), s, sv, use
    )
    return u


def _scale(scale: float | Tensor, d: StencilData, dtype: torch.dtype) -> tuple:
    """(s, sv, use_sv) for a scale that is a number or a grid."""
    if isinstance(scale, Tensor):
        key = ("scale", id(scale))
        hit = d.buffers.get(key)  # (the tensor itself, its version, the converted array)
        if hit is None or hit[0] is not scale or hit[1] != scale._version:
            sv = scale.detach().to("cpu", dtype).contiguous()
            hit = d.buffers[key] = (scale, scale._version, sv.numpy().reshape(-1))
        return _NP[dtype](0), hit[2], True
    return _NP[dtype](scale), _NO_GRID[dtype], False


def restrict(fine_shape: tuple[int, ...], bc: str, x: Tensor, out: Tensor) -> Tensor:
    """out = R x, full weighting; x (batch, channels, *fine_shape), out on the coarse grid."""
    fine3, coarse3 = grid3(fine_shape), grid3(tuple(out.shape[2:]))
    _compiled().restrict(
        _flat(x),
        _flat(out),
        _scratch("tap indices", 9, None),
        _scratch("taps", 6, x.dtype),
        _batch(x, fine3),
        *fine3,
        *coarse3,
        _modes(len(fine_shape), bc),
        _W[x.dtype],
    )
    return out


def residual_restrict(op, u: Tensor, f: Tensor, out: Tensor) -> Tensor:
    """out = R (f - A u), full weighting of the residual, without storing the residual."""
    sweep_(op, u, f, [], out=out)
    return out


def interpolate_add_(fine_shape: tuple[int, ...], bc: str, u: Tensor, e: Tensor) -> Tensor:
    """u <- u + P e in place, linear interpolation from the coarse grid of ``fine_shape``."""
    sweep_(None, u, None, [], e=e, fine=(tuple(fine_shape), bc))
    return u


def interpolate(fine_shape: tuple[int, ...], bc: str, e: Tensor, out: Tensor) -> Tensor:
    """out = P e (``out`` on the fine grid; its values are overwritten, never read)."""
    sweep_(None, out, None, [], e=e, fine=(tuple(fine_shape), bc), assign=True)
    return out


def cubic_axis(x: Tensor, axis: int, periodic: bool) -> Tensor:
    """x interpolated by cubics along grid axis ``axis`` (0-based, after batch and channel)
    from m to 2m + 1 nodes (Dirichlet) or 2m (periodic): a fresh tensor."""
    shape = list(x.shape)
    m = shape[axis + 2]
    shape[axis + 2] = 2 * m if periodic else 2 * m + 1
    out = torch.empty(shape, dtype=x.dtype)
    a = math.prod(x.shape[: axis + 2])
    c = math.prod(x.shape[axis + 3 :])
    _compiled().cubic_axis(_flat(x), _flat(out), a, m, c, periodic)
    return out


def sweep_(
    op,
    u: Tensor,
    f: Tensor | None,
    steps: list[tuple[int, float | Tensor]],
    e: Tensor | None = None,
    out: Tensor | None = None,
    fine: tuple[tuple[int, ...], str] | None = None,
    assign: bool = False,
) -> Tensor:
    """In one pass over u (see ``_compiled.sweep``): u += P e (when ``e`` is given), then
    the colour steps u <- u + s (f - A u) on the nodes of each (parity, s) of ``steps`` in
    order, then out = R (f - A u) (when ``out`` is given). Returns u.

    A scale s is a number, or a grid read at the nodes of its colour only; the grids of
    several steps are summed into one, so two steps of one parity must share their grid.
    ``op`` may be None for the interpolation alone, with ``fine`` = (grid, bc);
    ``assign`` makes the interpolation u = P e (u's values are not read)."""
    dtype = u.dtype
    coarse = e if e is not None else out
    constant = all(not isinstance(sc, Tensor) for _, sc in steps)
    key = (
        dtype,
        None if op is not None else fine,
        tuple(steps) if constant else None,
        None if coarse is None else tuple(coarse.shape[2:]),
        e is None,
        out is None,
        assign,
    )
    cache = _SWEEPS if op is None else stencil_data(op, dtype).sweeps
    prepared = cache.get(key) if constant else None
    if prepared is None:  # everything of the call but the tensors, prepared once
        prepared = _prepare_sweep(
            op, dtype, steps, coarse, e is not None, out is not None, fine, assign
        )
        if constant:
            if len(cache) >= 64:
                cache.clear()
            cache[key] = prepared
    shape3, head, tail, (nrow, nint) = prepared
    none = _NO_GRID[dtype]
    _compiled().sweep(
        _flat(u),
        _flat(f) if f is not None else none,
        _flat(e) if e is not None else none,
        _flat(out) if out is not None else none,
        *head,
        _scratch("row", nrow, dtype) if nrow else none,
        _scratch("sweep indices", nint, None),
        _scratch("taps", 12, dtype),
        _batch(u, shape3),
        *tail,
    )
    return u


_SWEEPS: dict = {}


def _prepare_sweep(op, dtype, steps, coarse, interp, restrict, fine, assign) -> tuple:
    """(grid, the arguments of ``_compiled.sweep`` before the batch size, those after)."""
    npdt = _NP[dtype]
    if op is None:
        shape, bc = fine
        shape3 = grid3(shape)
        args = _NO_STENCIL[dtype]
        d = None
    else:
        shape, bc = op.shape, op.bc
        d = stencil_data(op, dtype)
        shape3 = d.shape3
        args = d.args(True)
    coarse3 = grid3(tuple(coarse.shape[2:])) if coarse is not None else (1, 1, 1)
    parities = np.array([p for p, _ in steps], dtype=np.int64)
    grids: dict[int, Tensor] = {}
    if len({isinstance(sc, Tensor) for _, sc in steps}) > 1:
        raise ValueError("steps: the scales must be all numbers or all grids")
    for p, sc in steps:
        if isinstance(sc, Tensor) and grids.setdefault(p, sc) is not sc:
            raise ValueError("steps: two steps of one colour need the same scale grid")
    if grids:
        scales = np.zeros(len(steps), dtype=npdt)
        sv = _grid_scale(d, list(grids.values()), dtype)
    else:
        scales = np.array([sc for _, sc in steps], dtype=npdt)
        sv = _NO_GRID[dtype]
    n12 = shape3[1] * shape3[2]
    none = _NO_GRID[dtype]
    head = (
        d.buffer("plane", n12) if steps else none,
        d.buffer("ring", 3 * n12) if restrict else none,
    )
    # the scratch (a coarse row, the taps' indices and weights) is not prepared: it is the
    # calling thread's, as a prepared call without an operator is shared by every thread
    scratch = (coarse3[2] if interp else 0, 23 + len(steps))
    tail = (
        *shape3,
        *coarse3,
        *args,
        _modes(len(shape), bc),
        _W[dtype],
        parities,
        scales,
        sv,
        bool(grids),
        0 if not interp else 2 if assign else 1,
        restrict,
    )
    return shape3, head, tail, scratch


def _grid_scale(d: StencilData, grids: list[Tensor], dtype: torch.dtype) -> np.ndarray:
    """The sum of the steps' scale grids (each zero off its colour), as a flat array in
    ``dtype``, cached while the same tensors (unchanged) are passed."""
    key = ("scale",) + tuple(id(g) for g in grids)
    hit = d.buffers.get(key)  # (the tensors, their versions, the array)
    versions = tuple(g._version for g in grids)
    if hit is None or any(a is not b for a, b in zip(hit[0], grids)) or hit[1] != versions:
        total = grids[0].detach().to("cpu", dtype).clone()
        for g in grids[1:]:
            total += g.detach().to("cpu", dtype)
        hit = d.buffers[key] = (tuple(grids), versions, total.contiguous().numpy().reshape(-1))
    return hit[2]


_SCRATCH = threading.local()


def _scratch(name: str, n: int, dtype: torch.dtype | None) -> np.ndarray:
    """A scratch array of n numbers (int64 for ``dtype=None``), shared by the kernels that
    one thread calls (a solver's cycle calls them in sequence). The kernels release the GIL,
    so every thread has its own: two solvers in two threads never share scratch."""
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    key = (name, n, dtype)
    buf = bufs.get(key)
    if buf is None:
        buf = bufs[key] = np.empty(n, dtype=np.int64 if dtype is None else _NP[dtype])
    return buf


# ------------------------------------------------------------------------ first call
_compile_seconds: float | None = None


def warm_up() -> float:
    """Compile (or load from numba's cache) every kernel for float32 and float64; returns
    the seconds it took (0 when the kernels are off or numba is missing). The first call
    of any kernel does the same for its own dtype, so this is only needed to measure."""
    global _compile_seconds
    if not enabled():
        return 0.0
    if _compile_seconds is not None:
        return 0.0
    from mgnet.stencils.operators import laplacian

    t0 = time.perf_counter()
    _compiled()
    for dtype in _DTYPES:  # one compiled version per dtype serves 1D, 2D and 3D
        op = laplacian(5, dim=2)
        u = torch.zeros(1, 1, *op.shape, dtype=dtype)
        c = torch.zeros(1, 1, 2, 2, dtype=dtype)
        grid = torch.ones(op.shape, dtype=dtype)
        stencil(op, u, u, torch.empty_like(u))
        stencil(op, u, None, torch.empty_like(u))
        residual_norms(op, u, u)
        colour_update_(op, u, u, 0, 0.5)
        colour_update_(op, u, u, 0, grid)
        jacobi_update_(op, u, u, 0.5)
        jacobi_update_(op, u, u, grid)
        restrict(op.shape, "dirichlet", u, c)
        residual_restrict(op, u, u, c)
        interpolate_add_(op.shape, "dirichlet", u, c)
        cubic_axis(torch.zeros(1, 1, 3, 3, dtype=dtype), 0, False)
    _compile_seconds = time.perf_counter() - t0 + _load_seconds
    return _compile_seconds


def compile_seconds() -> float | None:
    """Seconds of the first :func:`warm_up` in this process (import of numba included), or
    None before it ran."""
    return _compile_seconds
