"""Smoothed aggregation: the set-up that builds P, R = P^T and A^{l+1} = R A^l P.

One coarsening step, each a vectorised NumPy/SciPy pass over the nonzeros of A^l:

1. :func:`strength`: the graph of strong couplings, |a_ij| >= theta sqrt(|a_ii a_jj|)
   (for a block matrix, on the Frobenius norms of its blocks: one node per block).
2. :func:`aggregate`: aggregates of strongly coupled nodes. Roots are a maximal
   distance-2 independent set, chosen in parallel (Luby's rule on random weights over
   distance-2 neighbourhoods); each root takes its neighbours, and every node left over is
   two steps from a root and joins a neighbour's aggregate. Nodes without a strong
   neighbour stay out of every aggregate (their row of P is smoothed from zero).
3. :func:`tentative_prolongator`: T, whose columns on an aggregate are an orthonormal basis
   of the near-nullspace candidates B restricted to it (a QR per aggregate, done as
   Gram-Schmidt over all aggregates at once), and the coarse candidates (the R factors).
4. :func:`smooth_prolongator`: P = (I - w D^-1 A) T with w = 4 / (3 rho(D^-1 A)).

P is feature -> feature (it carries coarse corrections up), R = P^T is data -> data (it
restricts residuals) and A^{l+1} = R A^l P; in the cycle Pi = 0 and sigma = identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mgnet.multigrid.sparse import _rowmax, as_csr, spectral_radius

__all__ = [
    "strength",
    "aggregate",
    "tentative_prolongator",
    "smooth_prolongator",
    "rigid_body_modes",
    "SALevel",
    "sa_hierarchy",
]


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
    when |a_ij| >= theta sqrt(|a_ii a_jj|) (symmetric strength of connection). With
    ``blocksize`` > 1 the test runs on the node matrix of block norms."""
    if not 0 <= theta < 1:
        raise ValueError(f"theta: the strength threshold must lie in [0, 1), got {theta}")
    N = _amalgamate(as_csr(A), blocksize)
    N.sum_duplicates()
    d = np.abs(N.diagonal())
    rows = np.repeat(np.arange(N.shape[0]), np.diff(N.indptr))
    cols = N.indices
    keep = (rows != cols) & (np.abs(N.data) >= theta * np.sqrt(d[rows] * d[cols]))
    keep &= N.data != 0
    S = sp.csr_matrix(
        (np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=N.shape, dtype=np.float64
    )
    # symmetric pattern: a coupling strong one way is strong both ways
    S = ((S + S.T) > 0).astype(np.float64).tocsr()
    S.sort_indices()
    return S


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


def aggregate(S: sp.csr_matrix, seed: int = 0) -> tuple[np.ndarray, int]:
    """Aggregates of the graph S: (agg, count), agg[i] the aggregate of node i or -1.

    Roots form a maximal distance-2 independent set of the nodes that have a neighbour
    (found in parallel: an undecided node becomes a root when its random key is the
    largest among the undecided and root nodes within two hops, and drops out once a root
    is within two hops). Each root's aggregate is itself and its neighbours; the nodes
    left are two hops from a root and join the aggregate of a neighbour."""
    S = as_csr(S)
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
    n, K = B.shape
    dof_agg = np.repeat(agg, blocksize)
    rows = np.flatnonzero(dof_agg >= 0)
    a = dof_agg[rows]
    Q = np.array(B[rows], dtype=np.float64)
    R = np.zeros((count, K, K))
    for j in range(K):  # modified Gram-Schmidt, all aggregates at once
        v = Q[:, j]
        scale = np.sqrt(np.bincount(a, v * v, minlength=count))
        for i in range(j):
            r = np.bincount(a, Q[:, i] * v, minlength=count)
            R[:, i, j] = r
            v -= Q[:, i] * r[a]
        norm = np.sqrt(np.bincount(a, v * v, minlength=count))
        ok = norm > 1e-10 * np.maximum(scale, np.finfo(float).tiny)
        R[:, j, j] = np.where(ok, norm, 0.0)
        v *= np.where(ok, 1.0 / np.where(ok, norm, 1.0), 0.0)[a]
        Q[:, j] = v
    cols = a[:, None] * K + np.arange(K)[None, :]
    T = sp.csr_matrix(
        (Q.ravel(), (np.repeat(rows, K), cols.ravel())), shape=(n, count * K), dtype=np.float64
    )
    T.eliminate_zeros()
    return T, R.reshape(count * K, K)


def smooth_prolongator(A, T: sp.csr_matrix, omega: float = 4.0 / 3.0) -> sp.csr_matrix:
    """P = (I - w D^-1 A) T, w = omega / rho(D^-1 A) (omega = 4/3: w = 4 / (3 rho))."""
    A = as_csr(A)
    dinv = 1.0 / A.diagonal()
    w = omega / spectral_radius(A, dinv)
    AT = (A @ T).tocsr()
    P = (T - sp.diags(w * dinv) @ AT).tocsr()
    P.sort_indices()
    return P


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
) -> list[SALevel]:
    """Coarsen until a level has at most ``max_coarse`` unknowns or there are
    ``max_levels`` levels (or aggregation stops reducing the size)."""
    levels = [SALevel(A=A, B=B, blocksize=blocksize)]
    while len(levels) < max_levels and levels[-1].A.shape[0] > max_coarse:
        lvl = levels[-1]
        S = strength(lvl.A, theta, lvl.blocksize)
        agg, count = aggregate(S, seed)
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
