"""Names the package accepts for its string arguments, in one module that imports nothing.

The modules that check these arguments import them from here, and so does the command
line, whose ``--help`` must not import torch.
"""

from __future__ import annotations

__all__ = [
    "AMG_METHODS",
    "COARSE",
    "CYCLES",
    "DEVICE_KINDS",
    "DIMS",
    "EXPORT_FORMATS",
    "FMG_INTERPOLATIONS",
    "INTERPOLATIONS",
    "LEARN_PROBLEMS",
    "MATRIX_PROBLEMS",
    "PRECISIONS",
    "PROBLEMS",
    "SHARING",
    "SMOOTHERS",
    "SPLITS",
]

# mgnet.multigrid.make_problem(name, dim): the model problems and their dimensions
PROBLEMS = ("poisson", "anisotropic", "diffusion", "jump", "nonlinear")
# mgnet solve --method: smoothed aggregation, Ruge-Stueben (PyAMG's hierarchy on the
# cycle), geometric multigrid on a grid problem
AMG_METHODS = ("sa", "rs", "gmg")
# the kinds of device a solver or a run may be put on (a run also takes "auto" and "cuda:N")
DEVICE_KINDS = ("cpu", "cuda")
# mgnet.multigrid.matrices.make_matrix_problem(name): sparse problems for algebraic multigrid
MATRIX_PROBLEMS = ("fem-poisson", "fem-jump", "fem-elasticity", "darcy", "rotated-anisotropy")
DIMS = (1, 2, 3)
# mgnet.multigrid.MultigridSolver(smoother=, coarse=, precision=, interpolation=)
SMOOTHERS = ("jacobi", "rbgs", "chebyshev", "line")
# mgnet.multigrid.learn_smoother(problem=, sharing=): what a smoother is trained on, and
# whether its kernels are shared by all levels or one set per level
LEARN_PROBLEMS = ("poisson", "anisotropic", "jump")
SHARING = ("shared", "level")
COARSE = ("rediscretize", "galerkin")
PRECISIONS = ("float64", "float32", "mixed")
# MultigridSolver(interpolation=): the textbook P, or P built from the operator
INTERPOLATIONS = ("linear", "operator")
# MultilevelSolver.fmg(interpolation=): cubic where the grid allows, or the cycle's own P
FMG_INTERPOLATIONS = ("cubic", "cycle")
# cycles with an up-sweep: MultigridSolver.solve(cycle=), mgnet.visualize.inspect_solver
CYCLES = ("V", "W", "F")
# mgnet.train.evaluate_checkpoint(split=)
SPLITS = ("test", "val")
# mgnet.export.export_model(format=)
EXPORT_FORMATS = ("onnx", "torchscript")
