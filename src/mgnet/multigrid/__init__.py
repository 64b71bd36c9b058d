"""Multigrid solvers built on :mod:`mgnet.core` and :mod:`mgnet.stencils`.

Set-up and solving are separate, as in PyAMG: a set-up function builds the list of levels
(:func:`geometric_hierarchy` for stencils on grids; smoothed aggregation or a PyAMG
hierarchy for sparse matrices: :func:`smoothed_aggregation_solver`, :func:`from_pyamg`),
and :class:`MultilevelSolver` runs the core cycle over any such list: the iteration to
a tolerance, CG, FMG, FAS for nonlinear operators, SciPy adapters, the level table.
Smoothers plug in through the :class:`Smoother` protocol; :func:`learn_smoother` trains
one (learned convolutions B^{l,i}) through the solver's own cycle.
"""

from mgnet.constants import COARSE, INTERPOLATIONS, PRECISIONS, SMOOTHERS
from mgnet.multigrid.aggregation import rigid_body_modes
from mgnet.multigrid.algebraic import AlgebraicSolver, from_pyamg, smoothed_aggregation_solver
from mgnet.multigrid.learned import (
    ConvolutionSmoother,
    LearnedSmoother,
    asymptotic_factor,
    learn_smoother,
)
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
    ZebraLineGaussSeidel,
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
    "ConvolutionSmoother",
    "JacobiSmoother",
    "LearnedSmoother",
    "MultigridSolver",
    "MultilevelSolver",
    "Problem",
    "RedBlackGaussSeidel",
    "SolveInfo",
    "SolverLevel",
    "Smoother",
    "ZebraLineGaussSeidel",
    "as_smoother",
    "from_pyamg",
    "rigid_body_modes",
    "smoothed_aggregation_solver",
    "asymptotic_factor",
    "geometric_hierarchy",
    "learn_smoother",
    "make_problem",
]
