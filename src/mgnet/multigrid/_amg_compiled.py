"""Compiled (numba, ``cache=True``) CPU kernels of the algebraic instance: the set-up of
smoothed aggregation and the lexicographic Gauss-Seidel sweep.

Imported on first use by :mod:`mgnet.multigrid.aggregation` and
:mod:`mgnet.multigrid.sparse` (importing numba costs a fraction of a second, so
``import mgnet`` does not pay it). The first call on a machine compiles a kernel (a few
seconds for all of them); later processes load it from numba's cache.

Every kernel works on the arrays of a CSR matrix (``indptr``, ``indices``, ``data``) with
sorted column indices and no duplicates, as :func:`mgnet.multigrid.sparse.as_csr` makes
them.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True)


# ------------------------------------------------------------------ strength of connection
@_jit
def strong_couplings(indptr, indices, data, theta):
    """The strong off-diagonal couplings of A as a CSR pattern (indptr, indices):
    j != i with a_ij != 0 and |a_ij| >= theta sqrt(|a_ii a_jj|), rows in A's column order."""
    n = indptr.size - 1
    diag = np.zeros(n)
    for i in range(n):
        for jj in range(indptr[i], indptr[i + 1]):
            if indices[jj] == i:
                diag[i] = abs(data[jj])
    t2 = theta * theta
    keep = np.zeros(data.size, dtype=np.bool_)
    sp = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        count = 0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            a = abs(data[jj])
            if j != i and a != 0.0 and a * a >= t2 * diag[i] * diag[j]:
                keep[jj] = True
                count += 1
        sp[i + 1] = sp[i] + count
    sj = np.empty(sp[n], dtype=np.int64)
    pos = 0
    for jj in range(data.size):
        if keep[jj]:
            sj[pos] = indices[jj]
            pos += 1
    return sp, sj


@_jit
def transpose_pattern(n, sp, sj):
    """The pattern of S^T (rows sorted, as a counting sort by column leaves them)."""
    tp = np.zeros(n + 1, dtype=np.int64)
    for jj in range(sj.size):
        tp[sj[jj] + 1] += 1
    for i in range(n):
        tp[i + 1] += tp[i]
    fill = tp[:-1].copy()
    tj = np.empty(sj.size, dtype=np.int64)
    for i in range(n):
        for jj in range(sp[i], sp[i + 1]):
            j = sj[jj]
            tj[fill[j]] = i
            fill[j] += 1
    return tp, tj


@_jit
def union_pattern(n, ap, aj, bp, bj):
    """The union of two CSR patterns with sorted rows (sorted rows out)."""
    up = np.zeros(n + 1, dtype=np.int64)
    uj = np.empty(aj.size + bj.size, dtype=np.int64)
    pos = 0
    for i in range(n):
        a, a_end, b, b_end = ap[i], ap[i + 1], bp[i], bp[i + 1]
        while a < a_end or b < b_end:
            if b == b_end or (a < a_end and aj[a] < bj[b]):
                uj[pos] = aj[a]
                a += 1
            elif a == a_end or bj[b] < aj[a]:
                uj[pos] = bj[b]
                b += 1
            else:
                uj[pos] = aj[a]
                a += 1
                b += 1
            pos += 1
        up[i + 1] = pos
    return up, uj[:pos].copy()


# ------------------------------------------------------------------------- aggregation
@_jit
def standard_aggregation(sp, sj):
    """Greedy aggregation in the nodes' natural order: (agg, count), agg[i] = -1 for a
    node without a strong neighbour.

    Pass 1: a node whose strong neighbours are all still free starts an aggregate of
    itself and them. Pass 2: a node still free joins the aggregate of its first strong
    neighbour that pass 1 placed. Pass 3: a node still free starts an aggregate of itself
    and its free strong neighbours."""
    n = sp.size - 1
    agg = np.full(n, -1, dtype=np.int64)
    first_pass = np.zeros(n, dtype=np.bool_)
    count = 0
    for i in range(n):
        if agg[i] >= 0 or sp[i + 1] == sp[i]:
            continue
        free = True
        for jj in range(sp[i], sp[i + 1]):
            if agg[sj[jj]] >= 0:
                free = False
                break
        if free:
            agg[i] = count
            first_pass[i] = True
            for jj in range(sp[i], sp[i + 1]):
                agg[sj[jj]] = count
                first_pass[sj[jj]] = True
            count += 1
    for i in range(n):
        if agg[i] >= 0 or sp[i + 1] == sp[i]:
            continue
        for jj in range(sp[i], sp[i + 1]):
            j = sj[jj]
            if first_pass[j]:
                agg[i] = agg[j]
                break
    for i in range(n):
        if agg[i] >= 0 or sp[i + 1] == sp[i]:
            continue
        agg[i] = count
        for jj in range(sp[i], sp[i + 1]):
            if agg[sj[jj]] < 0:
                agg[sj[jj]] = count
        count += 1
    return agg, count


