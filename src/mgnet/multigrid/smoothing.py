"""B^{l,i} for the solver's levels: the smoother plug-in protocol and the named smoothers.

``MultigridSolver(A, smoother=...)`` takes a name (``"jacobi"``, ``"rbgs"``,
``"chebyshev"``, ``"line"``) or any object that follows :class:`Smoother`: called with a level's
operator A^l and its index l, it returns the B modules of ONE sweep on that level. The
solver repeats the sweep nu_l times before the coarse correction and nu'_l times after
it, and where a symmetric cycle is needed (the CG preconditioner) it runs the
post-smoothing as the pre-smoothing steps in reverse order. A learned per-level
convolution, a zebra line Gauss-Seidel or anything else that maps a residual to a
correction plugs in this way without touching the solver; the names are objects of this
protocol too (:data:`NAMED_SMOOTHERS`), so there is one code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from torch import nn

from mgnet.constants import SMOOTHERS
from mgnet.stencils import (
    Jacobi,
    NewtonJacobi,
    NonlinearOperator,
    StencilOperator,
    chebyshev_weights,
    default_omega,
    red_black,
    zebra,
)
from mgnet.stencils.smoothers import _parity

__all__ = [
    "ChebyshevSmoother",
    "JacobiSmoother",
    "NAMED_SMOOTHERS",
    "RedBlackGaussSeidel",
    "Smoother",
    "ZebraLineGaussSeidel",
    "as_smoother",
    "smoothing_steps",
]


@runtime_checkable
class Smoother(Protocol):
    """Builds the smoothers B^{l,i} of a level: ``smoother(A, level)`` returns the B
    modules of one sweep on level ``level`` (0 = finest), whose operator is ``A`` (A^l).

    Each B maps a residual r = f - A^l u (data, (batch, 1, *grid)) to a correction (the
    feature), and one smoothing step is u <- u + B (f - A^l u); it may also implement the
    core's optional hooks (:mod:`mgnet.core.protocols`: ``update_`` for a fused in-place
    step, ``needs_u`` for an iterate-dependent B). The solver calls the smoother once per
    level and repeats the returned modules nu times, so a sweep's parameters are shared
    by its repetitions. For conjugate gradients the post-smoothing is the pre-smoothing
    reversed; the cycle is then a symmetric operator when every B is symmetric
    (B^T = B, as D^-1, a colour mask times D^-1, or a symmetric convolution).

    Optional:

    * ``steps(A, level, nu) -> Sequence[nn.Module]``: the B of all nu steps of a phase,
      for a smoother whose steps are not repetitions of one sweep (Chebyshev: nu
      different step sizes). The solver then calls it instead of repeating the sweep.
    * ``name``: how ``print(solver)`` calls it (default: the class name).
    """

    def __call__(self, A: nn.Module, level: int) -> Sequence[nn.Module]: ...


def _nonlinear(A: nn.Module) -> bool:
    return isinstance(A, NonlinearOperator)


class JacobiSmoother:
    """Damped Jacobi: one sweep is B = w D^-1 (Newton-Jacobi w (D + N'(u))^-1 for a
    nonlinear A). ``omega`` is w; default 2/3, 4/5, 6/7 in 1D, 2D, 3D."""

    def __init__(self, omega: float | None = None) -> None:
        self.omega = omega

    @property
    def name(self) -> str:
        w = "" if self.omega is None else f" (w = {self.omega:.4g})"
        return "damped Jacobi" + w

    def __call__(self, A: nn.Module, level: int) -> list[nn.Module]:
        w = default_omega(A.dim) if self.omega is None else float(self.omega)
        if _nonlinear(A):
            return [NewtonJacobi(A, w)]
        return [Jacobi(A, w)]


class RedBlackGaussSeidel:
    """Red-black Gauss-Seidel: one sweep is two steps, B^{l,1} = M_red D^-1 and
    B^{l,2} = M_black D^-1 (Newton Gauss-Seidel for a nonlinear A). For 3-, 5- and
    7-point stencils this is exactly one Gauss-Seidel sweep in red-black order."""

    name = "red-black Gauss-Seidel"

    def __call__(self, A: nn.Module, level: int) -> list[nn.Module]:
        if _nonlinear(A):
            p = _parity(A.shape)
            return [NewtonJacobi(A, 1.0, p == 0, "red"), NewtonJacobi(A, 1.0, p == 1, "black")]
        return list(red_black(A))


class ZebraLineGaussSeidel:
    """Zebra line Gauss-Seidel: one sweep is two steps, B^{l,1} = M_even T^-1 and
    B^{l,2} = M_odd T^-1, T the tridiagonal part of A^l along the lines
    (:func:`mgnet.stencils.zebra`). The lines run along ``axis``; default the axis of
    strongest coupling of each level's A^l. Linear stencil operators only."""

    name = "zebra line Gauss-Seidel"

    def __init__(self, axis: int | None = None) -> None:
        self.axis = axis

    def __call__(self, A: nn.Module, level: int) -> list[nn.Module]:
        if not isinstance(A, StencilOperator):
            raise ValueError(
                f"smoother: 'line' needs a linear StencilOperator, got {type(A).__name__}"
            )
        return list(zebra(A, self.axis))


def _gershgorin(A: StencilOperator) -> float:
    """An upper bound of the spectrum of D^-1 A (max over rows of sum |a_ij| / a_ii)."""
    M = A.to_sparse()
    d = M.diagonal()
    return float((abs(M).sum(axis=1).A1 / np.abs(d)).max())


class ChebyshevSmoother:
    """Chebyshev smoothing: the nu steps of a phase are B^{l,i} = w_i D^-1 with the
    inverse roots w_i of the degree-nu Chebyshev polynomial on [lower, 1] * lambda_max
    (D^-1 A), lambda_max bounded by Gershgorin. Linear operators only."""

    name = "Chebyshev"

    def __init__(self, lower: float = 0.25) -> None:
        self.lower = lower

    def __call__(self, A: nn.Module, level: int) -> list[nn.Module]:
        return self.steps(A, level, 1)

    def steps(self, A: nn.Module, level: int, nu: int) -> list[nn.Module]:
        if _nonlinear(A):
            raise ValueError("smoother: 'chebyshev' is linear; use 'jacobi' or 'rbgs' for FAS")
        return [Jacobi(A, w) for w in chebyshev_weights(nu, _gershgorin(A), self.lower)]


# the classes behind the names of mgnet.constants.SMOOTHERS
NAMED_SMOOTHERS = {
    "jacobi": JacobiSmoother,
    "rbgs": RedBlackGaussSeidel,
    "chebyshev": ChebyshevSmoother,
    "line": ZebraLineGaussSeidel,
}


def as_smoother(smoother: str | Smoother, omega: float | None = None) -> Smoother:
    """A :class:`Smoother` from a name of :data:`mgnet.constants.SMOOTHERS` (``omega`` is
    damped Jacobi's w) or an object that already follows the protocol."""
    if isinstance(smoother, str):
        if smoother not in NAMED_SMOOTHERS:
            raise ValueError(
                f"smoother: {smoother!r} is not one of {', '.join(SMOOTHERS)} "
                "or an object smoother(A, level) -> B modules of one sweep"
            )
        return JacobiSmoother(omega) if smoother == "jacobi" else NAMED_SMOOTHERS[smoother]()
    if not callable(smoother):
        raise TypeError(
            f"smoother: expected one of {', '.join(SMOOTHERS)} or a callable "
            f"smoother(A, level) -> B modules of one sweep, got {type(smoother).__name__}"
        )
    return smoother


def smoothing_steps(smoother: Smoother, A: nn.Module, level: int, nu: int, sweep=None) -> list:
    """The B of the nu steps of one phase on a level: ``smoother.steps(A, level, nu)``
    where defined, else the sweep (``sweep``, or ``smoother(A, level)``) repeated nu times.
    """
    if nu == 0:
        return []
    steps = getattr(smoother, "steps", None)
    if callable(steps):
        out = list(steps(A, level, nu))
    else:
        one = list(smoother(A, level) if sweep is None else sweep)
        out = one * nu
    if not out or not all(isinstance(B, nn.Module) for B in out):
        raise TypeError(
            f"smoother: must return a non-empty sequence of nn.Module (the B of one sweep); "
            f"got {[type(B).__name__ for B in out]} on level {level}"
        )
    return out
