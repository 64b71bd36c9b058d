"""Geometric multigrid built on :mod:`mgnet.core` and :mod:`mgnet.stencils`.

The solver adds only the driver around the core cycle: the hierarchy of fixed operators,
the iteration to a tolerance, FMG, PCG, FAS for nonlinear operators, SciPy adapters.
"""

from mgnet.multigrid.problems import PROBLEMS, Problem, make_problem
from mgnet.multigrid.solver import COARSE, PRECISIONS, SMOOTHERS, MultigridSolver

__all__ = [
    "COARSE",
    "PRECISIONS",
    "PROBLEMS",
    "SMOOTHERS",
    "MultigridSolver",
    "Problem",
    "make_problem",
]
