"""Geometric multigrid on the MgNet cycle: the set-up of a grid hierarchy, and the solver.

:func:`geometric_hierarchy` builds the levels of a structured-grid problem: A^l from
:mod:`mgnet.stencils` (by rediscretization or Galerkin R A P), full-weighting R, linear
interpolation P, Pi = injection for a nonlinear operator (FAS), the smoothers B^{l,i} of
a :class:`~mgnet.multigrid.smoothing.Smoother` and a direct solve on the coarsest grid.
:class:`MultigridSolver` is that set-up plus the drivers of
:class:`~mgnet.multigrid.multilevel.MultilevelSolver` (solve to a tolerance, CG, FMG,
SciPy adapters, the level table), which run the core :class:`mgnet.core.MgCycle` with
sigma = identity and nothing else: there is no second cycle here.

The solver owns its iterate, so it runs that cycle with ``inplace=True``: under
``torch.no_grad`` the steps, the red-black smoothers (``update_``) and the interpolation
(``add_to``) overwrite the iterate instead of allocating a grid-sized tensor per step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch

from mgnet.constants import COARSE, INTERPOLATIONS, PRECISIONS, SMOOTHERS
from mgnet.multigrid.multilevel import MultilevelSolver, SolverLevel, check_nu, check_precision
from mgnet.multigrid.smoothing import Smoother, as_smoother, smoothing_steps
from mgnet.stencils import (
    CubicInterpolation,
    DirectSolve,
    FullWeighting,
    Injection,
    Interpolation,
    NewtonJacobi,
    NonlinearOperator,
    SparseTransfer,
    StencilOperator,
    coarse_shape,
    default_omega,
    interpolation_matrix,
    operator_interpolation_matrix,
    restriction_matrix,
)
from mgnet.stencils.smoothers import _parity

__all__ = [
    "COARSE",
    "INTERPOLATIONS",
    "MultigridSolver",
    "PRECISIONS",
    "SMOOTHERS",
    "geometric_hierarchy",
]

# The largest coarsest grid solved directly, per dimension: a sparse LU of a 2D grid of
# 200,000 unknowns takes about 2 s here, of a 3D grid of 12,000 about 3 s (27,000: 18 s).
DIRECT_MAX = {1: 1_000_000, 2: 200_000, 3: 12_000}


def _coarse(coarse: str | None, interpolation: str) -> str:
    """The coarse operators asked for; by default Galerkin R A P with operator-dependent
    interpolation and rediscretization otherwise."""
    if coarse is None:
        return "galerkin" if interpolation == "operator" else "rediscretize"
    return coarse


def _linear(op: StencilOperator | NonlinearOperator) -> StencilOperator:
    return op.linear if isinstance(op, NonlinearOperator) else op


def _grid_operators(
    A, coarse: str, interpolation: str, max_coarse: int, direct_max: int | None
) -> tuple[list, list]:
    """A^1, A^2, ... and the transfers (R, P) between them: coarsen while a grid has more
    than ``max_coarse`` unknowns and can be halved; refuse a coarsest grid too large to
    factorize."""
    nonlinear = isinstance(A, NonlinearOperator)
    ops, transfers = [A], []
    while math.prod(ops[-1].shape) > max_coarse:
        fine = ops[-1]
        cs = coarse_shape(fine.shape, fine.bc)
        if cs is None:
            break
        ch = tuple(2 * h for h in fine.h)
        if interpolation == "operator":
            P = operator_interpolation_matrix(fine)
            R = (P.T / 2**fine.dim).tocsr()
            name = "galerkin R A P, operator-dependent P"
            ops.append(StencilOperator.from_sparse(R @ fine.to_sparse() @ P, cs, ch, fine.bc, name))
            transfers.append((SparseTransfer(R, fine.shape, cs), SparseTransfer(P, cs, fine.shape)))
            continue
        if nonlinear:
            ops.append(fine.coarsen(cs, ch))
        elif coarse == "galerkin" or fine.rediscretize is None:
            G = (
                restriction_matrix(fine.shape, fine.bc)
                @ fine.to_sparse()
                @ interpolation_matrix(fine.shape, fine.bc)
            )
            name = f"galerkin R A P ({fine.name})"
            ops.append(StencilOperator.from_sparse(G, cs, ch, fine.bc, name=name))
        else:
            ops.append(fine.rediscretize(cs, ch))
        transfers.append((FullWeighting(fine.shape, fine.bc), Interpolation(fine.shape, fine.bc)))
    n_coarse = math.prod(ops[-1].shape)
    limit = DIRECT_MAX[A.dim] if direct_max is None else direct_max
    if n_coarse > limit and not nonlinear:
        dirichlet = A.bc == "dirichlet"
        good = "2^k - 1 (e.g. 255, 511, 1023)" if dirichlet else "2^k (e.g. 256, 512, 1024)"
        raise ValueError(
            f"shape: {A.shape} can only be coarsened to {ops[-1].shape} "
            f"({n_coarse} unknowns > coarse_direct_max={limit}, too many for a direct "
            f"solve); use sizes {good}, or m * 2^k{' - 1' if dirichlet else ''} with a small m"
        )
    return ops, transfers


def geometric_hierarchy(
    A: StencilOperator | NonlinearOperator,
    smoother: str | Smoother = "rbgs",
    nu: Sequence[int] | int = (1, 1),
    omega: float | None = None,
    coarse: str | None = None,
    max_coarse: int = 1,
    coarse_direct_max: int | None = None,
    coarse_sweeps: int = 20,
    interpolation: str = "linear",
) -> list[SolverLevel]:
    """The levels of geometric multigrid for a stencil operator on a grid (set-up only).

    Level l holds A^l (``A`` itself on level 0, not a copy; the coarser ones rediscretized
    or R A P), R = full weighting and P = linear interpolation (or, with
    ``interpolation="operator"``, P built from A^l and R = P^T / 2^d), Pi = injection for a
    :class:`~mgnet.stencils.NonlinearOperator` (FAS) and None (Pi = 0) otherwise, and the
    smoothers: nu_l and nu'_l repetitions of the ``smoother``'s sweep (see
    :class:`~mgnet.multigrid.smoothing.Smoother`). The coarsest level's presmoother is a
    direct solve B = A^-1 (``coarse_sweeps`` Newton Gauss-Seidel sweeps for FAS).
    Arguments as :class:`MultigridSolver`.
    """
    if not isinstance(A, StencilOperator | NonlinearOperator):
        raise ValueError(
            f"A: expected a StencilOperator or NonlinearOperator, got {type(A).__name__}"
        )
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation: {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
        )
    coarse = _coarse(coarse, interpolation)
    if coarse not in COARSE:
        raise ValueError(f"coarse: {coarse!r} is not one of {', '.join(COARSE)}")
    nu = check_nu(nu)
    smoother = as_smoother(smoother, omega)
    nonlinear = isinstance(A, NonlinearOperator)
    if nonlinear and coarse == "galerkin" and interpolation == "linear":
        raise ValueError("coarse: a nonlinear operator is coarsened by 'rediscretize' only")
    if interpolation == "operator":
        if nonlinear:
            raise ValueError("interpolation: 'operator' needs a linear operator (not FAS)")
        if coarse != "galerkin":
            raise ValueError(
                "coarse: operator-dependent interpolation goes with Galerkin coarse "
                "operators R A P; leave coarse out or pass 'galerkin'"
            )
        if A.dim == 3:
            raise ValueError("interpolation: 'operator' is built in 1D and 2D, got a 3D grid")
    ops, transfers = _grid_operators(A, coarse, interpolation, max_coarse, coarse_direct_max)
    levels = []
    for l, op in enumerate(ops):
        lin = _linear(op)
        kind = "constant" if lin.is_constant else "variable"
        level = SolverLevel(
            A=op,
            presmoother=[],
            unknowns=lin.unknowns,
            nnz=lin.unknowns * len(lin.offsets),
            shape=op.shape,
            info=f"{len(lin.offsets)}-point {kind}",
        )
        if l == len(ops) - 1:
            if nonlinear:  # Newton Gauss-Seidel sweeps on a small grid
                p = _parity(op.shape)
                red = NewtonJacobi(op, 1.0, p == 0, "red")
                black = NewtonJacobi(op, 1.0, p == 1, "black")
                level.presmoother = [red, black] * coarse_sweeps
                level.info += "; coarsest: Newton Gauss-Seidel sweeps"
            else:
                B = DirectSolve(op)
                level.presmoother = [B]
                level.info += "; coarsest: " + B.extra_repr()
        else:
            sweep = None if callable(getattr(smoother, "steps", None)) else smoother(op, l)
            level.presmoother = smoothing_steps(smoother, op, l, nu[0], sweep)
            level.postsmoother = smoothing_steps(smoother, op, l, nu[1], sweep)
            level.R, level.P = transfers[l]
            level.Pi = Injection(op.shape, op.bc) if nonlinear else None
        levels.append(level)
    return levels


class MultigridSolver(MultilevelSolver):
    """Geometric multigrid whose cycle is :class:`mgnet.core.MgCycle`: the set-up
    :func:`geometric_hierarchy` plus the drivers of
    :class:`~mgnet.multigrid.multilevel.MultilevelSolver` (``solve``, ``fmg``,
    ``aspreconditioner``, ``levels``, complexities, the level table).

    Args:
        A: the fine-grid operator A^1, a :class:`~mgnet.stencils.StencilOperator` (linear;
            correction scheme, Pi = 0) or :class:`~mgnet.stencils.NonlinearOperator` (FAS,
            Pi = injection). The solver works on a copy.
        smoother: ``"rbgs"`` (red-black Gauss-Seidel, B^{l,1} = M_red D^-1, B^{l,2} =
            M_black D^-1), ``"jacobi"`` (B = w D^-1), ``"chebyshev"`` (B^{l,i} = w_i D^-1),
            ``"line"`` (zebra line Gauss-Seidel, B = M_even T^-1, M_odd T^-1), a
            :class:`~mgnet.multigrid.learned.LearnedSmoother`, or another object of the
            :class:`~mgnet.multigrid.smoothing.Smoother` protocol,
            ``smoother(A^l, l) -> B modules of one sweep``.
        nu: (nu_l, nu'_l), pre- and post-smoothing sweeps per level.
        omega: w of damped Jacobi; default 2/3, 4/5, 6/7 in 1D, 2D, 3D.
        coarse: ``"rediscretize"`` (the PDE on the coarse grid; the default) or
            ``"galerkin"`` (A^{l+1} = R A^l P computed from the stencils; the default with
            operator-dependent interpolation).
        max_coarse: stop coarsening once a grid has at most this many unknowns.
        coarse_direct_max: the largest coarsest grid that is factorized directly (default
            per dimension: 1,000,000 in 1D, 200,000 in 2D, 12,000 in 3D); sizes that cannot
            be coarsened below it are refused, naming the sizes that work.
        precision: ``"float64"``, ``"float32"`` or ``"mixed"`` (float32 cycles, float64
            residuals: iterative refinement); see :class:`MultilevelSolver`.
        device: ``"cpu"``, ``"cuda"``; default ``cuda`` when available.
        coarse_sweeps: Newton sweeps on the coarsest grid of a nonlinear (FAS) problem.
        interpolation: ``"linear"`` (the textbook hierarchy) or ``"operator"``: P built
            from A^l (black-box multigrid, :func:`~mgnet.stencils.operator_interpolation_matrix`),
            R = P^T / 2^d and Galerkin coarse operators, which keeps the convergence of a
            -div(a grad u) problem whose coefficient jumps by orders of magnitude (1D, 2D).
    """

    def __init__(
        self,
        A: StencilOperator | NonlinearOperator,
        smoother: str | Smoother = "rbgs",
        nu: Sequence[int] | int = (1, 1),
        omega: float | None = None,
        coarse: str | None = None,
        max_coarse: int = 1,
        coarse_direct_max: int | None = None,
        precision: str = "float64",
        device: str | torch.device | None = None,
        coarse_sweeps: int = 20,
        interpolation: str = "linear",
    ) -> None:
        t0 = time.perf_counter()
        self.nonlinear = isinstance(A, NonlinearOperator)
        check_precision(precision, linear=not self.nonlinear)  # before the set-up's work
        if isinstance(A, StencilOperator | NonlinearOperator):
            A = copy.deepcopy(A)
        levels = geometric_hierarchy(
            A,
            smoother,
            nu,
            omega,
            coarse,
            max_coarse,
            coarse_direct_max,
            coarse_sweeps,
            interpolation,
        )
        self.smoother = smoother
        self.nu = check_nu(nu)
        self.omega = default_omega(A.dim) if omega is None else float(omega)
        self.interpolation = interpolation
        self.coarse = _coarse(coarse, interpolation)
        self.shape = A.shape
        self.n = math.prod(A.shape)
        self.dim = A.dim
        self.bc = A.bc
        super().__init__(levels, precision=precision, device=device, linear=not self.nonlinear)
        for lv in self.levels:
            if isinstance(lv.A, StencilOperator):
                lv.A.workspace = True
        self.setup_s = time.perf_counter() - t0

    def fmg_interpolation(self) -> list[Callable] | None:
        """Cubic interpolation (:class:`~mgnet.stencils.CubicInterpolation`) where a
        transfer's P is linear interpolation; the operator's own P elsewhere (operator-
        dependent interpolation knows the coefficient's jumps, a cubic does not)."""
        return [
            CubicInterpolation(t.P.fine_shape, t.P.bc) if type(t.P) is Interpolation else t.P
            for t in self.cycle.transfers
        ]

    def _header(self) -> list[str]:
        scheme = "FAS, Pi = injection" if self.nonlinear else "correction scheme, Pi = 0"
        sm = as_smoother(self.smoother, self.omega)
        name = getattr(sm, "name", type(sm).__name__)
        if self.nonlinear:
            name = "Newton " + name
        return [
            f"MultigridSolver on mgnet.core.MgCycle ({scheme}, sigma = identity)",
            f"  operator:  {self.levels[0].A.name}, bc={self.bc}, "
            f"grid {'x'.join(map(str, self.shape))}",
            f"  smoother:  {name}, nu = {self.nu}",
            f"  coarse:    {self.coarse}; "
            + (
                "P from the operator (black-box), R = P^T / 2^d"
                if self.interpolation == "operator"
                else "R = full weighting, P = linear interpolation"
            ),
        ]
