"""Zebra line Gauss-Seidel (mgnet.stencils.line) against the textbook iteration in NumPy."""

import numpy as np
import pytest
import scipy.linalg as sla
import torch

from mgnet.core import Step
from mgnet.stencils import anisotropic, diffusion, laplacian
from mgnet.stencils.line import LineRelaxation, strong_axis, zebra


def textbook_half_sweep(M, shape, u, f, axis, parity):
    """Solve, line by line, the equations of every line along `axis` whose index across it
    has the given parity, with the other lines' values frozen (scipy's banded solver)."""
    u = u.copy()
    idx = np.arange(np.prod(shape)).reshape(shape)
    others = [k for k in range(len(shape)) if k != axis]
    for pos in np.ndindex(*[shape[k] for k in others]):
        if sum(pos) % 2 != parity:
            continue
        where = [slice(None)] * len(shape)
        for k, p in zip(others, pos):
            where[k] = p
        rows = idx[tuple(where)].ravel()
        T = M[rows][:, rows].toarray()
        rhs = f.ravel()[rows] - (M[rows] @ u.ravel() - T @ u.ravel()[rows])
        band = np.zeros((3, len(rows)))
        band[0, 1:], band[1], band[2, :-1] = np.diag(T, 1), np.diag(T), np.diag(T, -1)
        u.reshape(-1)[rows] = sla.solve_banded((1, 1), band, rhs)
    return u


@pytest.mark.parametrize(
    "A",
    [
        anisotropic((15, 9), (1, 0.01)),  # lines along axis 0
        anisotropic((9, 12), (0.05, 1)),  # lines along axis 1, an even size
        diffusion((11, 13), lambda x, y: 1 + 999.0 * (x > 0.5)),  # variable coefficients
        anisotropic((5, 7, 9), (1, 0.1, 0.3)),  # 3D: lines coloured by the sum of 2 indices
        laplacian(17, dim=1),  # 1D: one line, the exact solve
    ],
    ids=["aniso-axis0", "aniso-axis1", "jump", "3d", "1d"],
)
def test_zebra_sweep_equals_the_textbook_iteration(A):
    torch.manual_seed(0)
    axis = strong_axis(A)
    M = A.to_sparse()
    u = torch.randn(1, 1, *A.shape, dtype=torch.float64)
    f = torch.randn_like(u)
    ref = u[0, 0].numpy()
    for _ in range(2):  # two sweeps: even lines, odd lines, even, odd
        for parity, B in enumerate(zebra(A)):
            u = Step(A, B)(u, f)
            ref = textbook_half_sweep(M, A.shape, ref, f[0, 0].numpy(), axis, parity)
    assert np.abs(u[0, 0].numpy() - ref).max() < 1e-12 * max(1.0, np.abs(ref).max())


def test_lines_run_along_the_strong_axis():
    assert strong_axis(anisotropic((7, 7), (1, 0.1))) == 0
    assert strong_axis(anisotropic((7, 7), (0.1, 1))) == 1
    assert strong_axis(laplacian((7, 7))) == 0  # ties: the first axis
    assert strong_axis(anisotropic((5, 5, 5), (0.1, 0.1, 1))) == 2


def test_a_batch_and_float32_solve_every_line():
    A = anisotropic((31, 15), (1, 0.01))
    B = LineRelaxation(A, 0, 1).float()
    r = torch.randn(3, 1, 31, 15)
    x = B(r)
    assert x.dtype == torch.float32 and x.shape == r.shape
    assert torch.all(x[..., 0::2] == 0)  # the even lines are left alone
    # on the odd lines T x = r: A x there, minus the couplings across lines
    Ax = A.float()(x)
    cross = x.roll(1, dims=3) + x.roll(-1, dims=3)  # zero on the odd lines' neighbours
    assert torch.allclose(Ax[..., 1::2], r[..., 1::2], atol=1e-3 * float(r.abs().max()))
    assert torch.all(cross[..., 1::2] == 0)


def test_bad_inputs_name_the_argument():
    A = anisotropic((7, 7), (1, 0.1))
    with pytest.raises(ValueError, match="axis"):
        LineRelaxation(A, 2, 0)
    with pytest.raises(ValueError, match="parity"):
        LineRelaxation(A, 0, 2)
    with pytest.raises(ValueError, match="Dirichlet"):
        LineRelaxation(laplacian((8, 8), bc="periodic"), 0, 0)
    with pytest.raises(ValueError, match="r: expected shape"):
        LineRelaxation(A, 0, 0)(torch.zeros(1, 1, 7, 8, dtype=torch.float64))
