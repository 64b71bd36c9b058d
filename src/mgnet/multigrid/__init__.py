"""Geometric multigrid built on :mod:`mgnet.core` and :mod:`mgnet.stencils`.

The solver adds only the driver around the core cycle: the hierarchy of fixed operators,
the iteration to a tolerance, FMG, PCG, FAS for nonlinear operators, SciPy adapters.
The algebraic instance (sparse A^l, smoothed aggregation, PyAMG hierarchies) runs the same
cycle: :func:`smoothed_aggregation_solver`, :func:`from_pyamg`.
"""

from mgnet.multigrid.aggregation import rigid_body_modes
from mgnet.multigrid.algebraic import AlgebraicSolver, from_pyamg, smoothed_aggregation_solver
from mgnet.multigrid.demo import demo_poisson
from mgnet.multigrid.problems import PROBLEMS, Problem, make_problem
from mgnet.multigrid.solver import COARSE, PRECISIONS, SMOOTHERS, MultigridSolver

__all__ = [
    "AlgebraicSolver",
    "COARSE",
    "PRECISIONS",
    "PROBLEMS",
    "SMOOTHERS",
    "MultigridSolver",
    "Problem",
    "demo_poisson",
    "from_pyamg",
    "make_problem",
    "rigid_body_modes",
    "smoothed_aggregation_solver",
]
