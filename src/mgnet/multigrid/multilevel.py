"""What every multilevel solver adds on top of the MgNet cycle, however its levels were built.

A multilevel solver is a list of levels (A^l, R, P, Pi and the smoothers B^{l,i} of each)
plus drivers that run :class:`mgnet.core.MgCycle` over them: the iteration to a tolerance,
conjugate gradients preconditioned by one cycle, full multigrid, SciPy adapters and the
printed level table. :class:`MultilevelSolver` holds all of that once. A set-up function
builds the levels (:func:`mgnet.multigrid.geometric_hierarchy` for stencils on grids; an
algebraic set-up for sparse matrices) and a subclass passes them to the base, so set-up
and solving are separate, as in PyAMG (docs/design.md, "Solvers").
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from mgnet.constants import CYCLES, FMG_INTERPOLATIONS, PRECISIONS
from mgnet.core import Level, MgCycle, Step, Transfer, residual
from mgnet.device import resolve_device
from mgnet.errors import DivergenceError

__all__ = ["MultilevelSolver", "PRECISIONS", "SolveInfo", "SolverLevel", "STOP_REASONS"]

log = logging.getLogger(__name__)

STOP_REASONS = ("converged", "maxiter", "stagnated", "diverged", "breakdown")
_WHY = {
    "maxiter": "maxiter reached",
    "stagnated": "stagnated (the precision floor)",
    "diverged": "diverged (the residual grew or became non-finite)",
    "breakdown": "CG breakdown (p^T A p <= 0 or r^T M r <= 0: A or the preconditioner is "
    "not symmetric positive definite)",
}


@dataclass(eq=False)
class SolverLevel:
    """Level l of a multilevel solver (l = 0 is the finest), PyAMG-style.

    Attributes:
        A: A^l, the level's operator (feature -> data), a module on (batch, 1, *shape).
        presmoother: the B^{l,1..nu_l} of the pre-smoothing steps, in order; on the
            coarsest level the coarse solve (e.g. B = A^-1) is its presmoother.
        postsmoother: the B of the nu'_l post-smoothing steps, in order.
        R: R^{l+1}_l, restriction of the residual (data, fine -> coarse); None on the
            coarsest level.
        P: P^l_{l+1}, interpolation of the correction (feature, coarse -> fine); None on
            the coarsest level.
        Pi: Pi^{l+1}_l (feature, fine -> coarse): None is Pi = 0, the correction scheme;
            injection gives the Full Approximation Scheme.
        unknowns: the level's number of unknowns n_l.
        nnz: the number of nonzeros of A^l (operator complexity).
        shape: the level's grid, or (n_l,) for a level that is not a grid.
        info: what the level table prints for A^l (and the coarse solve).
    """

    A: nn.Module
    presmoother: list[nn.Module]
    postsmoother: list[nn.Module] = field(default_factory=list)
    R: nn.Module | None = None
    P: nn.Module | None = None
    Pi: nn.Module | None = None
    unknowns: int = 0
    nnz: int = 0
    shape: tuple[int, ...] = ()
    info: str = ""

    @property
    def nu(self) -> tuple[int, int]:
        """(nu_l, nu'_l): the pre- and post-smoothing steps."""
        return len(self.presmoother), len(self.postsmoother)


@dataclass
class SolveInfo:
    """How the last ``solve``/``fmg`` call ended.

    iterations: cycles (or CG iterations) done; an FMG pass counts as one.
    converged: whether ||b - A x|| <= tol ||b|| for every right-hand side.
    reason: why it stopped, one of ``STOP_REASONS``: ``"converged"``; ``"maxiter"`` (the
        iteration budget ran out); ``"stagnated"`` (three iterations without a 5%
        reduction while below the initial residual: the precision floor);
        ``"diverged"`` (the residual grew past the initial one; one that becomes NaN or inf
        raises :class:`mgnet.errors.DivergenceError` instead of returning garbage);
        ``"breakdown"`` (CG met p^T A p <= 0 or r^T M r <= 0: A or the preconditioner is
        not positive definite).
    residuals: ||b - A x|| (2-norm, the largest over a batch) at the start and after every
        iteration.
    """

    iterations: int = 0
    converged: bool = False
    reason: str = ""
    residuals: list[float] = field(default_factory=list)


def _pow2(x: Tensor) -> Tensor:
    """The power of two nearest to x > 0 (exact scaling factors); 1 where x is 0."""
    e = torch.round(torch.log2(torch.where(x > 0, x, torch.ones_like(x))))
    return torch.exp2(e.clamp(-1000, 1000))


def _norms(x: Tensor) -> Tensor:
    """||x|| per sample (float64), without overflow or underflow: the plain 2-norm, and a
    norm scaled by max |x| where the plain one over- or underflows."""
    n = x.flatten(1).norm(dim=1).double()
    tiny = 1e4 * torch.finfo(x.dtype).tiny ** 0.5  # below it, squares lose precision
    if bool(torch.isfinite(n).all()) and bool((n > tiny).all()):
        return n
    flat = x.flatten(1)
    amax = flat.abs().amax(dim=1).double()
    scale = torch.where(amax > 0, amax, torch.ones_like(amax))
    return (flat.double() / scale[:, None]).norm(dim=1) * scale


def _all_finite(x: Tensor) -> bool:
    """No NaN and no inf in x: its min and max (which propagate NaN) are finite; two
    reductions instead of a boolean tensor of x's size."""
    if x.numel() == 0:
        return True
    return bool(torch.isfinite(x.amin())) and bool(torch.isfinite(x.amax()))


def _amax_abs(x: Tensor) -> Tensor:
    """max |x| per sample (float64), from a min and a max reduction (no |x| temporary;
    ``aminmax`` along a dimension is several times slower here)."""
    flat = x.flatten(1)
    return torch.maximum(-flat.amin(dim=1), flat.amax(dim=1)).double()


def _residual_norms(A: nn.Module, x: Tensor | None, b: Tensor) -> Tensor:
    """||b - A x|| per sample, as ``_norms(residual(A, x, b))``. An A that offers
    ``residual_norm(x, b)`` (a fixed stencil's compiled CPU kernel, which reads x and b
    once and stores no residual) computes it; its None, or a norm that may have over- or
    underflowed, sends the call to the residual."""
    fused = getattr(A, "residual_norm", None) if x is not None else None
    n = fused(x, b) if callable(fused) else None
    if n is not None:
        tiny = 1e4 * torch.finfo(b.dtype).tiny ** 0.5
        if bool(torch.isfinite(n).all()) and bool((n > tiny).all()):
            return n.to(b.device)
    return _norms(residual(A, x, b))


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(dim=1)


def _per_sample(s: Tensor, like: Tensor) -> Tensor:
    """One number per right-hand side, shaped to broadcast over ``like`` (batch, ...)."""
    return s.to(like).view(-1, *[1] * (like.dim() - 1))


def check_nu(nu: Sequence[int] | int) -> tuple[int, int]:
    """(nu_l, nu'_l), the pre- and post-smoothing sweeps, from one count or a pair."""
    nu = (nu, nu) if isinstance(nu, int) else tuple(int(x) for x in nu)
    if len(nu) != 2 or min(nu) < 0 or sum(nu) < 1:
        raise ValueError(f"nu: need two sweep counts (pre, post) >= 0, not both 0; got {nu}")
    return nu


def check_precision(precision: str, linear: bool = True) -> None:
    """Refuse a precision mode that is not one of ``PRECISIONS``, and ``"mixed"`` (iterative
    refinement, which needs a linear A) for a nonlinear operator."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not linear and precision == "mixed":
        raise ValueError("precision: 'mixed' (iterative refinement) needs a linear operator")


@dataclass(eq=False)
class _Call:
    """The vectors of one driver call (``solve``, ``fmg``, CG): ``b`` and ``x`` (the initial
    guess, a copy, or None) in the cycle's layout, divided by ``s``, the power of two per
    right-hand side that keeps them in range (None: not scaled), and what a result needs to
    go back to the caller: its type and shape."""

    solver: MultilevelSolver
    b: Tensor
    x: Tensor | None
    s: Tensor | None
    numpy_like: bool
    given: tuple[int, ...]

    @property
    def unscale(self) -> Tensor:
        """s per right-hand side (ones when nothing was scaled), float64 on b's device: a
        norm of the scaled problem times it is the norm of the caller's."""
        s = torch.ones(self.b.shape[0], dtype=torch.float64) if self.s is None else self.s
        return s.to(self.b.device)

    def reporter(self, callback: Callable | None) -> Callable[[Tensor], None]:
        """``report(x)``: hands ``callback`` a copy of the scaled iterate x as the caller's."""

        def report(x: Tensor) -> None:
            if callback is not None:
                xs = x if self.s is None else x * _per_sample(self.s, x)
                callback(self.solver._output(xs.clone(), self.numpy_like, self.given))

        return report

    def result(self, x: Tensor):
        """The scaled solution x (overwritten) as the caller's solution."""
        if self.s is not None:
            x.mul_(_per_sample(self.s, x))
        return self.solver._output(x, self.numpy_like, self.given)


class MultilevelSolver:
    """A solver that runs :class:`mgnet.core.MgCycle` over a list of levels.

    The base owns what does not depend on how the hierarchy was built: ``levels`` (a list
    of :class:`SolverLevel`, finest first), the ``cycle`` made from them, the drivers
    :meth:`solve` (stationary cycles or CG), :meth:`fmg`, :meth:`aspreconditioner`, the
    complexities and the level table (``print(solver)``), and the precision modes.

    Args:
        levels: the hierarchy (see :class:`SolverLevel`): every level but the last has R
            and P. The modules are used as they are (not copied) and are moved to
            ``device`` and the cycle's dtype.
        precision: ``"float64"``; ``"float32"`` (cycles and residuals in float32, the
            iteration stops at float32's floor); ``"mixed"`` (float32 cycles on the float64
            residual: iterative refinement to float64 tolerances at float32 cycle speed).
            The float64 copy of A^1 used for the residual is taken before the cycle is
            cast, so variable coefficients are not rounded to float32.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``; default CUDA when available.
        linear: False for a nonlinear A (FAS): CG, the preconditioner and the exact
            rescaling of the right-hand side are then refused or skipped.

    Vectors in and out (the hook contract). ``b`` and ``x0`` may be torch tensors, NumPy
    arrays or anything NumPy turns into a real array; NumPy (or array-like) in gives
    NumPy out, torch in gives torch out (on the solver's device), in the shape given.
    The base converts between array types and dtypes; the *shapes* go through two hooks
    that a subclass overrides when its vectors are not grids:

    * ``_to_cycle(x, name) -> Tensor``: x (a torch tensor as given) in the cycle's layout,
      (batch, *sample); refuse any other shape with a one-line ValueError that starts
      with ``name`` (``"b"`` or ``"x0"``) and says which shapes are accepted. It may
      return a view of x; the base never writes it.
    * ``_from_cycle(x, given) -> Tensor``: the inverse for a result, ``given`` being the
      shape the caller passed.

    The defaults accept ``self.shape`` (one sample's grid), a flat vector of ``self.n``
    unknowns and (batch, 1, *self.shape): a subclass whose cycle runs on (batch, 1, n)
    tensors needs only ``self.shape = (n,)``. Subclasses set ``self.shape`` and ``self.n``
    before calling ``__init__`` and may override ``_header`` (the lines above the level
    table).

    After each call ``self.info`` (a :class:`SolveInfo`) says how it ended; ``iterations``,
    ``converged``, ``reason`` and ``history`` are its fields.
    """

    shape: tuple[int, ...] = ()
    n: int = 0

    def __init__(
        self,
        levels: Sequence[SolverLevel],
        precision: str = "float64",
        device: str | torch.device | None = None,
        linear: bool = True,
    ) -> None:
        check_precision(precision, linear)
        levels = list(levels)
        if not levels or not all(isinstance(lv, SolverLevel) for lv in levels):
            raise ValueError("levels: expected a non-empty list of SolverLevel")
        for l, lv in enumerate(levels[:-1]):
            if lv.R is None or lv.P is None:
                raise ValueError(f"levels: level {l} of {len(levels)} needs R and P")
        self.levels = levels
        self.precision = precision
        self.linear = linear
        self.device = resolve_device(device)
        self.dtype = torch.float64 if precision == "float64" else torch.float32
        # the float64 fine operator of the outer iteration, copied before the cast below
        self.A64: nn.Module | None = None
        if self.dtype != torch.float64:
            self.A64 = copy.deepcopy(levels[0].A).to(self.device, torch.float64)
        cycle_levels = [
            Level(
                lv.A,
                [Step(lv.A, B) for B in lv.presmoother],
                [Step(lv.A, B) for B in lv.postsmoother],
            )
            for lv in levels
        ]
        transfers = [Transfer(R=lv.R, Pi=lv.Pi, P=lv.P) for lv in levels[:-1]]
        self.cycle = MgCycle(cycle_levels, transfers, shape="V").to(self.device, self.dtype)
        self._sym: MgCycle | None = None
        self.info = SolveInfo()

    # -------------------------------------------------------------------- last call
    @property
    def iterations(self) -> int:
        return self.info.iterations

    @property
    def converged(self) -> bool:
        return self.info.converged

    @property
    def reason(self) -> str:
        return self.info.reason

    @property
    def history(self) -> list[float]:
        return self.info.residuals

    def convergence_factor(self, history: Sequence[float] | None = None) -> float:
        """Mean factor per iteration, (r_k / r_0)^(1/k), of a residual history."""
        h = self.history if history is None else list(history)
        if len(h) < 2 or h[0] == 0:
            return 0.0
        return (h[-1] / h[0]) ** (1.0 / (len(h) - 1))

    # ---------------------------------------------------------------- vectors (hooks)
    def _to_cycle(self, x: Tensor, name: str) -> Tensor:
        """x in the cycle's layout (batch, 1, *self.shape); see the class docstring."""
        if tuple(x.shape) == self.shape or (x.dim() == 1 and x.numel() == self.n):
            return x.reshape(1, 1, *self.shape)
        if x.dim() == len(self.shape) + 2 and x.shape[1] == 1 and tuple(x.shape[2:]) == self.shape:
            return x
        dims = ", ".join(map(str, self.shape))
        flat = f", ({self.n},)" if len(self.shape) > 1 else ""
        raise ValueError(
            f"{name}: expected shape ({dims}){flat} or (batch, 1, {dims}), got {tuple(x.shape)}"
        )

    def _from_cycle(self, x: Tensor, given: tuple[int, ...]) -> Tensor:
        """A result in the cycle's layout back in the shape the caller gave."""
        return x.reshape(given)

    def _vector(self, v, name: str, dtype: torch.dtype) -> tuple[Tensor, bool, tuple[int, ...]]:
        """(v in the cycle's layout on the device in ``dtype``, whether v was NumPy-like, the
        shape given). Non-finite values are refused."""
        numpy_like = not isinstance(v, Tensor)
        if numpy_like:
            try:
                arr = np.asarray(v)
            except Exception as e:  # noqa: BLE001 - anything NumPy cannot read
                raise TypeError(
                    f"{name}: cannot be read as an array ({type(e).__name__})"
                ) from None
            if arr.dtype.kind not in "biuf":
                raise TypeError(
                    f"{name}: expected a real tensor or array, got a NumPy array of {arr.dtype}"
                )
            v = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
        elif v.is_complex() or v.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real tensor, got {v.dtype}")
        given = tuple(v.shape)
        x = self._to_cycle(v, name)
        if x.is_floating_point() and not _all_finite(x):
            raise ValueError(f"{name}: holds NaN or inf; a right-hand side must be finite")
        return x.to(self.device, dtype), numpy_like, given

    def _call(self, b, x0, dtype: torch.dtype) -> _Call:
        """Read ``b`` and ``x0`` (a copy, so the cycles may overwrite it) and scale both
        into range (:meth:`_scale`)."""
        b, numpy_like, given = self._vector(b, "b", dtype)
        x = None
        if x0 is not None:
            x, _, _ = self._vector(x0, "x0", dtype)
            self._same_batch(x, b)
            x = x.clone()
        s = self._scale(b, x)
        if s is not None:
            b = b / _per_sample(s, b)
            if x is not None:
                x.div_(_per_sample(s, x))
        return _Call(self, b, x, s, numpy_like, given)

    def _output(self, x: Tensor, numpy_like: bool, given: tuple[int, ...]):
        x = self._from_cycle(x, given)
        return x.detach().cpu().numpy() if numpy_like else x

    def _scale(self, b: Tensor, x: Tensor | None = None) -> Tensor | None:
        """Per right-hand side, the power of two near max(|b|, |x0|) (None: no scaling
        needed). A linear solve on b / s from x0 / s is the solve on b from x0 scaled
        exactly (powers of two round nothing) by 1/s, so the iterates stay in range
        whatever the size of b (1e160, or 1e19 with float32 cycles)."""
        if not self.linear:
            return None
        amax = _amax_abs(b)
        if x is not None:
            amax = torch.maximum(amax, _amax_abs(x))
        # where nothing can over- or underflow the scaling changes no bit: skip its passes
        lo, hi = (2.0**-400, 2.0**400) if self.dtype == torch.float64 else (2.0**-60, 2.0**60)
        if bool((((amax >= lo) & (amax <= hi)) | (amax == 0)).all()):
            return None
        return _pow2(amax)

    def _release(self) -> None:
        """Let the operators drop their views of this call's iterates."""
        for A in [lv.A for lv in self.levels] + [self.A64]:
            release = getattr(A, "release", None)
            if callable(release):
                release()

    @property
    def _outer_dtype(self) -> torch.dtype:
        """The dtype of the outer iteration (x, b and the residual): float64 unless the whole
        solve runs in float32."""
        return torch.float32 if self.precision == "float32" else torch.float64

    @property
    def _outer(self) -> nn.Module:
        """A^1 in the outer dtype: float64 (a copy made before the cast) unless the whole
        solve runs in float32."""
        if self.A64 is not None and self.precision == "mixed":
            return self.A64
        return self.levels[0].A

    def residual(self, x: Tensor, b: Tensor) -> Tensor:
        """b - A x on the finest level (a fresh tensor), both in the cycle's layout; in
        float64 unless ``precision="float32"``."""
        A, dtype = self._outer, self._outer_dtype
        b = b.to(self.device, dtype)
        return residual(A, x.to(self.device, dtype), b).clone()  # A may own the buffer

    # ------------------------------------------------------------------------ solve
    @staticmethod
    def _check(cycle: str, tol: float, maxiter: int, accel: str | None = None) -> None:
        if cycle not in CYCLES:
            raise ValueError(f"cycle: {cycle!r} is not one of V, W, F (use fmg() for FMG)")
        if accel not in (None, "cg"):
            raise ValueError(f"accel: {accel!r} is not one of None, 'cg'")
        if not (isinstance(tol, int | float | np.floating) and math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol: must be a positive number, got {tol!r}")
        if not isinstance(maxiter, int | np.integer) or maxiter < 0:
            raise ValueError(f"maxiter: must be an integer >= 0, got {maxiter!r}")

    @torch.no_grad()
    def solve(
        self,
        b,
        x0=None,
        tol: float = 1e-8,
        maxiter: int = 100,
        cycle: str = "V",
        accel: str | None = None,
        residuals: list | None = None,
        callback: Callable | None = None,
    ):
        """Solve A x = b to ||b - A x|| <= tol ||b|| for every right-hand side of a batch.

        Args:
            b: the right-hand side (see the class docstring for the accepted types and
                shapes); NumPy in gives NumPy out, torch in gives torch out.
            x0: initial guess of the same shape; ``None`` is zero.
            tol: relative tolerance on the 2-norm of the residual.
            maxiter: most cycles (or CG iterations).
            cycle: ``"V"``, ``"W"`` or ``"F"``.
            accel: ``None`` (stationary cycles) or ``"cg"`` (conjugate gradients
                preconditioned by one symmetric cycle; A must be symmetric positive
                definite, with as many post- as pre-smoothing steps per level).
            residuals: a list that receives ||b - A x|| before the first iteration and
                after each (the largest over a batch), as PyAMG's.
            callback: called as ``callback(xk)`` after every iteration, with the iterate
                in the caller's type and shape (a copy for NumPy callers).

        Returns x in float64 (float32 for ``precision="float32"``). ``self.info`` says how
        it ended (:class:`SolveInfo`); a solve that did not reach ``tol`` is logged (a
        warning when it diverged or CG broke down). A residual that becomes NaN or inf raises
        :class:`mgnet.errors.DivergenceError`.
        """
        self._check(cycle, tol, maxiter, accel)
        if accel == "cg":
            return self._cg(b, x0, tol, maxiter, cycle, residuals, callback)
        call = self._call(b, x0, self._outer_dtype)
        x = self._iterate(call, call.x, tol, maxiter, cycle, call.reporter(callback), [])
        self._finish("solve", residuals)
        return call.result(x)

    @staticmethod
    def _same_batch(x: Tensor, b: Tensor) -> None:
        if x.shape != b.shape:
            raise ValueError(
                f"x0: has {x.shape[0]} right-hand side(s) of shape {tuple(x.shape[1:])}, "
                f"b has {b.shape[0]} of {tuple(b.shape[1:])}"
            )

    def _diverged(self, iterations: int, history: list[float]) -> None:
        """The residual became NaN or inf: the iterate is garbage, so nothing is returned."""
        self.info = SolveInfo(iterations, False, "diverged", history)
        self._release()
        raise DivergenceError(
            f"solve: the residual became {history[-1]} after {iterations} iterations; the "
            "cycle diverges for this operator and smoother"
        )

    def _finish(self, what: str, residuals: list | None, warn: bool = True) -> None:
        self._release()
        if residuals is not None:
            residuals.extend(self.info.residuals)
        if warn and not self.info.converged:
            h = self.info.residuals
            rel = h[-1] / h[0] if h and h[0] > 0 else float("nan")
            why = _WHY.get(self.info.reason, self.info.reason)
            serious = self.info.reason in ("diverged", "breakdown")
            (log.warning if serious else log.info)(
                "%s: stopped after %d iterations without reaching the tolerance: %s "
                "(residual %.3g of the initial)",
                what,
                self.info.iterations,
                why,
                rel,
            )

    def _iterate(
        self,
        call: _Call,
        x: Tensor | None,
        tol: float,
        maxiter: int,
        cycle: str,
        report: Callable[[Tensor], None],
        history: list[float],
        done: int = 0,
        bn: Tensor | None = None,
    ) -> Tensor:
        """Stationary cycles on the (scaled) ``call.b`` from x until tol or maxiter; fills
        self.info. ``history``, ``done`` and ``bn`` (||b||) carry what a previous phase
        (FMG) already did."""
        A, b, unscale = self._outer, call.b, call.unscale
        bn = _norms(b) if bn is None else bn
        bn = torch.where(bn > 0, bn, torch.ones_like(bn))
        mixed = self.precision == "mixed"  # needs the residual itself, not only its norm
        r = residual(A, x, b) if mixed else None
        rn = _norms(r) if mixed else _residual_norms(A, x, b)
        history.append(float((rn * unscale).max()))
        first = rn
        it, stalled, reason = 0, 0, ""
        while True:
            if bool((rn <= tol * bn).all()):
                reason = "converged"
                break
            if it >= maxiter:
                reason = "maxiter"
                break
            if self.precision == "mixed":  # float32 cycle on the scaled float64 residual
                sr = _per_sample(_pow2(rn / math.sqrt(max(1, r[0].numel()))), r)
                e = self.cycle((r / sr).to(torch.float32), None, shape=cycle, inplace=True)
                e = e.to(torch.float64).mul_(sr)
                x = e if x is None else x.add_(e)
            else:
                x = self.cycle(b, x, shape=cycle, inplace=True)  # x is ours: no copies
            it += 1
            r = residual(A, x, b) if mixed else None
            new = _norms(r) if mixed else _residual_norms(A, x, b)
            history.append(float((new * unscale).max()))
            if not bool(torch.isfinite(new).all()):
                self._diverged(done + it, history)
            report(x)
            # no 5% progress over three iterations: the precision floor, or divergence
            stalled = stalled + 1 if float((new / rn).max()) > 0.95 else 0
            rn = new
            if stalled >= 3:
                reason = "diverged" if bool((rn > first).any()) else "stagnated"
                break
        # the operators cache views of the iterate: hand out a fresh tensor
        x = torch.zeros_like(b) if x is None else x.clone()
        self.info = SolveInfo(done + it, reason == "converged", reason, history)
        return x

    # -------------------------------------------------------------------------- FMG
    @torch.no_grad()
    def fmg(
        self,
        b,
        cycles: int = 2,
        cycle: str = "V",
        tol: float = 1e-8,
        maxiter: int = 0,
        residuals: list | None = None,
        callback: Callable | None = None,
        interpolation: str = "cubic",
    ):
        """Full multigrid (:meth:`mgnet.core.MgCycle.fmg`): b restricted to every level
        by R, the coarsest level solved, and on each finer level the interpolated coarse
        solution improved by ``cycles`` cycles of shape ``cycle``. One pass reaches
        the discretization error of a smooth problem.

        ``interpolation`` carries each coarse solution up: ``"cubic"`` (default) uses
        :meth:`fmg_interpolation`, cubic on a structured grid whose P is linear (one
        V(1,1) per level then reaches the discretization error), ``"cycle"`` the cycle's
        own P on every level.

        Then up to ``maxiter`` further cycles run while ||b - A x|| > tol ||b||;
        ``self.info.converged`` says whether ``tol`` was met (the pass counts as one
        iteration, and ``residuals`` starts with ||b||). Arguments and types as
        :meth:`solve`.
        """
        self._check(cycle, tol, maxiter)
        if cycles < 1:
            raise ValueError(f"cycles: must be >= 1, got {cycles}")
        call = self._call(b, None, self._outer_dtype)
        bn = _norms(call.b)
        history = [float((bn * call.unscale).max())]
        if interpolation not in FMG_INTERPOLATIONS:
            raise ValueError(
                f"interpolation: {interpolation!r} is not one of {', '.join(FMG_INTERPOLATIONS)}"
            )
        up = self.fmg_interpolation() if interpolation == "cubic" else None
        x = self.cycle.fmg(
            call.b.to(self.dtype), cycles=cycles, shape=cycle, inplace=True, interpolate=up
        )
        x = x.to(self._outer_dtype)
        report = call.reporter(callback)
        report(x)
        x = self._iterate(call, x, tol, maxiter, cycle, report, history, done=1, bn=bn)
        self._finish("fmg", residuals, warn=maxiter > 0)
        return call.result(x)

    def fmg_interpolation(self) -> list[Callable] | None:
        """The FMG interpolation of each transfer (from level l + 1 to l), or None for the
        cycle's own P on every level (here: a hierarchy without a grid to interpolate on
        by cubics)."""
        return None

    # -------------------------------------------------------------------------- PCG
    def symmetric_cycle(self) -> MgCycle:
        """The cycle whose post-smoothing runs the pre-smoothing steps in reverse order, so
        that one cycle from zero is a symmetric operator M (the CG preconditioner) when
        every B is symmetric. Same modules, same core cycle."""
        if not self.linear:
            raise ValueError("accel: conjugate gradients needs a linear operator")
        if self._sym is None:
            self._check_symmetric_nu()
            levels = [
                Level(L.A, list(L.pre), list(L.pre)[::-1] if len(L.post) else [])
                for L in self.cycle.levels
            ]
            self._sym = MgCycle(levels, list(self.cycle.transfers), shape="V")
        return self._sym

    def _check_symmetric_nu(self) -> None:
        """Refuse a symmetric cycle where a level has unequal pre- and post-smoothing."""
        for l, lv in enumerate(self.levels[:-1]):
            if lv.nu[0] != lv.nu[1]:
                raise ValueError(
                    f"nu: a CG preconditioner needs nu_pre == nu_post on every level; "
                    f"level {l} has {lv.nu}"
                )

    @torch.no_grad()
    def _precondition(self, r: Tensor, cycle: str) -> Tensor:
        """M r: one symmetric cycle on A e = r from e = 0 (r scaled into range first when
        the cycle runs in float32)."""
        if self.dtype == torch.float64:
            return self.symmetric_cycle()(r, None, shape=cycle, inplace=True)
        s = _per_sample(_pow2(_amax_abs(r)), r)
        e = self.symmetric_cycle()((r / s).to(self.dtype), None, shape=cycle, inplace=True)
        return e.to(r.dtype).mul_(s)

    def _cg(self, b, x0, tol, maxiter, cycle, residuals, callback):
        if cycle == "F":
            raise ValueError("cycle: an F-cycle is not symmetric; CG needs 'V' or 'W'")
        self.symmetric_cycle()  # refuses a nonlinear A or unequal nu first
        A = self.A64 if self.A64 is not None else self.levels[0].A
        call = self._call(b, x0, torch.float64)
        b, unscale, report = call.b, call.unscale, call.reporter(callback)
        x = torch.zeros_like(b) if call.x is None else call.x
        view = (-1,) + (1,) * (b.dim() - 1)
        bn = _norms(b)
        bn = torch.where(bn > 0, bn, torch.ones_like(bn))
        r = residual(A, x, b).clone()  # updated in place below; A may own the buffer
        rn = _norms(r)
        history = [float((rn * unscale).max())]
        z = self._precondition(r, cycle)
        p = z.clone()
        rz = _dot(r, z)
        it, reason = 0, ""
        while True:
            active = rn > tol * bn
            if not bool(active.any()):
                reason = "converged"
                break
            if it >= maxiter:
                reason = "maxiter"
                break
            Ap = A(p)
            pAp = _dot(p, Ap)
            ok = torch.isfinite(rz) & torch.isfinite(pAp) & (rz > 0) & (pAp > 0)
            if not bool(ok[active].all()):
                reason = "breakdown"
                break
            alpha = torch.where(active, rz / torch.where(ok, pAp, 1), 0).view(view)
            x.add_(alpha * p)
            r.sub_(alpha * Ap)
            it += 1
            rn = _norms(r)
            history.append(float((rn * unscale).max()))
            if not bool(torch.isfinite(rn).all()):
                self._diverged(it, history)
            report(x)
            z = self._precondition(r, cycle)
            rz_new = _dot(r, z)
            beta = torch.where(active & (rz != 0), rz_new / torch.where(rz != 0, rz, 1), 0)
            p = z + beta.view(view) * p
            rz = rz_new
        self.info = SolveInfo(it, reason == "converged", reason, history)
        self._finish("cg", residuals)
        return call.result(x)

    def pcg(self, b, x0=None, tol: float = 1e-8, maxiter: int = 50, residuals=None, cycle="V"):
        """``solve(..., accel="cg")``: conjugate gradients preconditioned by one cycle."""
        return self.solve(
            b, x0=x0, tol=tol, maxiter=maxiter, cycle=cycle, accel="cg", residuals=residuals
        )

    # ------------------------------------------------------------------------ SciPy
    def aspreconditioner(self, cycle: str = "V"):
        """M, one symmetric cycle from zero, as a ``scipy.sparse.linalg.LinearOperator``
        on vectors of n unknowns (float64)."""
        from scipy.sparse.linalg import LinearOperator

        if cycle not in ("V", "W"):
            raise ValueError(f"cycle: a symmetric preconditioner is 'V' or 'W', got {cycle!r}")
        self.symmetric_cycle()

        def matvec(v: np.ndarray) -> np.ndarray:
            r = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).ravel())
            r = self._to_cycle(r, "v").to(self.device)
            with torch.no_grad():
                e = self._precondition(r, cycle)
            return e.cpu().numpy().ravel()

        return LinearOperator((self.n, self.n), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def aslinearoperator(self):
        """A^1 (the finest operator, float64) as a ``scipy.sparse.linalg.LinearOperator``."""
        from scipy.sparse.linalg import LinearOperator

        A = copy.deepcopy(self.A64 if self.A64 is not None else self.levels[0].A)
        A = A.to("cpu", torch.float64)
        if hasattr(A, "workspace"):
            A.workspace = False

        def matvec(v: np.ndarray) -> np.ndarray:
            u = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).ravel())
            with torch.no_grad():
                return A(self._to_cycle(u, "v")).numpy().ravel()

        return LinearOperator((self.n, self.n), matvec=matvec, dtype=np.float64)

    # ------------------------------------------------------------------------ print
    def operator_complexity(self) -> float:
        """sum_l nnz(A^l) / nnz(A^1)."""
        return sum(lv.nnz for lv in self.levels) / self.levels[0].nnz

    def grid_complexity(self) -> float:
        """sum_l n_l / n_1, the unknowns of all levels relative to the finest."""
        return sum(lv.unknowns for lv in self.levels) / self.levels[0].unknowns

    def _header(self) -> list[str]:
        """The lines printed above the level table (subclasses describe their set-up)."""
        return [f"{type(self).__name__} on mgnet.core.MgCycle"]

    def __repr__(self) -> str:
        lines = self._header() + [
            f"  precision: {self.precision}, device: {self.device}",
            f"  levels:    {len(self.levels)}, operator complexity "
            f"{self.operator_complexity():.3f}, grid complexity {self.grid_complexity():.3f}",
            f"  level  {'grid':<16}{'unknowns':>10}{'nnz':>11}  A^l",
        ]
        for l, lv in enumerate(self.levels):
            grid = "x".join(map(str, lv.shape)) if lv.shape else str(lv.unknowns)
            lines.append(f"  {l:>5}  {grid:<16}{lv.unknowns:>10}{lv.nnz:>11}  {lv.info}")
        return "\n".join(lines)
