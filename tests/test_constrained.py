"""mgnet.constrained: A u = f with u >= 0 by the projected smoothing step, against SciPy's
NNLS; the constrained classifier keeps every feature nonnegative."""

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from mgnet.constrained import projected_smoothing
from mgnet.core import CycleRecord, residual
from mgnet.models import count_parameters, create_model
from mgnet.probes import operator_diagonal, operator_matrix


def stencil(center: float, n_dim: int = 2) -> nn.Module:
    """A fixed symmetric positive-definite 5-point stencil with Dirichlet (zero) padding."""
    A = nn.Conv2d(1, 1, 3, padding=1, bias=False).double()
    w = torch.tensor([[0, -1, 0], [-1, center, -1], [0, -1, 0]], dtype=torch.float64)
    A.weight.data.copy_(w.view(1, 1, 3, 3))
    A.weight.requires_grad_(False)
    return A


def energy_reference(M: np.ndarray, f: np.ndarray) -> np.ndarray:
    """argmin_{u >= 0} u.M u / 2 - f.u via scipy's NNLS: with M = L L^T it is
    argmin_{u >= 0} ||L^T u - L^-1 f||^2."""
    L = np.linalg.cholesky(M)
    u, _ = scipy.optimize.nnls(L.T, np.linalg.solve(L, f))
    return u


def problem(center=4.0, n=10, seed=0):
    A = stencil(center)
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
    M = operator_matrix(A, (1, n, n)).numpy()
    return A, f, M


@pytest.mark.parametrize("B,omega", [("jacobi", None), ("jacobi", 1.0), ("richardson", None)])
def test_projected_smoothing_matches_nnls_energy_reference(B, omega):
    A, f, M = problem(center=4.0)
    ref = energy_reference(M, f.flatten().numpy())
    result = projected_smoothing(A, f, B=B, omega=omega, tol=1e-12)
    assert result.converged
    u = result.u.flatten().numpy()
    assert u.min() >= 0
    np.testing.assert_allclose(u, ref, atol=1e-6, rtol=0)
    # the constraint is active: the unconstrained solution has negative entries, and
    # projecting it onto u >= 0 is far from the constrained solution
    free = np.linalg.solve(M, f.flatten().numpy())
    assert free.min() < -0.1
    assert 10 < (ref == 0).sum() < ref.size - 10
    assert np.abs(np.maximum(free, 0) - ref).max() > 0.05


def test_projected_landweber_matches_scipy_nnls():
    A, f, M = problem(center=6.0)
    ref, _ = scipy.optimize.nnls(M, f.flatten().numpy())
    result = projected_smoothing(A, f, B="adjoint", tol=1e-12)
    assert result.converged
    np.testing.assert_allclose(result.u.flatten().numpy(), ref, atol=1e-6, rtol=0)
    assert (ref == 0).sum() > 5


def test_unconstrained_solution_is_recovered_when_it_is_nonnegative():
    A, _, M = problem(center=4.0)
    u_true = torch.rand(1, 1, 10, 10, dtype=torch.float64) + 0.1
    f = A(u_true).detach()
    result = projected_smoothing(A, f, B="jacobi", omega=1.0, tol=1e-12)
    torch.testing.assert_close(result.u, u_true, atol=1e-8, rtol=0)


def test_projected_iteration_is_the_core_step_with_projection():
    A, f, _ = problem(center=4.0, n=6)
    diag = operator_diagonal(A, torch.zeros_like(f))
    assert torch.all(diag == 4.0)
    B = nn.Identity()
    result = projected_smoothing(A, f, B=B, omega=0.2, maxiter=5, check_every=5)
    ref = None
    for _ in range(5):
        ref = torch.clamp_min((0 if ref is None else ref) + 0.2 * residual(A, ref, f), 0)
    assert result.iterations == 5
    torch.testing.assert_close(result.u, ref)
    assert not result.converged


def test_projected_smoothing_bad_arguments():
    A, f, _ = problem(n=4)
    with pytest.raises(ValueError, match="B: 'gauss' is not one of jacobi"):
        projected_smoothing(A, f, B="gauss")
    with pytest.raises(ValueError, match="omega: must be positive"):
        projected_smoothing(A, f, omega=-1.0)
    with pytest.raises(ValueError, match="f: expected a"):
        projected_smoothing(A, f.flatten())
    with pytest.raises(ValueError, match="u0: expected shape"):
        projected_smoothing(A, f, u0=torch.zeros(3))
    wide = nn.Conv2d(1, 2, 3, padding=1, bias=False).double()
    with pytest.raises(ValueError, match="needs a square A"):
        projected_smoothing(wide, f)
    neg = stencil(-4.0)
    with pytest.raises(ValueError, match="positive diagonal"):
        projected_smoothing(neg, f)


# ------------------------------------------------------ the constrained classifier variant
def test_constrained_classifier_keeps_every_feature_nonnegative():
    torch.manual_seed(0)
    model = create_model("mgnet_digits_constrained").eval()
    full = create_model("mgnet_digits")
    assert count_parameters(model) == count_parameters(full) == 575_594
    assert model.spec == "mgnet[2,2,2]-[32,64,128]-Bl-proj"
    # ReLU only where the constraint needs it: the projection and after Pi
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    steps = [s for lv in model.cycle.levels for s in lv.pre]
    assert len(relus) == len(steps) + len(model.cycle.transfers) == 8
    assert all(isinstance(s.project, nn.ReLU) for s in steps)
    assert all(isinstance(s.sigma_in, nn.BatchNorm2d) for s in steps)
    x = torch.randn(5, 1, 8, 8)
    record = CycleRecord()
    with torch.no_grad():
        model.features(x, record=record)
    us = [e["u"] for e in record.events if e["u"] is not None]
    fs = [e["f"] for e in record.events]
    assert len(us) == 6 + 2 + 2  # steps, restrictions (Pi u), starts of levels 2 and 3
    assert all(u.min() >= 0 for u in us)
    assert min(f.min() for f in fs) < 0  # data f is not constrained
    # the full model has no projection at all
    assert all(s.project is None for lv in full.cycle.levels for s in lv.pre)
