"""mgnet.theory: residual form = pre-activation ResNet; the projected iteration for u >= 0."""

import numpy as np
import pytest
import scipy.optimize
import torch
from torch import nn

from mgnet.core import CycleRecord, MgCycle
from mgnet.models import PreActResNet, count_parameters, create_model
from mgnet.theory import (
    Adjoint,
    level_to_preact,
    operator_diagonal,
    operator_matrix,
    preact_to_level,
    projected_smoothing,
    residual,
    step_to_preact,
)


def randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def mgnet_level(nu=3, c=6, spec_tokens="Bli", seed=0):
    torch.manual_seed(seed)
    model = create_model(f"mgnet[{nu}]-{c}-{spec_tokens}", in_channels=c).double()
    randomize_bn(model, seed)
    return model.cycle.levels[0]


def run_level(level, f, u0=None):
    return MgCycle([level], [])(f, u0)


# ------------------------------------------------------------- section 1: residual form
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("share_B", ["Bl", "Bli"])
def test_mgnet_level_equals_preact_stage_in_residual_form(train, share_B):
    level = mgnet_level(spec_tokens=share_B).train(train)
    stage = level_to_preact(level).train(train)
    torch.manual_seed(1)
    f, u0 = torch.randn(4, 6, 8, 8, dtype=torch.float64), torch.randn(4, 6, 8, 8).double()
    r0 = residual(level.A, u0, f)
    out_preact = stage(r0)
    u = run_level(level, f, u0)
    r_mgnet = residual(level.A, u, f)
    assert (r_mgnet - r0).abs().max() > 0.5  # the steps really change the residual
    torch.testing.assert_close(out_preact, r_mgnet, rtol=1e-10, atol=1e-10)
    if train:  # the same tensors went through the same BN: same running statistics
        bn_mgnet = level.pre[1].sigma_in[0]
        torch.testing.assert_close(stage[1].bn1.running_mean, bn_mgnet.running_mean)
        torch.testing.assert_close(stage[1].bn1.running_var, bn_mgnet.running_var)


def test_weight_map_conv2_is_minus_A_and_conv1_is_B():
    level = mgnet_level(nu=2, spec_tokens="Bli")
    stage = level_to_preact(level)
    for block, step in zip(stage, level.pre):
        torch.testing.assert_close(block.conv2.weight, -level.A.weight, rtol=0, atol=0)
        torch.testing.assert_close(block.conv1.weight, step.B.weight, rtol=0, atol=0)
        torch.testing.assert_close(block.bn1.running_mean, step.sigma_in[0].running_mean)
        torch.testing.assert_close(block.bn2.weight, step.sigma_out[0].weight)
    # single step, same statement
    step = level.pre[0]
    r = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    block = step_to_preact(step).eval()
    step.eval()
    torch.testing.assert_close(block(r), r - level.A(step(None, r)))


def tied_preact_stage(nu=3, c=6, seed=0, tie=True):
    torch.manual_seed(seed)
    stage = PreActResNet(blocks=(nu,), width=c, in_channels=c).double().stages[0]
    randomize_bn(stage, seed)
    if tie:
        for block in stage[1:]:
            block.conv2.weight.data.copy_(stage[0].conv2.weight.data)
    return stage


@pytest.mark.parametrize("train", [False, True])
def test_preact_stage_with_tied_conv2_equals_mgnet_level(train):
    stage = tied_preact_stage().train(train)
    level = preact_to_level(stage).train(train)
    assert all(s.A is level.A for s in level.pre)  # one shared A^l
    x = torch.randn(4, 6, 8, 8, dtype=torch.float64)
    u = run_level(level, x)  # u^{l,0} = 0, f^l = x
    torch.testing.assert_close(x - level.A(u), stage(x), rtol=1e-10, atol=1e-10)


def test_round_trip_preact_to_mgnet_to_preact_is_identity():
    stage = tied_preact_stage().eval()
    again = level_to_preact(preact_to_level(stage)).eval()
    for a, b in zip(stage, again):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb
            torch.testing.assert_close(va, vb, rtol=0, atol=0)


def test_the_separating_restriction_is_the_shared_A():
    # pre-act ResNet: one A^{l,i} = -conv2 per block; MgNet refuses it and names the block
    untied = tied_preact_stage(tie=False)
    with pytest.raises(ValueError, match=r"conv2 of block 1 differs.*A\^l"):
        preact_to_level(untied)
    # ... and the tie is a real restriction: tying changes the function
    tied = tied_preact_stage(tie=True)
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    assert (untied.eval()(x) - tied.eval()(x)).abs().max() > 0.1
    # MgNet u-form with one A^{l,i} per step (token Ali) has no residual stream
    with pytest.raises(ValueError, match=r"step 1 uses its own A\^\{l,i\}"):
        level_to_preact(mgnet_level(spec_tokens="Bli-Ali"))
    # parameter budget: a stage of nu blocks carries nu - 1 more A's than the MgNet level
    level = mgnet_level(nu=3, c=6, spec_tokens="Bli")
    stage = level_to_preact(level)
    extra = count_parameters(stage) - count_parameters(level)
    assert extra == 2 * level.A.weight.numel() == 2 * 6 * 6 * 9


def test_residual_form_errors_are_one_line():
    proj_level = create_model("mgnet[2]-4-proj", in_channels=4).cycle.levels[0]
    with pytest.raises(ValueError, match="projected step"):
        level_to_preact(proj_level)
    wide = create_model("mgnet[2]-4:6", in_channels=6).cycle.levels[0]
    with pytest.raises(ValueError, match="c_u = c_f"):
        level_to_preact(wide)
    lin = create_model("mgnet[2]-4-linear", in_channels=4).cycle.levels[0]
    with pytest.raises(ValueError, match="sigma_in"):
        level_to_preact(lin)
    projection_stage = PreActResNet(blocks=(2, 2), width=4).stages[1]
    with pytest.raises(ValueError, match="projection shortcut"):
        preact_to_level(projection_stage)
    with pytest.raises(ValueError, match="Level or a non-empty"):
        level_to_preact([])


# ---------------------------------------------- section 3: constrained data-feature mapping
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


def test_adjoint_is_the_transpose():
    torch.manual_seed(0)
    A = nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
    M = operator_matrix(A.float(), (2, 4, 4))  # assembled in float64 ...
    assert A.weight.dtype == torch.float32  # ... without touching the module
    A = A.double()
    r = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(Adjoint(A)(r).flatten(), M.T @ r.flatten())

    class Twice(nn.Module):  # a non-conv linear module: the generic vector-Jacobian path
        in_channels = 2

        def forward(self, u):
            return A(u) * 2

    torch.testing.assert_close(Adjoint(Twice())(r).flatten(), 2 * M.T @ r.flatten())


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
