"""The algebraic instance against independent references: the checks that the mutation
score of ``benchmarks/mutation_score.py`` showed missing (strength of connection without
a stored diagonal, the 3D rigid-body modes, the defaults of the smoothed-aggregation
set-up, block Gauss-Seidel on the levels, argument checks, and the sparse test problems
against scikit-fem assemblies and hand computations)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from mgnet.multigrid.aggregation import (
    _mis2,
    aggregate,
    rigid_body_modes,
    sa_hierarchy,
    strength,
)
from mgnet.multigrid.algebraic import smoothed_aggregation_solver
from mgnet.multigrid.matrices import (
    _random_field,
    darcy_matrix,
    elasticity_matrix,
    fem_elasticity,
    fem_jump,
    rotated_anisotropy,
)
from mgnet.multigrid.sparse import SparseMatrix, gauss_seidel, spectral_radius
from test_amg_setup import cols, laplace1d, laplace2d  # tests/ is on sys.path


# ------------------------------------------------------------------- strength
def test_strength_without_a_stored_diagonal_takes_a_ii_as_zero():
    # row 0 stores no diagonal: a_00 = 0, so |a_0j| >= theta sqrt(|a_00 a_jj|) = 0 holds
    # for every coupling of node 0, however weak (here 0.1 against a_33 = 4)
    rows = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    cols_ = [1, 3, 0, 1, 2, 1, 2, 3, 0, 2, 3]
    vals = [-1, -0.1, -1, 4, -1, -1, 4, -1, -0.1, -1, 4]
    A = sp.csr_matrix((vals, (rows, cols_)), shape=(4, 4))
    S = strength(A, theta=0.5).toarray() != 0
    expected = np.zeros((4, 4), dtype=bool)
    for i, j in [(0, 1), (0, 3)]:  # 1 >= 0.5 * 4 fails for (1, 2), (2, 3)
        expected[i, j] = expected[j, i] = True
    np.testing.assert_array_equal(S, expected)


# ---------------------------------------------------------------- rigid bodies
@pytest.mark.parametrize("d", [2, 3])
def test_rigid_body_modes_are_exactly_the_fields_without_strain(d):
    # a linear field u(x) = M x + c has strain sym(M); the rigid motions are the fields
    # with sym(M) = 0, a space of dimension 3 (2D) or 6 (3D)
    coords = np.random.default_rng(d).uniform(-1, 1, (7, d))
    B = rigid_body_modes(coords)
    k = 3 if d == 2 else 6
    assert B.shape == (d * 7, k)
    X = np.hstack([coords, np.ones((7, 1))])  # least squares fit of M and c per mode
    for m in range(k):
        u = B[:, m].reshape(7, d)
        fit, res, *_ = np.linalg.lstsq(X, u, rcond=None)
        np.testing.assert_allclose(X @ fit, u, atol=1e-12)  # the mode is a linear field
        M = fit[:d].T
        np.testing.assert_allclose(M + M.T, 0, atol=1e-12)  # without strain
    assert np.linalg.matrix_rank(B) == k  # and they span all rigid motions
    # the translations come first, in axis order
    np.testing.assert_array_equal(B[:, :d], np.tile(np.eye(d), (7, 1)))


# --------------------------------------------------------- SA set-up defaults
def test_sa_hierarchy_defaults_build_the_textbook_hierarchy():
    """sa_hierarchy(A, B) with its defaults: theta = 0 (every coupling strong),
    P = (I - w D^-1 A) T with w = 4 / (3 rho(D^-1 A)), A^{l+1} = P^T A^l P, four symmetric
    Gauss-Seidel sweeps on B, and coarsening down to at most 10 unknowns."""
    A = laplace2d(16)
    n = A.shape[0]
    levels = sa_hierarchy(A, np.ones((n, 1)))
    assert levels[-1].A.shape[0] <= 10 < levels[-2].A.shape[0]
    # B on the finest level: 4 x (forward sweep, backward sweep) on A x = 0, by triangular
    # solves: x <- x - (D + L)^-1 A x, x <- x - (D + U)^-1 A x
    x = np.ones(n)
    lower, upper = sp.tril(A, format="csr"), sp.triu(A, format="csr")
    for _ in range(4):
        x = x - spla.spsolve_triangular(lower, A @ x, lower=True)
        x = x - spla.spsolve_triangular(upper, A @ x, lower=False)
    np.testing.assert_allclose(levels[0].B[:, 0], x, rtol=1e-12, atol=1e-14)
    Dinv = sp.diags(1.0 / A.diagonal())
    rho = float(np.abs(np.linalg.eigvals((Dinv @ A).toarray())).max())
    for lv, nxt in zip(levels[:-1], levels[1:]):
        # theta = 0: each aggregate is connected through couplings of any size; on this
        # grid every node is aggregated
        assert (lv.aggregates >= 0).all()
        np.testing.assert_allclose((lv.R - lv.P.T).toarray(), 0)
        np.testing.assert_allclose(nxt.A.toarray(), (lv.P.T @ lv.A @ lv.P).toarray(), atol=1e-12)
    lv = levels[0]
    # fit w in T - P = w D^-1 A T: the fit is exact and w rho lies within the estimate's
    # 1% bias of 4/3
    G = (Dinv @ A @ lv.T).toarray().ravel()
    diff = (lv.T - lv.P).toarray().ravel()
    w = float(G @ diff / (G @ G))
    np.testing.assert_allclose(diff, w * G, atol=1e-12)
    assert 4 / 3 / 1.02 < w * rho <= 4 / 3 + 1e-9


def test_spectral_radius_estimate_is_the_seed_0_lanczos_bound():
    # the set-up (smooth_prolongator, chebyshev, the Jacobi weight) estimates rho without
    # passing a seed: its hierarchies are those of seed 0. The estimate lies within the
    # Lanczos bound's accuracy of the exact value (1.01 times a Ritz value <= rho).
    A = laplace1d(300)
    dinv = 1.0 / A.diagonal()
    rho = 2 * (1 - math.cos(300 * math.pi / 301)) / 2
    est = spectral_radius(A, dinv)
    assert est == spectral_radius(A, dinv, seed=0)
    assert est != spectral_radius(A, dinv, seed=1)
    assert 0.97 * rho < est <= 1.01 * rho


def test_block_gauss_seidel_runs_on_the_nodes_of_a_block_matrix():
    # 2 unknowns per node coupled inside the node: the level's Gauss-Seidel must be the
    # block triangular solve (D_b + L_b)^-1, D_b the 2 x 2 diagonal blocks
    A = sp.kron(laplace2d(6), np.array([[2.0, 1.0], [1.0, 2.0]])).tocsr()
    n = A.shape[0]
    solver = smoothed_aggregation_solver(
        A, blocksize=2, smoother="gauss_seidel", max_coarse=10, device="cpu"
    )
    forward = solver.levels[0].presmoother[0]
    assert forward.blocksize == 2
    C = A.tocoo()
    keep = C.col // 2 <= C.row // 2
    lower = sp.csr_matrix((C.data[keep], (C.row[keep], C.col[keep])), shape=A.shape)
    r = np.random.default_rng(0).standard_normal(n)
    got = forward(cols(r)).T.numpy().ravel()
    np.testing.assert_allclose(got, spla.spsolve(lower.tocsc(), r), rtol=1e-12)
    # and it differs from the point sweep (the blocks do couple the unknowns)
    point = spla.spsolve_triangular(sp.tril(A, format="csr"), r, lower=True)
    assert np.abs(got - point).max() > 1e-3


def test_blocksize_zero_is_refused_in_one_line():
    with pytest.raises(ValueError, match="blocksize: must be a positive divisor"):
        smoothed_aggregation_solver(laplace2d(4), blocksize=0, device="cpu")


def test_gauss_seidel_names_the_row_with_a_zero_diagonal():
    A = laplace1d(5).tolil()
    A[2, 2] = 0.0
    A = A.tocsr()
    A.eliminate_zeros()
    with pytest.raises(ValueError, match="row 2 has a zero diagonal"):
        gauss_seidel(SparseMatrix(A))


# --------------------------------------------------------------- test problems
def test_fem_jump_is_the_p1_laplacian_scaled_by_the_checkerboard():
    fem = pytest.importorskip("skfem")
    from skfem.models.poisson import laplace, unit_load

    with pytest.raises(ValueError, match="contrast: must be positive"):
        fem_jump(2, contrast=0.0)
    c = 1e3
    one, jump = fem_jump(2, contrast=1.0), fem_jump(2, contrast=c)
    assert "contrast 1000" in jump.name and "refine 2" in jump.name
    # contrast 1 is the plain P1 Laplacian of the same mesh (skfem's own form)
    mesh = fem.MeshTri.init_sqsymmetric().refined(2)
    basis = fem.Basis(mesh, fem.ElementTriP1())
    interior = basis.complement_dofs(basis.get_dofs())
    L = laplace.assemble(basis)[interior][:, interior]
    np.testing.assert_allclose(one.A.toarray(), L.toarray(), atol=1e-12)
    np.testing.assert_allclose(jump.b, unit_load.assemble(basis)[interior], atol=1e-15)
    # a node strictly inside a cell of the 4 x 4 checkerboard sees only that cell's a:
    # contrast where floor(4x) + floor(4y) is odd, 1 elsewhere
    x, y = mesh.p[:, interior]
    inside = (np.abs(4 * x - np.round(4 * x)) > 1e-9) & (np.abs(4 * y - np.round(4 * y)) > 1e-9)
    odd = (np.floor(4 * x) + np.floor(4 * y)) % 2 == 1
    ratio = jump.A.diagonal() / one.A.diagonal()
    assert inside.sum() == 16 and (inside & odd).sum() == 8
    np.testing.assert_allclose(ratio[inside & odd], c)
    np.testing.assert_allclose(ratio[inside & ~odd], 1.0)
    np.testing.assert_allclose((jump.A - jump.A.T).toarray(), 0, atol=1e-9)


def test_fem_elasticity_load_is_downward_and_scaled_by_the_row_sums():
    pytest.importorskip("skfem")
    p = fem_elasticity(1)
    K, _ = elasticity_matrix(1)
    np.testing.assert_allclose(p.A.toarray(), K.toarray())
    mass = np.asarray(abs(K).sum(axis=1)).ravel()
    assert np.all(p.b[0::2] == 0)  # no horizontal load
    np.testing.assert_allclose(p.b[1::2], -mass[1::2] / mass.max(), rtol=1e-15)
    assert p.b[1::2].max() < 0 and p.blocksize == 2 and p.B.shape == (K.shape[0], 3)


def test_darcy_field_is_white_noise_smoothed_by_a_gaussian():
    # the Fourier filter exp(-k^2 (pi L)^2 / 2) is, in space, the periodic convolution of
    # the seed's white noise with a Gaussian of standard deviation L / 2 (L = 0.1, the
    # domain has length 1), then the median is taken off
    n, seed, L = 64, 3, 0.1  # the filter is below 1e-20 at the Nyquist frequency
    noise = np.random.default_rng(seed).standard_normal((n, n))
    d = np.minimum(np.arange(n), n - np.arange(n)) / n
    g = np.exp(-(d**2) / (2 * (L / 2) ** 2))
    g /= g.sum()
    ref = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            ref += g[a] * g[b] * np.roll(noise, (a, b), axis=(0, 1))
    ref -= np.median(ref)
    np.testing.assert_allclose(_random_field(n, seed), ref, atol=1e-12)
    assert ref.std() > 0.05


def test_grid_problems_refuse_fewer_than_3_nodes_per_axis():
    with pytest.raises(ValueError, match="n: need at least 3 nodes per axis, got 2"):
        darcy_matrix(2)
    with pytest.raises(ValueError, match="n: need at least 3 nodes per axis, got 2"):
        rotated_anisotropy(2)


@pytest.mark.parametrize("eps, angle", [(0.1, 0.3), (1e-3, math.pi / 8)])
def test_rotated_anisotropy_is_the_q1_assembly_of_scikit_fem(eps, angle):
    fem = pytest.importorskip("skfem")
    from skfem.helpers import dot, grad
    from skfem.models.poisson import unit_load

    n = 5
    c, s = math.cos(angle), math.sin(angle)
    kxy = (1 - eps) * c * s
    K = np.array([[c * c + eps * s * s, kxy], [kxy, s * s + eps * c * c]])
    np.testing.assert_allclose(np.linalg.eigvalsh(K), [eps, 1.0])

    @fem.BilinearForm
    def form(u, v, w):
        return dot(np.einsum("ij,j...->i...", K, grad(u)), grad(v))

    t = np.linspace(0, 1, n + 2)
    mesh = fem.MeshQuad.init_tensor(t, t)
    basis = fem.Basis(mesh, fem.ElementQuad1())
    interior = basis.complement_dofs(basis.get_dofs())
    ref = form.assemble(basis)[interior][:, interior].toarray()
    # our order: node (i, j) at (x_i, y_j) is unknown j * n + i
    ij = np.rint(mesh.p[:, interior] * (n + 1)).astype(int) - 1
    order = np.argsort(ij[1] * n + ij[0])
    ref = ref[np.ix_(order, order)]
    p = rotated_anisotropy(n, eps, angle)
    np.testing.assert_allclose(p.A.toarray(), ref, atol=1e-12)
    np.testing.assert_allclose(p.b, unit_load.assemble(basis)[interior][order], rtol=1e-12)


def test_strength_is_a_0_1_pattern_without_duplicates():
    # a non-symmetric A: the union of the pattern and its transpose holds each coupling
    # once, with value 1 (a coupling strong both ways must not be counted twice)
    A = sp.csr_matrix(
        np.array(
            [
                [4.0, -1.0, -0.1, 0.0],
                [-1.0, 4.0, -1.0, 0.0],
                [-2.0, -1.0, 4.0, -1.0],
                [0, 0, -1.0, 4.0],
            ]
        )
    )
    S = strength(A, theta=0.25)
    expected = np.array([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]])
    np.testing.assert_array_equal(S.toarray(), expected)
    assert S.nnz == expected.sum() and S.has_canonical_format


@pytest.mark.parametrize("n, part", [(9, False), (9, True), (14, True)])
def test_parallel_roots_are_a_maximal_distance_2_independent_set(n, part):
    S = strength(laplace2d(n))
    size = S.shape[0]
    rng = np.random.default_rng(n)
    free = rng.uniform(size=size) < 0.7 if part else np.ones(size, dtype=bool)
    keys = (rng.permutation(size) + 1.0) / (size + 1.0)
    roots = _mis2(S, free, keys)
    # distance <= 2 in the graph restricted to the free nodes
    F = sp.diags(free.astype(float))
    G = (F @ S @ F).tocsr()
    near = ((G + G @ G + sp.eye(size)) != 0).toarray()
    assert free[roots].all() and len(roots) > 1
    sub = near[np.ix_(roots, roots)]
    np.testing.assert_array_equal(sub, np.eye(len(roots), dtype=bool))  # independent
    assert near[np.ix_(np.flatnonzero(free), roots)].any(axis=1).all()  # maximal


@pytest.mark.parametrize("seed", range(6))
def test_parallel_aggregates_of_a_grid_hold_a_root_and_two_neighbours_at_least(seed):
    # phase 1 takes a root and all its neighbours (>= 2 on a 2D grid); phase 2 keeps
    # only roots with >= 2 free neighbours; the rest join existing aggregates: so no
    # aggregate of a 5-point grid has fewer than 3 nodes, and each is connected
    A = laplace2d(12)
    agg, count = aggregate(strength(A), seed, "parallel")
    assert (agg >= 0).all()
    sizes = np.bincount(agg, minlength=count)
    assert sizes.min() >= 3, sizes
    for a in range(count):
        nodes = np.flatnonzero(agg == a)
        sub = A[nodes][:, nodes]
        assert connected_components(sub, directed=False)[0] == 1
