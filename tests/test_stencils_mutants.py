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

from mgnet.stencils import (
    DirectSolve,
    FullWeighting,
    Injection,
    Interpolation,
    NewtonJacobi,
    NonlinearOperator,
    SparseTransfer,
    StencilOperator,
    kernels,
    laplacian,
)

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


def random_stencil(shape, offsets, variable: bool | str, seed: int) -> dict:
    """Random coefficients: numbers, grids (``variable=True``) or, for ``"mixed"``, a grid
    for every second offset and a number for the others."""
    rng = np.random.default_rng(seed)
    stencil = {}
    for k, o in enumerate(offsets):
        if variable is True or (variable == "mixed" and k % 2 == 1):
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
    "1d-3pt-variable-n1": ((1,), cross(1), "dirichlet", True),
    "2d-5pt-variable-n1": ((3, 1), cross(2), "dirichlet", True),
    "2d-9pt-variable-n1": ((4, 1), box(2), "dirichlet", True),
    # rows that mix numbers and grids take the kernels' generic loop
    "2d-9pt-mixed": ((4, 5), box(2), "dirichlet", "mixed"),
    "2d-9pt-mixed-periodic": ((4, 5), box(2), "periodic", "mixed"),
    "3d-7pt-mixed-periodic": ((3, 4, 3), cross(3), "periodic", "mixed"),
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


def test_a_wrongly_shaped_grid_is_refused_in_one_line():
    op = StencilOperator((5, 4), (0.2, 0.25), random_stencil((5, 4), cross(2), False, seed=0))
    for bad in [(1, 1, 4, 5), (1, 1, 5, 4, 3), (5, 4)]:
        with pytest.raises(ValueError, match=r"^u: expected shape \(batch, channels, 5, 4\)"):
            op(torch.zeros(bad, dtype=torch.float64))
    assert op(torch.ones(2, 3, 5, 4, dtype=torch.float64)).shape == (2, 3, 5, 4)  # channels


# --------------------------------------------- one colour of red-black, by its definition
COLOUR_CASES = {
    "1d-n3": ((3,), False),
    "1d-n2": ((2,), False),
    "2d-3x2": ((3, 2), False),
    "2d-2x3-variable": ((2, 3), True),
    "2d-4x5": ((4, 5), False),
    "3d-3x2x3": ((3, 2, 3), False),
}


