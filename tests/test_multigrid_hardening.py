"""The solver never reports success it did not reach: right-hand sides whose norm overflows,
non-finite input, CG breakdown, truthful `converged` and stop reasons, mixed precision on
a variable coefficient, and a coarsest-grid factorization that stays cheap."""

import json

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from mgnet.cli import main
from mgnet.multigrid import STOP_REASONS, MultigridSolver, make_problem
from mgnet.stencils import DirectSolve, laplacian

torch.set_num_threads(1)


def _rel(a, b) -> float:
    a, b = np.ravel(np.asarray(a)), np.ravel(np.asarray(b))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -------------------------------------------------------------- overflowing norms
@pytest.mark.parametrize("accel", [None, "cg"])
def test_a_right_hand_side_whose_norm_overflows_is_solved(accel):
    prob = make_problem("poisson", 2, 31)
    ml = MultigridSolver(prob.A, device="cpu")
    ref = ml.solve(prob.f, tol=1e-10, accel=accel)
    huge = prob.f * 1e160  # finite, but ||f||^2 overflows float64
    assert not torch.isfinite((huge * huge).sum())
    x = ml.solve(huge, tol=1e-10, accel=accel)
    assert ml.converged and ml.reason == "converged" and ml.iterations >= 5
    assert _rel(x / 1e160, ref) < 1e-9  # not x = 0 reported as converged
    assert np.isfinite(ml.history).all() and ml.history[0] > 1e160
    tiny = ml.solve(prob.f * 1e-200, tol=1e-10, accel=accel)  # ||f||^2 underflows
    assert ml.converged and _rel(tiny * 1e200, ref) < 1e-9


def test_float32_cycles_with_a_right_hand_side_beyond_float32_norms():
    prob = make_problem("poisson", 2, 63)
    ref = MultigridSolver(prob.A, device="cpu").solve(prob.f, tol=1e-10)
    ml = MultigridSolver(prob.A, precision="float32", device="cpu")
    x = ml.solve(prob.f * 1e19, tol=1e-4)  # ||f||^2 overflows float32
    assert x.dtype == torch.float32 and ml.converged and ml.iterations >= 3
    assert _rel(x.double() / 1e19, ref) < 1e-4
    mixed = MultigridSolver(prob.A, precision="mixed", device="cpu")
    x = mixed.solve(prob.f * 1e160, tol=1e-10)  # the float64 residual cast to float32
    assert mixed.converged and _rel(x / 1e160, ref) < 1e-9


def test_non_finite_input_is_refused_in_one_line():
    ml = MultigridSolver(laplacian(15, dim=2), device="cpu")
    f = torch.ones(15, 15, dtype=torch.float64)
    for bad in (float("nan"), float("inf")):
        g = f.clone()
        g[3, 4] = bad
        with pytest.raises(ValueError, match=r"^b: holds NaN or inf"):
            ml.solve(g)  # not "the cycle diverges"
        with pytest.raises(ValueError, match=r"^b: holds NaN or inf"):
            ml.solve(g, accel="cg")
        with pytest.raises(ValueError, match=r"^b: holds NaN or inf"):
            ml.fmg(g.numpy())
        with pytest.raises(ValueError, match=r"^x0: holds NaN or inf"):
            ml.solve(f, x0=g)


# ------------------------------------------------------------------ stop reasons
def test_cg_breakdown_on_an_indefinite_operator_is_said():
    A = laplacian(31, dim=2, c=-100.0)  # -Laplacian - 100: eigenvalues of both signs
    ml = MultigridSolver(A, device="cpu")
    f = torch.ones(31, 31, dtype=torch.float64)
    ml.solve(f, accel="cg", maxiter=50)
    assert ml.reason == "breakdown" and not ml.converged and ml.iterations < 50
    ml.solve(f, maxiter=50)
    assert ml.reason == "diverged" and not ml.converged and ml.history[-1] > ml.history[0]
    assert set(STOP_REASONS) == {"converged", "maxiter", "stagnated", "diverged", "breakdown"}


def test_converged_is_truthful_for_solve_cg_and_fmg():
    prob = make_problem("poisson", 2, 63)
    ml = MultigridSolver(prob.A, device="cpu")
    ml.solve(prob.f, tol=1e-8)
    assert ml.converged and ml.reason == "converged"
    ml.solve(prob.f, tol=1e-8, maxiter=2)
    assert not ml.converged and ml.reason == "maxiter" and ml.iterations == 2
    ml.solve(prob.f, tol=1e-8, maxiter=2, accel="cg")
    assert not ml.converged and ml.reason == "maxiter"
    ml.solve(prob.f, tol=1e-8)
    u = ml.fmg(prob.f)  # one pass: discretization accuracy, not a residual of 1e-8
    rel = float((prob.f - prob.A(u)).norm() / prob.f.norm())
    assert rel > 1e-6 and not ml.converged and ml.reason == "maxiter"  # not left over
    assert ml.iterations == 1 and ml.history[-1] / ml.history[0] == pytest.approx(rel)
    u = ml.fmg(prob.f, tol=1e-8, maxiter=20)  # then cycles until tol
    assert ml.converged and float((prob.f - prob.A(u)).norm() / prob.f.norm()) <= 1e-8
    ml32 = MultigridSolver(prob.A, precision="float32", device="cpu")
    ml32.solve(prob.f, tol=1e-12, maxiter=60)
    assert ml32.reason == "stagnated" and not ml32.converged


