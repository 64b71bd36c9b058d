"""Fixed operators of the multigrid instance of the MgNet cycle.

A (stencils: Laplacians, anisotropic and variable-coefficient diffusion, zero-order term,
Dirichlet or periodic), B (smoothers: damped Jacobi, red-black Gauss-Seidel, Chebyshev,
Newton, direct coarse solve, zebra line Gauss-Seidel), R (full weighting), P (linear
interpolation, or built from the operator: black-box multigrid in 1D and 2D) and Pi
(injection, or None for zero), in 1D, 2D and 3D.
"""

from mgnet.stencils.line import LineRelaxation, strong_axis, zebra
from mgnet.stencils.operators import (
    NonlinearOperator,
    StencilOperator,
    anisotropic,
    diffusion,
    dirichlet_lift,
    grid_points,
    laplacian,
)
from mgnet.stencils.smoothers import (
    ColoredJacobi,
    DirectSolve,
    Jacobi,
    NewtonJacobi,
    chebyshev_weights,
    default_omega,
    red_black,
)
from mgnet.stencils.transfers import (
    CubicInterpolation,
    FullWeighting,
    Injection,
    Interpolation,
    SparseTransfer,
    coarse_shape,
    interpolation_matrix,
    operator_interpolation_matrix,
    restriction_matrix,
)

__all__ = [
    "ColoredJacobi",
    "DirectSolve",
    "FullWeighting",
    "Injection",
    "CubicInterpolation",
    "Interpolation",
    "Jacobi",
    "LineRelaxation",
    "NewtonJacobi",
    "NonlinearOperator",
    "SparseTransfer",
    "StencilOperator",
    "anisotropic",
    "chebyshev_weights",
    "coarse_shape",
    "default_omega",
    "diffusion",
    "dirichlet_lift",
    "grid_points",
    "interpolation_matrix",
    "laplacian",
    "operator_interpolation_matrix",
    "red_black",
    "restriction_matrix",
    "strong_axis",
    "zebra",
]
