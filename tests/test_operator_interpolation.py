"""Operator-dependent interpolation (black-box multigrid): it is linear interpolation for the
Laplacian, follows the fluxes across a jump of the coefficient, and keeps the solver's
convergence on Darcy flow whose permeability jumps by 1e4 and 1e6."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from mgnet.multigrid import MultigridSolver
from mgnet.stencils import (
    SparseTransfer,
    diffusion,
    interpolation_matrix,
    laplacian,
    operator_interpolation_matrix,
)

torch.set_num_threads(1)


def darcy_coefficient(n: int, contrast: float, seed: int = 0) -> torch.Tensor:
    """a = contrast where a smooth Gaussian random field is >= 0, else 1, on the grid with
    its boundary ((n + 2)^2 nodes): a permeability that jumps across a random interface."""
    g = np.random.default_rng(seed)
    m = n + 2
    k = np.fft.fftfreq(m) * m
    spectrum = (k[:, None] ** 2 + k[None, :] ** 2 + 9.0) ** -2
    psi = np.real(np.fft.ifft2(np.fft.fft2(g.standard_normal((m, m))) * spectrum))
    return torch.from_numpy(np.where(psi >= 0, contrast, 1.0))


@pytest.mark.parametrize(
    "op",
    [
        laplacian(15, dim=1),
        laplacian(15, dim=2),
        laplacian((7, 15), dim=2),
        laplacian(16, dim=2, bc="periodic", c=0.0),
    ],
    ids=["1d", "2d", "2d-rect", "2d-periodic"],
)
def test_it_is_linear_interpolation_for_the_laplacian(op):
    P = operator_interpolation_matrix(op)
    ref = interpolation_matrix(op.shape, op.bc)
    assert abs(P - ref).max() < 1e-14


def test_weights_follow_the_fluxes_across_a_jump_1d():
    # 5 interior nodes (coarse nodes: fine 1 and 3), a on the 7 nodes with boundary
    a = torch.tensor([1.0, 1.0, 1.0, 100.0, 100.0, 100.0, 100.0], dtype=torch.float64)
    P = operator_interpolation_matrix(diffusion(5, a, dim=1)).toarray()
    # fine node 2 (a = 100) sits between coarse node 0 (fine 1, a = 1) and coarse node 1
    # (fine 3, a = 100): the faces are harmonic means, 2 * 100 / 101 left and 100 right
    left, right = 2 * 100 / 101, 100.0
    assert P[2, 0] == pytest.approx(left / (left + right))  # 0.019
    assert P[2, 1] == pytest.approx(right / (left + right))  # 0.981
    # fine node 4 (a = 100) between coarse node 1 and the boundary (a = 100): weight 1/2
    assert P[4, 1] == pytest.approx(0.5) and P[1, 0] == 1.0 and P[3, 1] == 1.0
    linear = interpolation_matrix((5,)).toarray()
    assert abs(P[2, 1] - linear[2, 1]) > 0.4  # linear interpolation ignores the jump


def test_cell_centres_solve_their_own_row():
    n = 31
    A = diffusion(n, darcy_coefficient(n, 1e4), dim=2)
    P = operator_interpolation_matrix(A)
    AP = (A.to_sparse() @ P).toarray()
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    centres = ((i % 2 == 0) & (j % 2 == 0)).ravel()  # both indices off the coarse grid
    assert np.abs(AP[centres]).max() < 1e-9 * np.abs(AP).max()
    assert np.abs(AP[~centres]).max() > 1e-3 * np.abs(AP).max()
    # weights between 0 and 1 that sum to 1 away from the boundary (no zero-order term)
    assert P.min() >= 0 and P.max() <= 1
    rows = np.asarray(P.sum(axis=1)).ravel().reshape(n, n)
    np.testing.assert_allclose(rows[2:-2, 2:-2], 1.0, rtol=1e-12)


@pytest.mark.parametrize("contrast", [1e4, 1e6])
def test_darcy_with_jumps_converges_with_operator_interpolation(contrast):
    n = 63
    A = diffusion(n, darcy_coefficient(n, contrast), dim=2)
    f = torch.ones(n, n, dtype=torch.float64)
    ml = MultigridSolver(A, interpolation="operator", device="cpu")
    assert ml.coarse == "galerkin" and isinstance(ml.levels[0].P, SparseTransfer)
    x = ml.solve(f, tol=1e-8, accel="cg")
    assert ml.converged and ml.iterations <= 13  # measured 11 (1e4) and 12 (1e6)
    exact = spla.spsolve(A.to_sparse().tocsc(), f.numpy().ravel())
    assert np.linalg.norm(x.numpy().ravel() - exact) <= 1e-7 * np.linalg.norm(exact)
    ml.solve(f, tol=1e-8, maxiter=40)  # the V-cycle alone converges too
    assert ml.converged and ml.iterations <= 20  # measured 18
    # the textbook hierarchy needs twice the CG iterations (Galerkin) or fails (rediscretized)
    linear = MultigridSolver(A, coarse="galerkin", device="cpu")
    linear.solve(f, tol=1e-8, accel="cg", maxiter=60)
    assert linear.iterations >= 22  # measured 25 (1e4) and 28 (1e6)
    rediscretized = MultigridSolver(A, device="cpu")
    rediscretized.solve(f, tol=1e-8, accel="cg", maxiter=60)
    assert not rediscretized.converged


def test_operator_interpolation_in_float32_and_mixed_precision():
    n = 63
    A = diffusion(n, darcy_coefficient(n, 1e4), dim=2)
    f = torch.ones(n, n, dtype=torch.float64)
    ml = MultigridSolver(A, interpolation="operator", precision="mixed", device="cpu")
    assert ml.levels[0].P.M.dtype == torch.float32
    x = ml.solve(f, tol=1e-10, accel="cg")
    assert ml.converged and float((f - A(x.view(1, 1, n, n))).norm() / f.norm()) <= 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("contrast", [1e4, 1e6])
def test_darcy_255_reaches_1e8_in_at_most_30_pcg_iterations(contrast):
    n = 255
    A = diffusion(n, darcy_coefficient(n, contrast), dim=2)
    ml = MultigridSolver(A, interpolation="operator", device="cpu")
    ml.solve(torch.ones(n, n, dtype=torch.float64), tol=1e-8, accel="cg")
    assert ml.converged and ml.iterations <= 13  # measured 11 (1e4) and 12 (1e6); target 30


def test_bad_combinations_are_one_line_errors():
    with pytest.raises(ValueError, match="interpolation: 'cubic' is not one of linear, operator"):
        MultigridSolver(laplacian(15, dim=2), interpolation="cubic")
    with pytest.raises(ValueError, match="coarse: operator-dependent interpolation goes with"):
        MultigridSolver(laplacian(15, dim=2), interpolation="operator", coarse="rediscretize")
    with pytest.raises(ValueError, match="interpolation: 'operator' is built in 1D and 2D"):
        MultigridSolver(laplacian(7, dim=3), interpolation="operator")
    with pytest.raises(ValueError, match="interpolation: 'operator' needs a linear operator"):
        from mgnet.multigrid import make_problem

        MultigridSolver(make_problem("nonlinear", 2, 15).A, interpolation="operator")