def test_mixed_precision_keeps_the_variable_coefficient_in_float64():
    prob = make_problem("diffusion", 2, 63)
    ml = MultigridSolver(prob.A, precision="mixed", device="cpu")
    x = ml.solve(prob.f, tol=1e-12)
    assert ml.converged and x.dtype == torch.float64
    true = float((prob.f - prob.A(x)).norm() / prob.f.norm())  # the caller's float64 A
    assert true <= 1e-11, true
    exact = spla.spsolve(prob.A.to_sparse().tocsc(), prob.f.numpy().ravel())
    assert _rel(x.numpy(), exact) < 1e-10


# --------------------------------------------------------- coarsest-grid factorization
def test_coarse_solve_is_factorized_not_inverted():
    small = laplacian(7, dim=2)
    B = DirectSolve(small)
    assert B.kind == "dense Cholesky" and not hasattr(B, "inv")
    big = laplacian(64, dim=2)  # 4096 unknowns: a dense inverse and SVD took 47 s here
    B = DirectSolve(big)
    assert B.kind == "sparse LU"
    assert sum(b.numel() for b in B.buffers()) == 0
    g = torch.Generator().manual_seed(0)
    for op, solve in ((small, DirectSolve(small)), (big, B)):
        r = torch.randn(2, 1, *op.shape, generator=g, dtype=torch.float64)
        x = solve(r)
        M = op.to_sparse().tocsc()
        for k in range(2):
            assert _rel(x[k].numpy(), spla.spsolve(M, r[k].numpy().ravel())) < 1e-12
    ml = MultigridSolver(big, device="cpu")  # a size that does not coarsen: solved directly
    assert len(ml.levels) == 1 and sum(b.numel() for b in ml.cycle.buffers()) < 64**2 * 10


def test_coarse_solve_of_indefinite_and_singular_operators():
    helmholtz = laplacian(7, dim=2, c=-200.0)
    B = DirectSolve(helmholtz)
    assert B.kind == "dense LU"
    r = torch.randn(1, 1, 7, 7, dtype=torch.float64)
    assert (
        _rel(B(r).numpy(), spla.spsolve(helmholtz.to_sparse().tocsc(), r.numpy().ravel())) < 1e-12
    )
    periodic = laplacian(8, dim=2, bc="periodic")  # singular: constants in the null space
    B = DirectSolve(periodic)
    r = r.new_tensor(np.random.default_rng(1).standard_normal((1, 1, 8, 8)))
    x = B(r)
    ref = np.linalg.pinv(periodic.to_sparse().toarray()) @ r.numpy().ravel()
    assert _rel(x.numpy(), ref) < 1e-10  # the pseudo-inverse's (zero-mean) solution
    with pytest.raises(ValueError, match="A: the coarsest-grid operator .* is singular"):
        DirectSolve(laplacian(1, dim=2, c=-16.0))  # 4 / h^2 - 16 = 0 with h = 1/2


def test_sizes_that_coarsen_badly_are_refused_with_the_sizes_that_work():
    with pytest.raises(ValueError, match=r"shape: \(24, 24, 24\) .* 2\^k - 1 \(e.g. 255"):
        MultigridSolver(laplacian(24, dim=3), device="cpu")  # 13,824 unknowns in 3D
    with pytest.raises(ValueError, match=r"shape: \(1000, 1000\) .*1023"):
        MultigridSolver(laplacian(1000, dim=2), device="cpu")


# -------------------------------------------------------------------------- CLI
def test_cli_exits_non_zero_when_the_tolerance_was_not_met(capsys):
    assert main(["solve", "--n", "63", "--maxiter", "2", "--json"]) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert not out["converged"] and out["reason"] == "maxiter" and out["iterations"] == 2
    assert "did not reach --tol" in captured.err and "\n" not in captured.err.strip()
    assert main(["solve", "--n", "63", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "converged"
    assert main(["solve", "--n", "63", "--cycle", "fmg", "--json"]) == 1  # one pass: 1e-3
    assert main(["solve", "--n", "63", "--cycle", "fmg", "--maxiter", "20", "--json"]) == 0


def test_cli_plot_into_a_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "picture.png"
    folder.mkdir()
    for target in (folder, tmp_path / "missing" / "x.png"):
        assert main(["solve", "--n", "15", "--plot", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--plot" in err
