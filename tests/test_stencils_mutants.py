"""Independent references for the stencil package, written to kill the mutants of
benchmarks/mutation_score.py that the other tests let survive.

Every stencil here is checked against a NumPy evaluation of the definition
(A u)_i = sum_o c_o[i] u[i + o] (zero outside a Dirichlet grid, wrap-around on a periodic
one), with random, non-symmetric coefficients and grids with a side of 1 or 2 nodes, on
both the compiled kernels and the PyTorch path."""

import itertools

import numpy as np
import pytest
import torch

from mgnet.stencils import StencilOperator, kernels

torch.set_num_threads(1)


# ------------------------------------------------------------------- A u by its definition
def apply_by_definition(stencil: dict, bc: str, u: np.ndarray) -> np.ndarray:
    """(A u)_i = sum_o c_o[i] u[i + o] over a batch u of shape (batch, *grid)."""
    shape = u.shape[1:]
    out = np.zeros_like(u)
    for o, c in stencil.items():
        if bc == "periodic":
            shifted = np.roll(u, shift=[-x for x in o], axis=tuple(range(1, u.ndim)))
        else:
            padded = np.pad(u, [(0, 0)] + [(1, 1)] * len(shape))
            window = tuple(slice(1 + x, 1 + x + n) for x, n in zip(o, shape))
            shifted = padded[(slice(None), *window)]
        coef = c.numpy() if isinstance(c, torch.Tensor) else c
        out += coef * shifted
    return out


def random_stencil(shape, offsets, variable: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    stencil = {}
    for o in offsets:
        if variable:
            stencil[o] = torch.from_numpy(rng.uniform(-1.0, 1.0, size=shape))
        else:
            stencil[o] = float(rng.uniform(-1.0, 1.0))
    centre = (0,) * len(shape)
    stencil[centre] = stencil[centre] + 4.0  # any value; diagonal dominance is not needed
    return stencil


def cross(d: int) -> list[tuple[int, ...]]:
    """The 2d + 1 offsets of the centre and its axis neighbours."""
    out = [(0,) * d]
    for k, s in itertools.product(range(d), (-1, 1)):
        out.append(tuple(s if j == k else 0 for j in range(d)))
    return out


def box(d: int) -> list[tuple[int, ...]]:
    """All 3^d offsets."""
    return list(itertools.product((-1, 0, 1), repeat=d))


CASES = {
    # name: (shape, offsets, bc, variable); sides of 1 and 2 nodes reach the end-node code
    "1d-3pt": ((7,), cross(1), "dirichlet", False),
    "1d-3pt-n2": ((2,), cross(1), "dirichlet", False),
    "1d-3pt-periodic": ((5,), cross(1), "periodic", False),
    "2d-5pt": ((5, 6), cross(2), "dirichlet", False),
    "2d-5pt-n2": ((5, 2), cross(2), "dirichlet", False),
    "2d-5pt-n1": ((4, 1), cross(2), "dirichlet", False),
    "2d-5pt-periodic": ((4, 5), cross(2), "periodic", False),
    "2d-9pt": ((5, 6), box(2), "dirichlet", False),
    "2d-9pt-n2": ((4, 2), box(2), "dirichlet", False),
    "2d-9pt-periodic": ((3, 4), box(2), "periodic", False),
    "2d-5pt-variable": ((5, 4), cross(2), "dirichlet", True),
    "2d-9pt-variable": ((4, 5), box(2), "dirichlet", True),
    "2d-9pt-variable-periodic": ((4, 3), box(2), "periodic", True),
    "3d-7pt": ((3, 4, 2), cross(3), "dirichlet", False),
    "3d-7pt-periodic": ((3, 4, 3), cross(3), "periodic", False),
    "3d-27pt": ((3, 2, 4), box(3), "dirichlet", False),
    "3d-7pt-variable": ((3, 3, 4), cross(3), "dirichlet", True),
}


@pytest.mark.parametrize("compiled", [True, False], ids=["kernels", "torch"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_apply_and_residual_equal_the_definition(name, compiled):
    shape, offsets, bc, variable = CASES[name]
    stencil = random_stencil(shape, offsets, variable, seed=len(name))
    op = StencilOperator(shape, [0.1] * len(shape), stencil, bc=bc)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    f = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    Au = apply_by_definition(stencil, bc, u[:, 0].numpy())
    assert np.abs(Au).max() > 0.5  # a result that would show a dropped term
    if compiled and not kernels.available():
        pytest.skip("numba is not installed")
    with torch.no_grad():
        if compiled:
            assert op.compiled(u, f)
            got_Au, got_r = op(u), op.residual(u, f).clone()
        else:
            with kernels.disabled():
                assert not op.compiled(u, f)
                got_Au, got_r = op(u), op.residual(u, f).clone()
    np.testing.assert_allclose(got_Au[:, 0].numpy(), Au, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_r[:, 0].numpy(), f[:, 0].numpy() - Au, rtol=0, atol=1e-12)
    dense = op.to_sparse().toarray()  # the matrix, row by row from the definition too
    flat = u[:, 0].reshape(2, -1).numpy()
    np.testing.assert_allclose(flat @ dense.T, Au.reshape(2, -1), rtol=0, atol=1e-12)