@pytest.mark.parametrize("path", ["kernels", "colour", "masked"])
@pytest.mark.parametrize("grid_scale", [False, True], ids=["number", "grid"])
@pytest.mark.parametrize("parity", [0, 1])
@pytest.mark.parametrize("name", sorted(COLOUR_CASES))
def test_colour_update_equals_the_definition(name, parity, grid_scale, path):
    """u <- u + s (f - A u) at the nodes with (i_1 + .. + i_d) % 2 == parity only, with the
    residual of the u before the step (the nodes of one colour are not coupled); by the
    compiled kernel, the strided sub-lattices (the GPU path) and the blocked masked update
    (the CPU PyTorch path)."""
    if path == "kernels" and not kernels.available():
        pytest.skip("numba is not installed")
    shape, variable = COLOUR_CASES[name]
    stencil = random_stencil(shape, cross(len(shape)), variable, seed=3)
    op = StencilOperator(shape, [0.1] * len(shape), stencil)
    g = torch.Generator().manual_seed(2)
    u = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    f = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    scale = torch.rand(shape, generator=g, dtype=torch.float64) + 0.5 if grid_scale else 0.7
    colour = (np.indices(shape).sum(axis=0) % 2 == parity).astype(float)
    s = scale.numpy() if grid_scale else scale
    r = f[:, 0].numpy() - apply_by_definition(stencil, "dirichlet", u[:, 0].numpy())
    expected = u[:, 0].numpy() + colour * s * r
    assert np.abs(colour * s * r).max() > 0.1
    got = u.clone()
    with torch.no_grad():
        if path == "kernels":
            assert op.compiled(got, f)
            kernels.colour_update_(op, got, f, parity, scale)
        elif path == "colour":
            op.colour_update_(got, f, parity, scale)
        else:
            with kernels.disabled():
                op.masked_update_(got, f, torch.from_numpy(colour * s))
    np.testing.assert_allclose(got[:, 0].numpy(), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------- the nonlinear (FAS) operator
@pytest.mark.parametrize("kind", ["cubic", "bratu"])
def test_nonlinear_operator_equals_its_definition(kind):
    """A(u) = L u + u^3 (cubic) or L u - lam e^u (Bratu); dN its derivative."""
    shape = (4, 3)
    stencil = random_stencil(shape, cross(2), False, seed=5)
    A = NonlinearOperator(StencilOperator(shape, (0.2, 0.25), stencil), kind=kind, lam=0.7)
    u = torch.randn(2, 1, *shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    Lu = apply_by_definition(stencil, "dirichlet", u[:, 0].numpy())
    un = u[:, 0].numpy()
    N, dN = (un**3, 3 * un**2) if kind == "cubic" else (-0.7 * np.exp(un), -0.7 * np.exp(un))
    with torch.no_grad():
        np.testing.assert_allclose(A(u)[:, 0].numpy(), Lu + N, rtol=0, atol=1e-12)
        f = torch.ones_like(u)
        np.testing.assert_allclose(A.residual(u, f)[:, 0].numpy(), 1 - Lu - N, atol=1e-12)
        np.testing.assert_allclose(A.dN(u, u)[:, 0].numpy(), dN, rtol=1e-14, atol=0)
    assert A.dN(None, u) == (0.0 if kind == "cubic" else -0.7)


def test_nonlinear_operator_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="^kind: 'quartic' is not one of cubic, bratu"):
        NonlinearOperator(StencilOperator((3,), (0.25,), {(0,): 2.0}), kind="quartic")


def test_newton_jacobi_equals_its_definition():
    """B(r, u) = omega M r / (D + N'(u)), M the colour mask (none: every node)."""
    shape = (3, 4)
    stencil = random_stencil(shape, cross(2), False, seed=6)
    A = NonlinearOperator(StencilOperator(shape, (0.25, 0.2), stencil), kind="cubic")
    g = torch.Generator().manual_seed(7)
    r, u = torch.randn(2, 2, 1, *shape, generator=g, dtype=torch.float64)
    mask = torch.from_numpy((np.indices(shape).sum(axis=0) % 2 == 1).astype(float))
    D = stencil[(0, 0)]
    plain = r.numpy() * 0.8 / (D + 3 * u.numpy() ** 2)
    with torch.no_grad():
        np.testing.assert_allclose(NewtonJacobi(A, 0.8)(r, u).numpy(), plain, atol=1e-13)
        masked = NewtonJacobi(A, 0.8, mask=mask, color="black")(r, None)
    np.testing.assert_allclose(masked.numpy(), r.numpy() * 0.8 / D * mask.numpy(), atol=1e-13)


# ------------------------------------------------------------- transfers by their weights
def restriction_1d(n: int, bc: str) -> np.ndarray:
    """Full weighting on one axis: (1/4, 1/2, 1/4) around the fine node of each coarse
    node (Dirichlet: coarse I at fine 2I + 1; periodic: coarse I at fine 2I, wrapped)."""
    m = (n - 1) // 2 if bc == "dirichlet" else n // 2
    R = np.zeros((m, n))
    for i in range(m):
        centre = 2 * i + 1 if bc == "dirichlet" else 2 * i
        for j, w in ((centre - 1, 0.25), (centre, 0.5), (centre + 1, 0.25)):
            R[i, j % n] += w
    return R


def kron_all(mats: list[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1))
    for M in mats:
        out = np.kron(out, M)
    return out


TRANSFER_CASES = {
    "1d": ((7,), "dirichlet"),
    "2d": ((5, 7), "dirichlet"),
    "3d": ((3, 5, 3), "dirichlet"),
    "1d-periodic": ((8,), "periodic"),
    "2d-periodic": ((8, 10), "periodic"),
}


@pytest.mark.parametrize("compiled", [True, False], ids=["kernels", "torch"])
@pytest.mark.parametrize("name", sorted(TRANSFER_CASES))
def test_full_weighting_and_interpolation_equal_their_weights(name, compiled):
    """R is the tensor product of the 1D full weightings, P the linear interpolation
    2^d R^T (the transpose up to the factor 2 per axis); P x added in place as well."""
    if compiled and not kernels.available():
        pytest.skip("numba is not installed")
    shape, bc = TRANSFER_CASES[name]
    R = kron_all([restriction_1d(n, bc) for n in shape])
    P = 2 ** len(shape) * R.T
    coarse = tuple((n - 1) // 2 if bc == "dirichlet" else n // 2 for n in shape)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    e = torch.randn(2, 1, *coarse, generator=g, dtype=torch.float64)
    u = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64)
    restrict, interpolate = FullWeighting(shape, bc), Interpolation(shape, bc)
    with torch.no_grad():
        if compiled:
            Rx, Pe, u_Pe = restrict(x), interpolate(e), interpolate.add_to(u.clone(), e)
        else:
            with kernels.disabled():
                Rx, Pe = restrict(x), interpolate(e)
                u_Pe = interpolate.add_to(u.clone(), e)
    assert Rx.shape == (2, 1, *coarse) and Pe.shape == u.shape
    np.testing.assert_allclose(
        Rx.reshape(2, -1).numpy(), x.reshape(2, -1).numpy() @ R.T, atol=1e-13
    )
    expected = e.reshape(2, -1).numpy() @ P.T
    np.testing.assert_allclose(Pe.reshape(2, -1).numpy(), expected, atol=1e-13)
    np.testing.assert_allclose(
        u_Pe.reshape(2, -1).numpy(), u.reshape(2, -1).numpy() + expected, atol=1e-13
    )


def test_injection_takes_the_fine_value_at_each_coarse_node():
    x = torch.arange(7 * 5, dtype=torch.float64).reshape(1, 1, 7, 5)
    torch.testing.assert_close(Injection((7, 5))(x), x[:, :, 1::2, 1::2])  # 2I + 1
    y = torch.arange(8 * 10, dtype=torch.float64).reshape(1, 1, 8, 10)
    torch.testing.assert_close(Injection((8, 10), "periodic")(y), y[:, :, ::2, ::2])  # 2I


# ------------------------------------------------------------------- the coarsest solve
@pytest.mark.parametrize("dense_max", [1024, 0], ids=["dense", "sparse"])
@pytest.mark.parametrize("case", ["spd", "nonsymmetric", "periodic-singular"])
def test_direct_solve_equals_the_pseudo_inverse(case, dense_max):
    """B r = A^-1 r; for a periodic A without zero-order term (null space: constants) the
    pseudo-inverse's solution, A^+ r, which has zero mean and ignores r's mean."""
    if case == "spd":
        A = laplacian((3, 4))
    elif case == "nonsymmetric":
        A = StencilOperator((3, 4), (0.25, 0.2), random_stencil((3, 4), box(2), False, seed=9))
    else:
        A = laplacian((4, 6), bc="periodic")
    dense = A.to_sparse().toarray()
    r = torch.randn(3, 1, *A.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    r_flat = r.reshape(3, -1).numpy()
    assert abs(r_flat.mean(axis=1)).max() > 0.05  # a mean that the singular case must drop
    B = DirectSolve(A, dense_max=dense_max)
    with torch.no_grad():
        x = B(r).reshape(3, -1).numpy()
    expected = r_flat @ np.linalg.pinv(dense).T
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_masked_update_over_several_blocks_equals_the_definition():
    """A grid larger than one cache block (65536 numbers): the rows are updated block by
    block, each with its slice of the scale grid."""
    shape = (300, 301)
    stencil = random_stencil(shape, cross(2), False, seed=10)
    op = StencilOperator(shape, (0.01, 0.01), stencil)
    g = torch.Generator().manual_seed(10)
    u, f = torch.randn(2, 1, 1, *shape, generator=g, dtype=torch.float64)
    colour = (np.indices(shape).sum(axis=0) % 2 == 1) * np.linspace(0.5, 1.5, shape[0])[:, None]
    r = f[:, 0].numpy() - apply_by_definition(stencil, "dirichlet", u[:, 0].numpy())
    got = u.clone()
    with torch.no_grad(), kernels.disabled():
        op.masked_update_(got, f, torch.from_numpy(colour))
    np.testing.assert_allclose(got[:, 0].numpy(), u[:, 0].numpy() + colour * r, atol=1e-12)


def test_a_grid_scale_changed_in_place_is_read_again():
    """The kernels cache a scale grid's converted copy: a change in place must show."""
    if not kernels.available():
        pytest.skip("numba is not installed")
    shape = (4, 5)
    stencil = random_stencil(shape, cross(2), False, seed=11)
    op = StencilOperator(shape, (0.2, 0.2), stencil)
    g = torch.Generator().manual_seed(11)
    u, f = torch.randn(2, 1, 1, *shape, generator=g, dtype=torch.float64)
    scale = torch.full(shape, 0.5, dtype=torch.float64)
    colour = np.indices(shape).sum(axis=0) % 2 == 0
    with torch.no_grad():
        kernels.colour_update_(op, u.clone(), f, 0, scale)
        scale.mul_(3.0)
        got = kernels.colour_update_(op, u.clone(), f, 0, scale)
    r = f[:, 0].numpy() - apply_by_definition(stencil, "dirichlet", u[:, 0].numpy())
    np.testing.assert_allclose(got[:, 0].numpy(), u[:, 0].numpy() + 1.5 * colour * r, atol=1e-12)
    scale = scale.float()  # converted to u's dtype: a copy, kept while scale is unchanged
    with torch.no_grad():  # the same for the Jacobi update of every node
        kernels.jacobi_update_(op, u.clone(), f, scale)
        scale.mul_(2.0)
        got = kernels.jacobi_update_(op, u.clone(), f, scale)
    np.testing.assert_allclose(got[:, 0].numpy(), u[:, 0].numpy() + 3.0 * r, atol=1e-12)


def test_transfers_with_autograd_equal_their_weights():
    shape = (5, 7)
    R = kron_all([restriction_1d(n, "dirichlet") for n in shape])
    x = torch.randn(2, 1, *shape, dtype=torch.float64, requires_grad=True)
    Rx = FullWeighting(shape)(x)
    flat = x.detach().reshape(2, -1).numpy()
    np.testing.assert_allclose(Rx.detach().reshape(2, -1).numpy(), flat @ R.T, atol=1e-13)
    e = torch.randn(2, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    Pe = Interpolation(shape)(e)
    expected = e.detach().reshape(2, -1).numpy() @ (4 * R)
    np.testing.assert_allclose(Pe.detach().reshape(2, -1).numpy(), expected, atol=1e-13)
    (Rx.sum() + Pe.sum()).backward()
    np.testing.assert_allclose(x.grad.reshape(2, -1).numpy()[0], R.sum(axis=0), atol=1e-13)


def test_sparse_transfer_applies_its_matrix_per_sample():
    M = np.arange(6.0).reshape(2, 3) - 2.0
    T = SparseTransfer(M, (3,), (2,))
    x = torch.randn(3, 1, 3, dtype=torch.float64)
    assert T(x).shape == (3, 1, 2)
    torch.testing.assert_close(T(x), torch.einsum("ij,bcj->bci", torch.from_numpy(M), x))


def test_from_sparse_keeps_constant_coefficients_as_numbers():
    A = laplacian((5, 6))
    B = StencilOperator.from_sparse(A.to_sparse(), A.shape, A.h)
    assert B.is_constant and sorted(B.offsets) == sorted(A.offsets)
    for k, o in enumerate(A.offsets):
        assert B.coefficient(B.offsets.index(o)) == pytest.approx(A.coefficient(k), rel=1e-14)
