"""The solver's in-place cycle (fused B.update_, P.add_to, blocked residuals) computes what
the allocating cycle computes, u + B (f - A u) and u + P e, on grids large enough to take
the blocked paths (more than 65,536 nodes)."""

import pytest
import torch

from mgnet.multigrid import MultigridSolver, make_problem
from mgnet.stencils import Interpolation, anisotropic, diffusion, laplacian

F64 = torch.float64


def operators():
    return {
        "5-point 2D": laplacian((301, 299)),
        "9-point 2D": laplacian((271, 271), points=9),
        "7-point 3D": laplacian((47, 45, 43)),
        "periodic 2D": laplacian((512, 256), bc="periodic", c=1.0),
        "anisotropic 2D": anisotropic((271, 273), eps=(1.0, 0.1)),
        "diffusion 2D": diffusion((271, 271), lambda x, y: 1 + x * y),
    }


OPS = list(operators())


@pytest.mark.parametrize("smoother", ["rbgs", "jacobi", "chebyshev"])
@pytest.mark.parametrize("name", OPS)
def test_inplace_cycle_equals_allocating_cycle(name, smoother):
    A = operators()[name]
    assert A.unknowns > 65_536
    solver = MultigridSolver(A, smoother=smoother, nu=(2, 1), device="cpu")
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 1, *A.shape, generator=g, dtype=F64)
    x0 = torch.randn(2, 1, *A.shape, generator=g, dtype=F64)
    with torch.no_grad():
        reference = solver.cycle(f, x0.clone(), shape="V")  # allocating: u + B(f - A u)
        x = x0.clone()
        fused = solver.cycle(f, x, shape="V", inplace=True)
    assert fused.data_ptr() == x.data_ptr(), "the in-place cycle should update u itself"
    scale = reference.abs().max()
    assert (fused - reference).abs().max() <= 1e-12 * scale
    # and the cycle did something: it is not the initial guess
    assert (reference - x0).abs().max() > 1e-3 * scale


def test_inplace_fas_cycle_equals_allocating_cycle():
    prob = make_problem("nonlinear", 2, 511)
    solver = MultigridSolver(prob.A, smoother="rbgs", device="cpu")
    x0 = torch.zeros_like(prob.f)
    with torch.no_grad():
        reference = solver.cycle(prob.f, x0.clone(), shape="V")
        fused = solver.cycle(prob.f, x0.clone(), shape="V", inplace=True)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(511, 511), (255,) * 1, (63, 63, 63), (512, 512)])
def test_interpolation_add_to_equals_u_plus_P_e(shape):
    bc = "periodic" if shape[0] % 2 == 0 else "dirichlet"
    P = Interpolation(shape, bc=bc)
    coarse = tuple(n // 2 if bc == "periodic" else (n - 1) // 2 for n in shape)
    g = torch.Generator().manual_seed(1)
    e = torch.randn(2, 1, *coarse, generator=g, dtype=F64)
    u = torch.randn(2, 1, *shape, generator=g, dtype=F64)
    expected = u + P(e)
    out = P.add_to(u.clone(), e)
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)


def test_inplace_never_writes_f_or_the_callers_tensors_when_recording():
    from mgnet.core import CycleRecord

    A = laplacian((301, 301))
    solver = MultigridSolver(A, device="cpu")
    f = torch.randn(1, 1, 301, 301, dtype=F64)
    f_copy = f.clone()
    x = torch.randn(1, 1, 301, 301, dtype=F64)
    x_copy = x.clone()
    with torch.no_grad():
        solver.cycle(f, x, shape="V", inplace=True, record=CycleRecord())
    assert torch.equal(x, x_copy), "a recorded cycle must not overwrite the initial guess"
    assert torch.equal(f, f_copy)
    with torch.no_grad():
        solver.cycle(f, x, shape="V", inplace=True)
    assert torch.equal(f, f_copy), "f is never written"
