"""The solver on a CUDA device: the same answers as on the CPU, in every precision, with
the coarse factor and the sparse transfers on the device. Skipped without CUDA."""

import numpy as np
import pytest
import torch

from mgnet.multigrid import MultigridSolver, make_problem
from mgnet.stencils import diffusion

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["float64", "float32", "mixed"])
def test_solver_on_cuda_matches_the_cpu(precision):
    prob = make_problem("diffusion", 2, 127)
    cpu = MultigridSolver(prob.A, device="cpu").solve(prob.f, tol=1e-10)
    ml = MultigridSolver(prob.A, precision=precision, device="cuda")
    assert ml.levels[-1].presmoother[0].L.device.type == "cuda"  # the coarse factor
    tol = 1e-5 if precision == "float32" else 1e-10
    x = ml.solve(prob.f, tol=tol)
    assert ml.converged and x.device.type == "cuda"
    err = float((x.double().cpu() - cpu).norm() / cpu.norm())
    assert err < (1e-4 if precision == "float32" else 1e-9)
    y = ml.solve(prob.f.numpy().ravel(), tol=tol, accel="cg")  # NumPy in, NumPy out
    assert isinstance(y, np.ndarray) and ml.converged


def test_operator_interpolation_on_cuda():
    n = 63
    a = lambda x, y: torch.where((x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.08, 1e6, 1.0)  # noqa: E731
    A = diffusion((n, n), a)
    f = torch.ones(n, n, dtype=torch.float64)
    cpu = MultigridSolver(A, interpolation="operator", device="cpu")
    ref = cpu.solve(f, tol=1e-10, accel="cg")
    ml = MultigridSolver(A, interpolation="operator", device="cuda")
    assert ml.levels[0].P.M.device.type == "cuda"
    x = ml.solve(f, tol=1e-10, accel="cg")
    assert ml.converged and ml.iterations == cpu.iterations
    assert float((x.cpu() - ref).norm() / ref.norm()) < 1e-9
