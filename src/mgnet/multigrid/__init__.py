"""Multigrid solvers built on :mod:`mgnet.core` and :mod:`mgnet.stencils`.

Set-up and solving are separate, as in PyAMG: a set-up function builds the list of levels
(:func:`geometric_hierarchy` for stencils on grids; smoothed aggregation or a PyAMG
hierarchy for sparse matrices: :func:`smoothed_aggregation_solver`, :func:`from_pyamg`),
and :class:`MultilevelSolver` runs the core cycle over any such list: the iteration to
a tolerance, CG, FMG, FAS for nonlinear operators, SciPy adapters, the level table.
Smoothers plug in through the
:class:`Smoother` protocol.
"""

from mgnet.constants import COARSE, INTERPOLATIONS, PRECISIONS, SMOOTHERS
from mgnet.multigrid.aggregation import rigid_body_modes
from mgnet.multigrid.algebraic import AlgebraicSolver, from_pyamg, smoothed_aggregation_solver
from mgnet.multigrid.multilevel import (
    STOP_REASONS,
    MultilevelSolver,
    SolveInfo,
    SolverLevel,
)
from mgnet.multigrid.problems import PROBLEMS, Problem, make_problem
from mgnet.multigrid.smoothing import (
    ChebyshevSmoother,
    JacobiSmoother,
    RedBlackGaussSeidel,
    Smoother,
    as_smoother,
)
from mgnet.multigrid.solver import MultigridSolver, geometric_hierarchy

__all__ = [
    "AlgebraicSolver",
    "COARSE",
    "INTERPOLATIONS",
    "PRECISIONS",
    "PROBLEMS",
    "SMOOTHERS",
    "STOP_REASONS",
    "ChebyshevSmoother",
    "JacobiSmoother",
    "MultigridSolver",
    "MultilevelSolver",
    "Problem",
    "RedBlackGaussSeidel",
    "SolveInfo",
    "SolverLevel",
    "Smoother",
    "as_smoother",
    "from_pyamg",
    "rigid_body_modes",
    "smoothed_aggregation_solver",
    "geometric_hierarchy",
    "make_problem",
]