# ------------------------------------------------------------- tentative prolongator
@_jit
def tentative_prolongator(agg, count, B, blocksize):
    """T (as CSR arrays) and the coarse candidates B_c (count * K, K): on each aggregate
    the columns of T are an orthonormal basis of B restricted to its unknowns (modified
    Gram-Schmidt; a column that B leaves dependent is zero), B = T B_c there."""
    n, K = B.shape
    # the unknowns of every aggregate, in order (a counting sort by aggregate)
    start = np.zeros(count + 1, dtype=np.int64)
    for d in range(n):
        a = agg[d // blocksize]
        if a >= 0:
            start[a + 1] += 1
    for a in range(count):
        start[a + 1] += start[a]
    fill = start[:-1].copy()
    members = np.empty(start[count], dtype=np.int64)
    for d in range(n):
        a = agg[d // blocksize]
        if a >= 0:
            members[fill[a]] = d
            fill[a] += 1
    tp = np.zeros(n + 1, dtype=np.int64)
    for d in range(n):
        tp[d + 1] = tp[d] + (K if agg[d // blocksize] >= 0 else 0)
    tj = np.empty(tp[n], dtype=np.int64)
    tx = np.zeros(tp[n])
    Bc = np.zeros((count * K, K))
    for a in range(count):
        lo, hi = start[a], start[a + 1]
        m = hi - lo
        Q = np.empty((m, K))
        for r in range(m):
            for k in range(K):
                Q[r, k] = B[members[lo + r], k]
        for k in range(K):
            scale = 0.0
            for r in range(m):
                scale += Q[r, k] * Q[r, k]
            scale = np.sqrt(scale)
            for i in range(k):
                dot = 0.0
                for r in range(m):
                    dot += Q[r, i] * Q[r, k]
                Bc[a * K + i, k] = dot
                for r in range(m):
                    Q[r, k] -= dot * Q[r, i]
            norm = 0.0
            for r in range(m):
                norm += Q[r, k] * Q[r, k]
            norm = np.sqrt(norm)
            if norm > 1e-10 * max(scale, 1e-300):
                Bc[a * K + k, k] = norm
                for r in range(m):
                    Q[r, k] /= norm
            else:
                for r in range(m):
                    Q[r, k] = 0.0
        for r in range(m):
            d = members[lo + r]
            for k in range(K):
                tj[tp[d] + k] = a * K + k
                tx[tp[d] + k] = Q[r, k]
    return tp, tj, tx, Bc


# ----------------------------------------------------------------------- Gauss-Seidel
@_jit
def _point_sweep(indptr, indices, data, dinv, u, f, reverse):
    """gauss_seidel_sweep for one right-hand side and 1 x 1 blocks (the common case)."""
    n = u.shape[0]
    for step in range(n):
        i = n - 1 - step if reverse else step
        acc = f[i, 0]
        for jj in range(indptr[i], indptr[i + 1]):
            acc -= data[jj] * u[indices[jj], 0]
        u[i, 0] += dinv[i, 0, 0] * acc


@_jit
def gauss_seidel_sweep(indptr, indices, data, dinv, u, f, reverse):
    """One lexicographic (block) Gauss-Seidel sweep on A u = f, in place on the
    node-major (n, k) array u. ``dinv`` (n / b, b, b) holds the inverses of the b x b
    diagonal blocks of A (b = 1: 1 / a_ii). For the block rows I = 0, 1, ... (``reverse``:
    from the last), u_I += D_I^-1 (f_I - (A u)_I) with the values already updated in this
    sweep. Equals u + (D + L)^-1 (f - A u) forwards and u + (D + U)^-1 (f - A u)
    backwards (D, L, U: block diagonal, strictly lower and upper block parts); from u = 0
    it is the triangular solve."""
    nb, b, _ = dinv.shape
    k = u.shape[1]
    if b == 1 and k == 1:
        _point_sweep(indptr, indices, data, dinv, u, f, reverse)
        return
    acc = np.empty((b, k), dtype=u.dtype)
    for step in range(nb):
        blk = nb - 1 - step if reverse else step
        for r in range(b):
            i = blk * b + r
            for c in range(k):
                acc[r, c] = f[i, c]
            for jj in range(indptr[i], indptr[i + 1]):
                a = data[jj]
                j = indices[jj]
                for c in range(k):
                    acc[r, c] -= a * u[j, c]
        for r in range(b):
            i = blk * b + r
            for s in range(b):
                w = dinv[blk, r, s]
                for c in range(k):
                    u[i, c] += w * acc[s, c]
