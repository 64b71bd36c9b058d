"""Multigrid solvers built on :mod:`mgnet.core` and :mod:`mgnet.stencils`.

Set-up and solving are separate, as in PyAMG: a set-up function builds the list of levels
(:func:`geometric_hierarchy` for stencils on grids), and :class:`MultilevelSolver` runs the
core cycle over any such list: the iteration to a tolerance, CG, FMG, FAS for nonlinear
operators, SciPy adapters, the level table. Smoothers plug in through the
:class:`Smoother` protocol.
"""

from mgnet.multigrid.demo import demo_poisson
from mgnet.multigrid.multilevel import (
    PRECISIONS,
    STOP_REASONS,
    MultilevelSolver,
    SolveInfo,
    SolverLevel,
)
from mgnet.multigrid.problems import PROBLEMS, Problem, make_problem
from mgnet.multigrid.smoothing import (
    SMOOTHERS,
    ChebyshevSmoother,
    JacobiSmoother,
    RedBlackGaussSeidel,
    Smoother,
    as_smoother,
)
from mgnet.multigrid.solver import COARSE, MultigridSolver, geometric_hierarchy

__all__ = [
    "COARSE",
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
    "demo_poisson",
    "geometric_hierarchy",
    "make_problem",
]
