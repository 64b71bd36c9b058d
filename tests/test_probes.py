"""mgnet.probes: a linear module's matrix, diagonal, largest eigenvalue and adjoint, each
against an independent computation."""

import numpy as np
import pytest
import torch
from torch import nn

from mgnet.probes import Adjoint, operator_diagonal, operator_matrix, power_iteration
from mgnet.stencils import diffusion, laplacian


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


def test_operator_matrix_and_diagonal_of_a_stencil():
    op = diffusion((5, 4), lambda x, y: 1 + x + 3 * y * y)
    M = operator_matrix(op, (1, 5, 4)).numpy()
    np.testing.assert_allclose(M, op.to_sparse().toarray(), rtol=1e-14)
    like = torch.zeros(2, 1, 5, 4, dtype=torch.float64)
    diag = operator_diagonal(op, like)
    np.testing.assert_allclose(diag[1, 0].numpy().ravel(), np.diag(M), rtol=1e-14)
    with pytest.raises(ValueError, match="radius"):
        operator_diagonal(op, like, radius=-1)
    with pytest.raises(ValueError, match="feature_shape"):
        operator_matrix(op, (1, 200, 200))


def test_power_iteration_finds_the_largest_eigenvalue():
    op = laplacian(15, dim=2)
    lam = power_iteration(op, torch.zeros(1, 1, 15, 15, dtype=torch.float64), iters=400)
    exact = 8 * 16**2 * np.sin(15 * np.pi / 32) ** 2  # 4/h^2 (sin^2 + sin^2), h = 1/16
    assert lam == pytest.approx(exact, rel=1e-3)
    assert lam == pytest.approx(np.linalg.eigvalsh(op.to_sparse().toarray()).max(), rel=1e-3)
    with pytest.raises(ValueError, match="iters"):
        power_iteration(op, torch.zeros(1, 1, 15, 15), iters=0)
