"""Smoothed aggregation: the set-up that builds P, R = P^T and A^{l+1} = R A^l P.

One coarsening step:

1. :func:`strength`: the graph of strong couplings, |a_ij| >= theta sqrt(|a_ii a_jj|)
   (for a block matrix, on the Frobenius norms of its blocks: one node per block).
2. :func:`aggregate`: aggregates of strongly coupled nodes, by one of two methods.

   * ``"standard"`` (the default; compiled, sequential, CPU): the greedy aggregation in
     the nodes' natural order. Pass 1 makes an aggregate of every node whose strong
     neighbourhood is still free (the node and its neighbours), pass 2 attaches each
     node left to a neighbouring aggregate of pass 1, pass 3 aggregates the rest. On a
     structured grid this packs aggregates of 3 x 3 nodes; it gives the fewest
     iterations.
   * ``"parallel"`` (vectorised NumPy, every step a pass over all nodes at once: what a
     GPU set-up would run): roots are a maximal distance-2 independent set chosen by
     Luby's rule on random keys; each root takes its neighbours, every node left over
     is two steps from a root and joins a neighbour's aggregate. Its aggregates are less
     regular, and PCG needs more iterations with them.

   Nodes without a strong neighbour stay out of every aggregate (their row of P is
   smoothed from zero).
3. :func:`tentative_prolongator`: T, whose columns on an aggregate are an orthonormal basis
   of the near-nullspace candidates B restricted to it (a QR per aggregate by modified
   Gram-Schmidt, compiled), and the coarse candidates (the R factors).
4. :func:`smooth_prolongator`: P = (I - w D^-1 A) T with w = 4 / (3 rho(D^-1 A)).

The compiled kernels (numba, cached after the first run on a machine) are in
:mod:`mgnet.multigrid._amg_compiled`; strength, standard aggregation and T there are
single passes over the nonzeros.

P is feature -> feature (it carries coarse corrections up), R = P^T is data -> data (it
restricts residuals) and A^{l+1} = R A^l P; in the cycle Pi = 0 and sigma = identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mgnet.multigrid.sparse import (
    _block_diagonal_inverse,
    _kernels,
    _rowmax,
    as_csr,
    spectral_radius,
)

__all__ = [
    "AGGREGATIONS",
    "strength",
    "aggregate",
    "tentative_prolongator",
    "smooth_prolongator",
    "improve_candidates",
    "rigid_body_modes",
    "SALevel",
    "sa_hierarchy",
]

AGGREGATIONS = ("standard", "parallel")


def _amalgamate(A: sp.csr_matrix, blocksize: int) -> sp.csr_matrix:
    """The node matrix of a block matrix: entry (I, J) is the Frobenius norm of block (I, J)."""
    if blocksize == 1:
        return A
    C = A.tocoo()
    n = A.shape[0] // blocksize
    N = sp.csr_matrix(
        (C.data**2, (C.row // blocksize, C.col // blocksize)), shape=(n, n), dtype=np.float64
    )
    N.sum_duplicates()
    N.data = np.sqrt(N.data)
    return N


def strength(A, theta: float = 0.0, blocksize: int = 1) -> sp.csr_matrix:
    """The strong couplings of A as a 0/1 pattern without the diagonal: i -> j is strong
    when |a_ij| >= theta sqrt(|a_ii a_jj|) (symmetric strength of connection), made
    symmetric (a coupling strong one way is strong both ways). With ``blocksize`` > 1 the
    test runs on the node matrix of block norms."""
    if not 0 <= theta < 1:
        raise ValueError(f"theta: the strength threshold must lie in [0, 1), got {theta}")
    N = as_csr(_amalgamate(as_csr(A), blocksize))
    k = _kernels()
    n = N.shape[0]
    sp_, sj = k.strong_couplings(N.indptr, N.indices, N.data, float(theta))
    tp, tj = k.transpose_pattern(n, sp_, sj)
    if not (np.array_equal(tp, sp_) and np.array_equal(tj, sj)):
        sp_, sj = k.union_pattern(n, sp_, sj, tp, tj)
    idx = np.int32 if sj.size < 2**31 - 1 else np.int64
    return sp.csr_matrix((np.ones(sj.size), sj.astype(idx), sp_.astype(idx)), shape=(n, n))


def _neighbour_max(S: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """max(x_i, max_{j ~ i} x_j): one hop of a max over the graph S."""
    return np.maximum(x, _rowmax(S.indptr, x[S.indices], -np.inf))


def _mis2(S: sp.csr_matrix, free: np.ndarray, rand: np.ndarray) -> np.ndarray:
    """A maximal distance-2 independent set of the ``free`` nodes in the graph S restricted
    to them (Luby's rule with keys ``rand``), as sorted node indices."""
    # state: 0 = out (or not free), 1 = undecided, 2 = root; key = state + rand
    state = np.where(free, 1.0, 0.0)
    if free.all():
        Sf = S
    else:  # the graph restricted to the free nodes: drop every edge that leaves them
        row = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
        keep = free[row] & free[S.indices]
        counts = np.bincount(row[keep], minlength=S.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        Sf = sp.csr_matrix((np.ones(int(keep.sum())), S.indices[keep], indptr), shape=S.shape)
    while (state == 1).any():
        key = state + np.where(state > 0, rand, 0.0)
        m2 = _neighbour_max(Sf, _neighbour_max(Sf, key))
        undecided = state == 1
        state[undecided & (m2 == key)] = 2.0
        state[(state == 1) & (m2 >= 2.0)] = 0.0
    return np.flatnonzero(state == 2)


def aggregate(S: sp.csr_matrix, seed: int = 0, method: str = "standard") -> tuple[np.ndarray, int]:
    """Aggregates of the graph S: (agg, count), agg[i] the aggregate of node i or -1.

    ``method="standard"``: the sequential greedy aggregation in natural order (compiled;
    see the module docstring). ``method="parallel"``: roots form a maximal distance-2
    independent set of the nodes that have a neighbour (found in parallel: an undecided
    node becomes a root when its random key is the largest among the undecided and root
    nodes within two hops, and drops out once a root is within two hops). Each root's
    aggregate is itself and its neighbours; the nodes left are two hops from a root and
    join the aggregate of a neighbour. ``seed`` seeds the parallel method's keys."""
    if method not in AGGREGATIONS:
        raise ValueError(f"aggregation: {method!r} is not one of {', '.join(AGGREGATIONS)}")
    S = as_csr(S)
    if method == "standard":
        return _kernels().standard_aggregation(S.indptr, S.indices)
    n = S.shape[0]
    has_nbr = np.diff(S.indptr) > 0
    rng = np.random.default_rng(seed)
    rand = (rng.permutation(n) + 1.0) / (n + 1.0)  # unique keys in (0, 1)
    agg = np.full(n, -1, dtype=np.int64)
    count = 0
    free = has_nbr.copy()
    # phase 1: roots of a maximal distance-2 independent set take their neighbours;
    # phase 2: the same on the nodes left, keeping only roots with >= 2 free neighbours
    for phase in (1, 2):
        roots = _mis2(S, free, rand)
        tag = np.zeros(n)
        tag[roots] = count + np.arange(len(roots)) + 1.0
        near = _rowmax(S.indptr, tag[S.indices], 0.0)
        members = free & (near > 0) & (tag == 0)
        if phase == 2:
            size = np.bincount(near[members].astype(np.int64), minlength=count + len(roots) + 1)
            keep = size[tag[roots].astype(np.int64)] >= 2
            roots = roots[keep]
            tag = np.zeros(n)
            tag[roots] = count + np.arange(len(roots)) + 1.0
            near = _rowmax(S.indptr, tag[S.indices], 0.0)
            members = free & (near > 0) & (tag == 0)
        agg[roots] = count + np.arange(len(roots))
        agg[members] = near[members].astype(np.int64) - 1
        count += len(roots)
        free = (agg < 0) & has_nbr
        if not free.any():
            break
    # phase 3: nodes left join a neighbour's aggregate (repeat: chains of leftovers)
    while free.any():
        near = _rowmax(S.indptr, (agg + 1.0)[S.indices], 0.0)
        join = free & (near > 0)
        if not join.any():  # a component of leftovers only: it becomes one aggregate
            first = np.flatnonzero(free)[0]
            agg[first] = count
            count += 1
        else:
            agg[join] = near[join].astype(np.int64) - 1
        free = (agg < 0) & has_nbr
    return agg, count


def tentative_prolongator(
    agg: np.ndarray, count: int, B: np.ndarray, blocksize: int = 1
) -> tuple[sp.csr_matrix, np.ndarray]:
    """(T, B_c): T has K = B.shape[1] columns per aggregate, an orthonormal basis of B on
    the aggregate's unknowns (``blocksize`` unknowns per node), so B = T B_c exactly on
    aggregated rows. Columns that B leaves dependent on an aggregate (fewer unknowns than
    candidates) are zero, as are the rows of unaggregated nodes."""
    B = np.ascontiguousarray(B, dtype=np.float64)
    n, K = B.shape
    agg = np.ascontiguousarray(agg, dtype=np.int64)
    tp, tj, tx, Bc = _kernels().tentative_prolongator(agg, int(count), B, int(blocksize))
    idx = np.int32 if max(tj.size, count * K) < 2**31 - 1 else np.int64
    T = sp.csr_matrix((tx, tj.astype(idx), tp.astype(idx)), shape=(n, count * K))
    T.eliminate_zeros()
    return T, Bc


def smooth_prolongator(A, T: sp.csr_matrix, omega: float = 4.0 / 3.0) -> sp.csr_matrix:
    """P = (I - w D^-1 A) T, w = omega / rho(D^-1 A) (omega = 4/3: w = 4 / (3 rho))."""
    A = as_csr(A)
    dinv = 1.0 / A.diagonal()
    w = omega / spectral_radius(A, dinv)
    AT = (A @ T).tocsr()
    P = (T - sp.diags(w * dinv) @ AT).tocsr()
    P.sort_indices()
    return P


def improve_candidates(A, B: np.ndarray, sweeps: int = 4, blocksize: int = 1) -> np.ndarray:
    """B after ``sweeps`` symmetric (block) Gauss-Seidel sweeps (a forward and a backward
    one each) on A x = 0 from x = B: the candidates lose their high-energy parts, e.g.
    the constant is bent towards zero next to a Dirichlet boundary, and T, then P, fit the
    smooth error better."""
    A = as_csr(A)
    x = np.array(B, dtype=np.float64, order="C")
    if sweeps <= 0:
        return x
    zero = np.zeros_like(x)
    dinv = _block_diagonal_inverse(A, blocksize)
    sweep = _kernels().gauss_seidel_sweep
    for _ in range(sweeps):
        sweep(A.indptr, A.indices, A.data, dinv, x, zero, False)
        sweep(A.indptr, A.indices, A.data, dinv, x, zero, True)
    return x


def rigid_body_modes(coords: np.ndarray) -> np.ndarray:
    """The near-nullspace of linear elasticity at nodes ``coords`` (n, 2) or (n, 3), with
    the unknowns of a node next to each other (u_x, u_y[, u_z] of node 0, then node 1...):
    3 modes in 2D (two translations, one rotation), 6 in 3D."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords: expected shape (n, 2) or (n, 3), got {coords.shape}")
    n, d = coords.shape
    if d == 2:
        x, y = coords.T
        B = np.zeros((n, 2, 3))
        B[:, 0, 0] = 1
        B[:, 1, 1] = 1
        B[:, 0, 2], B[:, 1, 2] = -y, x
        return B.reshape(2 * n, 3)
    x, y, z = coords.T
    B = np.zeros((n, 3, 6))
    for k in range(3):
        B[:, k, k] = 1
    B[:, 0, 3], B[:, 1, 3] = -y, x
    B[:, 1, 4], B[:, 2, 4] = -z, y
    B[:, 0, 5], B[:, 2, 5] = z, -x
    return B.reshape(3 * n, 6)


@dataclass
class SALevel:
    """One level of a smoothed-aggregation hierarchy (SciPy matrices, PyAMG's names):
    ``A`` (A^l), ``B`` (near-nullspace candidates), and towards the next coarser level
    ``P``, ``R`` = P^T, ``T`` (tentative prolongator) and ``aggregates`` (node -> aggregate)."""

    A: sp.csr_matrix
    B: np.ndarray
    P: sp.csr_matrix | None = None
    R: sp.csr_matrix | None = None
    T: sp.csr_matrix | None = None
    aggregates: np.ndarray | None = None
    blocksize: int = 1


def sa_hierarchy(
    A: sp.csr_matrix,
    B: np.ndarray,
    blocksize: int = 1,
    theta: float = 0.0,
    omega: float = 4.0 / 3.0,
    max_levels: int = 10,
    max_coarse: int = 10,
    seed: int = 0,
    aggregation: str = "standard",
    improve: int = 4,
) -> list[SALevel]:
    """Coarsen until a level has at most ``max_coarse`` unknowns or there are
    ``max_levels`` levels (or aggregation stops reducing the size). ``aggregation`` is
    ``"standard"`` or ``"parallel"`` (see :func:`aggregate`); the finest level's B is
    first improved by ``improve`` symmetric Gauss-Seidel sweeps
    (:func:`improve_candidates`)."""
    B = improve_candidates(A, B, improve, blocksize)
    levels = [SALevel(A=A, B=B, blocksize=blocksize)]
    while len(levels) < max_levels and levels[-1].A.shape[0] > max_coarse:
        lvl = levels[-1]
        S = strength(lvl.A, theta, lvl.blocksize)
        agg, count = aggregate(S, seed, aggregation)
        K = lvl.B.shape[1]
        if count == 0 or count * K >= lvl.A.shape[0]:
            break
        T, Bc = tentative_prolongator(agg, count, lvl.B, lvl.blocksize)
        P = smooth_prolongator(lvl.A, T, omega)
        R = P.T.tocsr()
        Ac = (R @ lvl.A @ P).tocsr()
        Ac.sum_duplicates()
        Ac.sort_indices()
        lvl.P, lvl.R, lvl.T, lvl.aggregates = P, R, T, agg
        levels.append(SALevel(A=Ac, B=Bc, blocksize=K))
    return levels
