"""Without sigma, the registry's mgnet_cifar topology at one channel is a multigrid cycle."""

import pytest
import torch

from mgnet.core import CycleRecord
from mgnet.models import create_model
from mgnet.multigrid import MultigridSolver
from mgnet.stencils import kernels, laplacian
from mgnet.theory import load_multigrid

ONE = (1, 1, 1, 1)


def linear_cifar_topology():
    """mgnet_cifar (MgNet[2,2,2,2]-B^l: 4 levels, 2 steps, shared A^l and B^l) at 1 channel,
    sigma switched off."""
    model = create_model(
        "mgnet_cifar", in_channels=1, channels_u=ONE, channels_f=ONE, sigma="linear"
    )
    assert model.spec == "mgnet[2,2,2,2]-1-Bl-linear"
    return model.double()


def poisson_solver(n=15):
    return MultigridSolver(laplacian((n, n)), smoother="jacobi", nu=(2, 2), device="cpu")


def test_down_sweep_equals_the_solvers_down_sweep():
    solver = poisson_solver()
    net = load_multigrid(linear_cifar_topology(), solver)
    # the network's own convolutions now hold the stencils. The inputs are seeded: the
    # element-wise check below (atol=0) sees rounding-level cancellation in A u for about
    # one random draw in nine, and a test must give the same verdict on every run.
    torch.manual_seed(0)
    u = torch.randn(3, 1, 15, 15, dtype=torch.float64)
    torch.testing.assert_close(net.cycle.levels[0].A(u), solver.levels[0].A(u), rtol=1e-13, atol=0)
    f = torch.randn(3, 1, 15, 15, dtype=torch.float64)
    mine, theirs = CycleRecord(residuals=True), CycleRecord(residuals=True)
    with torch.no_grad():
        out = net.cycle(f, record=mine)
        solver.cycle(f, record=theirs, shape="down")
    # the same sequence of states; the solver's coarsest level is one direct solve, the
    # network's two Jacobi steps with w = 1 on a single unknown (the first already exact)
    key = [(e["level"], e["phase"], e["step"]) for e in mine.events]
    assert key[:-1] == [(e["level"], e["phase"], e["step"]) for e in theirs.events]
    assert [e["f"].shape[-1] for e in mine.events if e["phase"] == "start"] == [15, 7, 3, 1]
    for a, b in zip(mine.events, theirs.events):
        assert (a["u"] is None) == (b["u"] is None)
        torch.testing.assert_close(a["f"], b["f"], rtol=1e-12, atol=1e-12)
        if a["u"] is not None:
            torch.testing.assert_close(a["u"], b["u"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, theirs.final(3)["u"], rtol=1e-12, atol=1e-12)
    assert mine.final(3)["residual"].max() < 1e-12  # exact coarse solve


def test_with_the_up_sweep_it_converges_at_the_solvers_rate():
    solver = poisson_solver()
    net = load_multigrid(linear_cifar_topology(), solver, up_sweep=True)
    g = torch.Generator().manual_seed(0)
    f = torch.randn(1, 1, 15, 15, generator=g, dtype=torch.float64)
    reference: list[float] = []
    # both sides in PyTorch's arithmetic: the compiled CPU kernels (mgnet.stencils.kernels)
    # round in another order, which near 1e-10 of ||f|| is 1e-6 of the residual itself
    with kernels.disabled():
        solver.solve(f, tol=1e-10, residuals=reference)
    ours = [float(f.norm())]
    u = None
    with torch.no_grad(), kernels.disabled():
        for _ in range(len(reference) - 1):
            u = net.cycle(f, u, shape="V")
            ours.append(float((f - solver.levels[0].A(u)).norm()))
    assert len(ours) > 8
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(reference), rtol=1e-6, atol=0)
    rate_net = (ours[-1] / ours[0]) ** (1 / (len(ours) - 1))
    rate_solver = solver.convergence_factor(reference)
    assert rate_net == pytest.approx(rate_solver, rel=1e-6)
    assert rate_net < 0.25  # a real multigrid rate, independent of h, not Jacobi's ~0.97


def test_refusals_name_the_argument():
    solver = poisson_solver()
    with pytest.raises(ValueError, match="sigma must be switched off"):
        load_multigrid(
            create_model("mgnet_cifar", in_channels=1, channels_u=ONE, channels_f=ONE), solver
        )
    with pytest.raises(ValueError, match="one channel everywhere"):
        load_multigrid(create_model("mgnet[2,2,2,2]-4-linear", in_channels=1), solver)
    with pytest.raises(ValueError, match="choose the grid n = 2\\^4 - 1 = 15"):
        load_multigrid(linear_cifar_topology(), poisson_solver(31))
    rbgs = MultigridSolver(laplacian((15, 15)), smoother="rbgs", nu=(2, 2), device="cpu")
    with pytest.raises(ValueError, match="smoother='jacobi'"):
        load_multigrid(linear_cifar_topology(), rbgs)
