"""numba source of the compiled stencil kernels (imported lazily by :mod:`.kernels`).

Every grid is seen as (batch, n0, n1, n2): a 1D grid (n,) as (1, 1, n), a 2D grid (a, b)
as (a, 1, b) and a 3D grid as is, so that axis 0 is a real axis in 2D and 3D (the planes
that the pipelined kernels keep in cache are rows in 2D) and axis 2 is always real and
contiguous. Arrays come in flat (1D, C order) and rows are addressed by their offset: no
array view is made inside a kernel. The exported kernels pass their arrays on as
:func:`_borrow` views, which hold no reference: numba otherwise increments and decrements
an atomic reference count of every array argument on every call of a per-row or per-plane
helper (two atomic operations per array, about 100 ns per row of a 2D grid, more than the
arithmetic of a row of 63 nodes). Their small scratch arrays come from the caller, so a
call allocates nothing.

A stencil's offsets (o0, o1, o2) are grouped by the row of u they read, (o0, o1); see
:func:`_stencil_row`. Per axis of a transfer, ``mode`` is 0 for a size-1 axis that is not
coarsened, 1 for a Dirichlet axis (fine n = 2m + 1, coarse node I on fine node 2I + 1)
and 2 for a periodic axis (fine n = 2m, coarse I on fine 2I). Arithmetic stays in the
arrays' dtype: the weights come as an array ``w`` = (1/4, 1/2, 1) of that dtype.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

_jit = nb.njit(cache=True, nogil=True)
_inline = nb.njit(cache=True, nogil=True, inline="always")


@intrinsic
def _borrow(typingctx, a):
    """The array ``a`` as a view that owns no reference (its meminfo and parent are NULL,
    so numba's reference counting of it is a no-op). Only for arrays that the caller keeps
    alive for the whole call: the exported kernels' arguments, which the Python caller
    holds."""
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, value=args[0])
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()

    return a(a), codegen


# An index cast to unsigned skips numba's negative-index wrap-around, whose select per
# element would turn the loops' contiguous loads into gathers.
_u = np.uint64

# kinds of a group of offsets that share their source row (o0, o1)
CONST_CENTRE, CONST_THREE, VAR_CENTRE, VAR_THREE, GENERIC = 0, 1, 2, 3, 4
# constant stencils whose residual row is one loop: the row's own three offsets plus two
# (2D 5-point) or four (3D 7-point) rows at o2 = 0, or plus two rows of three (2D 9-point)
NOT_FUSED, CROSS2, CROSS4, BOX3 = 0, 1, 2, 3


@_inline
def _source(i, o, n, periodic):
    """Index i + o along an axis of n nodes, wrapped (periodic) or -1 (outside)."""
    s = i + o
    if s < 0:
        return n - 1 if periodic else -1
    if s >= n:
        return 0 if periodic else -1
    return s


@_inline
def _three_const(dst, db, base, bb, src, sb, n, cm, c0, cp, periodic, init):
    """dst[db + j] (= base[bb + j] + | +=) cm src[j-1] + c0 src[j] + cp src[j+1] (src from sb),
    j < n."""
    if n == 1:
        v = c0 * src[_u(sb)]
        dst[_u(db)] = base[_u(bb)] + v if init else dst[_u(db)] + v
        return
    lo = cp * src[_u(sb + 1)] + c0 * src[_u(sb)]
    hi = cm * src[_u(sb + n - 2)] + c0 * src[_u(sb + n - 1)]
    if periodic:
        lo += cm * src[_u(sb + n - 1)]
        hi += cp * src[_u(sb)]
    if init:
        dst[_u(db)] = base[_u(bb)] + lo
        for j in range(1, n - 1):
            dst[_u(db + j)] = base[_u(bb + j)] + (
                cm * src[_u(sb + j - 1)] + c0 * src[_u(sb + j)] + cp * src[_u(sb + j + 1)]
            )
        dst[_u(db + n - 1)] = base[_u(bb + n - 1)] + hi
    else:
        dst[_u(db)] += lo
        for j in range(1, n - 1):
            dst[_u(db + j)] += (
                cm * src[_u(sb + j - 1)] + c0 * src[_u(sb + j)] + cp * src[_u(sb + j + 1)]
            )
        dst[_u(db + n - 1)] += hi


@_inline
def _three_var(dst, db, base, bb, src, sb, n, cv, vm, v0, vp, sg, periodic, init):
    """As _three_const with the coefficients sg cv[vm + j], sg cv[v0 + j], sg cv[vp + j]."""
    if n == 1:
        v = sg * (cv[_u(v0)] * src[_u(sb)])
        dst[_u(db)] = base[_u(bb)] + v if init else dst[_u(db)] + v
        return
    lo = cv[_u(vp)] * src[_u(sb + 1)] + cv[_u(v0)] * src[_u(sb)]
    hi = cv[_u(vm + n - 1)] * src[_u(sb + n - 2)] + cv[_u(v0 + n - 1)] * src[_u(sb + n - 1)]
    if periodic:
        lo += cv[_u(vm)] * src[_u(sb + n - 1)]
        hi += cv[_u(vp + n - 1)] * src[_u(sb)]
    if init:
        dst[_u(db)] = base[_u(bb)] + sg * lo
        for j in range(1, n - 1):
            dst[_u(db + j)] = base[_u(bb + j)] + sg * (
                cv[_u(vm + j)] * src[_u(sb + j - 1)]
                + cv[_u(v0 + j)] * src[_u(sb + j)]
                + cv[_u(vp + j)] * src[_u(sb + j + 1)]
            )
        dst[_u(db + n - 1)] = base[_u(bb + n - 1)] + sg * hi
    else:
        dst[_u(db)] += sg * lo
        for j in range(1, n - 1):
            dst[_u(db + j)] += sg * (
                cv[_u(vm + j)] * src[_u(sb + j - 1)]
                + cv[_u(v0 + j)] * src[_u(sb + j)]
                + cv[_u(vp + j)] * src[_u(sb + j + 1)]
            )
        dst[_u(db + n - 1)] += sg * hi


@_inline
def _one_slot(dst, db, src, sb, n, o2, c, cv, cb, variable, sg, periodic):
    """dst[db + j] += c src[sb + j + o2] (or sg cv[cb + j] src[...]): one stencil offset."""
    lo = 1 if o2 < 0 else 0  # j whose neighbour j + o2 lies on the row
    hi = n - 1 if o2 > 0 else n
    if variable:
        for j in range(lo, hi):
            dst[_u(db + j)] += sg * (cv[_u(cb + j)] * src[_u(sb + j + o2)])
    else:
        for j in range(lo, hi):
            dst[_u(db + j)] += c * src[_u(sb + j + o2)]
    if periodic and o2 != 0 and n > 1:
        jd = n - 1 if o2 > 0 else 0
        v = src[_u(sb + n - 1 - jd)]
        dst[_u(db + jd)] += sg * (cv[_u(cb + jd)] * v) if variable else c * v


@_inline
def _fused_end(u, f, out, ob, fb, s1, s2, s3, s4, n2, gc, fused, periodic, j):
    """One end node j (0 or n2 - 1) of _fused_row, where j - 1 or j + 1 may leave the row."""
    jm = _source(j, -1, n2, periodic)
    jp = _source(j, 1, n2, periodic)
    v = f[_u(fb + j)]
    G = 5 if fused == CROSS4 else 3
    for g in range(G):
        rb = fb if g == 0 else s1 if g == 1 else s2 if g == 2 else s3 if g == 3 else s4
        v += gc[g, 1] * u[_u(rb + j)]
        if g == 0 or fused == BOX3:
            if jm >= 0:
                v += gc[g, 0] * u[_u(rb + jm)]
            if jp >= 0:
                v += gc[g, 2] * u[_u(rb + jp)]
    out[_u(ob + j)] = v


@_inline
def _fused_row(u, f, out, ob, fb, s1, s2, s3, s4, n2, gc, fused, periodic):
    """out = f - A u on one row in one loop. The row's own group is gc[0] (three offsets);
    CROSS2/CROSS4: gc[1:3] / gc[1:5] read rows s1.. at o2 = 0 only; BOX3: gc[1:3] read
    rows s1, s2 at o2 = -1, 0, 1. The coefficients in gc are already negated."""
    cm, c0, cp = gc[0, 0], gc[0, 1], gc[0, 2]
    if fused == CROSS2:
        a1, a2 = gc[1, 1], gc[2, 1]
        for j in range(1, n2 - 1):
            out[_u(ob + j)] = f[_u(fb + j)] + (
                cm * u[_u(fb + j - 1)]
                + c0 * u[_u(fb + j)]
                + cp * u[_u(fb + j + 1)]
                + a1 * u[_u(s1 + j)]
                + a2 * u[_u(s2 + j)]
            )
    elif fused == CROSS4:
        a1, a2, a3, a4 = gc[1, 1], gc[2, 1], gc[3, 1], gc[4, 1]
        for j in range(1, n2 - 1):
            out[_u(ob + j)] = f[_u(fb + j)] + (
                cm * u[_u(fb + j - 1)]
                + c0 * u[_u(fb + j)]
                + cp * u[_u(fb + j + 1)]
                + a1 * u[_u(s1 + j)]
                + a2 * u[_u(s2 + j)]
                + a3 * u[_u(s3 + j)]
                + a4 * u[_u(s4 + j)]
            )
    else:
        bm, b0, bp = gc[1, 0], gc[1, 1], gc[1, 2]
        dm, d0, dp = gc[2, 0], gc[2, 1], gc[2, 2]
        for j in range(1, n2 - 1):
            out[_u(ob + j)] = f[_u(fb + j)] + (
                cm * u[_u(fb + j - 1)]
                + c0 * u[_u(fb + j)]
                + cp * u[_u(fb + j + 1)]
                + bm * u[_u(s1 + j - 1)]
                + b0 * u[_u(s1 + j)]
                + bp * u[_u(s1 + j + 1)]
                + dm * u[_u(s2 + j - 1)]
                + d0 * u[_u(s2 + j)]
                + dp * u[_u(s2 + j + 1)]
            )
    _fused_end(u, f, out, ob, fb, s1, s2, s3, s4, n2, gc, fused, periodic, 0)
    if n2 > 1:
        _fused_end(u, f, out, ob, fb, s1, s2, s3, s4, n2, gc, fused, periodic, n2 - 1)


@_inline
def _fused_sources(b, i0, i1, n0, n1, n2, gsrc, periodic):
    """The offsets in u of the rows that the groups 1.. of a fused stencil read (group 0
    is the row itself), or s1 = -1 when one of them lies outside the grid."""
    s1 = s2 = s3 = s4 = 0
    for g in range(1, gsrc.shape[0]):
        t0 = _source(i0, gsrc[g, 0], n0, periodic)
        t1 = _source(i1, gsrc[g, 1], n1, periodic)
        if t0 < 0 or t1 < 0:
            return -1, 0, 0, 0
        sb = ((b * n0 + t0) * n1 + t1) * n2
        if g == 1:
            s1 = sb
        elif g == 2:
            s2 = sb
        elif g == 3:
            s3 = sb
        else:
            s4 = sb
    return s1, s2, s3, s4


@_inline
def _fused_colour_row(u, f, ub, s1, s2, s3, s4, n2, gc, fused, j0, s):
    """u[j] += s (f - A u)[j] for the nodes j = j0, j0 + 2, .. < n2 - 1 (j0 >= 1) of a row
    of a 2D 5-point (CROSS2) or 3D 7-point (CROSS4) constant stencil, computing the
    residual at those nodes only. They are coupled to nodes of the other colour only, so
    the loop carries no dependence."""
    cm, c0, cp = gc[0, 0], gc[0, 1], gc[0, 2]
    a1, a2 = gc[1, 1], gc[2, 1]
    count = (n2 - 1 - j0 + 1) // 2
    if fused == CROSS2:
        for jj in range(count):
            j = j0 + 2 * jj
            r = f[_u(ub + j)] + (
                c0 * u[_u(ub + j)]
                + cm * u[_u(ub + j - 1)]
                + cp * u[_u(ub + j + 1)]
                + a1 * u[_u(s1 + j)]
                + a2 * u[_u(s2 + j)]
            )
            u[_u(ub + j)] += s * r
    else:
        a3, a4 = gc[3, 1], gc[4, 1]
        for jj in range(count):
            j = j0 + 2 * jj
            r = f[_u(ub + j)] + (
                c0 * u[_u(ub + j)]
                + cm * u[_u(ub + j - 1)]
                + cp * u[_u(ub + j + 1)]
                + a1 * u[_u(s1 + j)]
                + a2 * u[_u(s2 + j)]
                + a3 * u[_u(s3 + j)]
                + a4 * u[_u(s4 + j)]
            )
            u[_u(ub + j)] += s * r


@_jit
def _stencil_row(u, f, out, ob, b, i0, i1, n0, n1, n2, st):
    """out[ob:ob + n2] = f - A u (residual) or A u (otherwise) on the row (b, i0, i1).

    The offsets come in groups that read the same row of u, (i0 + o0, i1 + o1): ``gc[g]``
    holds the constant coefficients of o2 = -1, 0, 1 (times sg: -1 for a residual, 1
    otherwise), ``gv[g]`` the index of a variable coefficient grid in ``cv`` (-1:
    constant, -2: no such offset), and ``gkind[g]`` says which fused loop reads the row."""
    gsrc, gkind, gc, gv, cv, sg, periodic, fused = st
    residual = sg < 0
    fb = ((b * n0 + i0) * n1 + i1) * n2
    if fused != NOT_FUSED and residual:
        # all of the stencil in one loop (one store per node) when every row it reads exists
        s1, s2, s3, s4 = _fused_sources(b, i0, i1, n0, n1, n2, gsrc, periodic)
        if s1 >= 0:
            _fused_row(u, f, out, ob, fb, s1, s2, s3, s4, n2, gc, fused, periodic)
            return
    cgrid = (i0 * n1 + i1) * n2  # the row's offset within one coefficient grid
    size = n0 * n1 * n2
    init = residual
    if not residual:
        for j in range(n2):
            out[_u(ob + j)] = 0
    for g in range(gsrc.shape[0]):
        s0 = _source(i0, gsrc[g, 0], n0, periodic)
        if s0 < 0:
            continue
        s1 = _source(i1, gsrc[g, 1], n1, periodic)
        if s1 < 0:
            continue
        sb = ((b * n0 + s0) * n1 + s1) * n2
        kind = gkind[g]
        if kind == CONST_CENTRE:
            c = gc[g, 1]
            if init:
                for j in range(n2):
                    out[_u(ob + j)] = f[_u(fb + j)] + c * u[_u(sb + j)]
            else:
                for j in range(n2):
                    out[_u(ob + j)] += c * u[_u(sb + j)]
        elif kind == CONST_THREE:
            _three_const(out, ob, f, fb, u, sb, n2, gc[g, 0], gc[g, 1], gc[g, 2], periodic, init)
        elif kind == VAR_CENTRE:
            cb = gv[g, 1] * size + cgrid
            if init:
                for j in range(n2):
                    out[_u(ob + j)] = f[_u(fb + j)] + sg * (cv[_u(cb + j)] * u[_u(sb + j)])
            else:
                for j in range(n2):
                    out[_u(ob + j)] += sg * (cv[_u(cb + j)] * u[_u(sb + j)])
        elif kind == VAR_THREE:
            _three_var(
                out,
                ob,
                f,
                fb,
                u,
                sb,
                n2,
                cv,
                gv[g, 0] * size + cgrid,
                gv[g, 1] * size + cgrid,
                gv[g, 2] * size + cgrid,
                sg,
                periodic,
                init,
            )
        else:
            if init:
                for j in range(n2):
                    out[_u(ob + j)] = f[_u(fb + j)]
            for t in range(3):
                v = gv[g, t]
                if v == -2:
                    continue
                cb = v * size + cgrid if v >= 0 else 0
                _one_slot(out, ob, u, sb, n2, t - 1, gc[g, t], cv, cb, v >= 0, sg, periodic)
        init = False
    if init:  # every source row lay outside the grid
        for j in range(n2):
            out[_u(ob + j)] = f[_u(fb + j)]


@_jit
def stencil(u, f, out, B, n0, n1, n2, gsrc, gkind, gc, gv, cv, sg, periodic, fused):
    """out = f - A u (st's sg = -1) or A u (sg = 1), row by row (one pass over memory)."""
    u, f, out = _borrow(u), _borrow(f), _borrow(out)
    st = (_borrow(gsrc), _borrow(gkind), _borrow(gc), _borrow(gv), _borrow(cv), sg, periodic, fused)
    for b in range(B):
        for i0 in range(n0):
            for i1 in range(n1):
                ob = ((b * n0 + i0) * n1 + i1) * n2
                _stencil_row(u, f, out, ob, b, i0, i1, n0, n1, n2, st)


@_inline
def _write_plane(u, ub, planes, pb, count):
    for j in range(count):
        u[_u(ub + j)] = planes[_u(pb + j)]


@_jit
def jacobi_update(
    u, f, planes, B, n0, n1, n2, gsrc, gkind, gc, gv, cv, sg, periodic, fused, s, sv, use_sv
):
    """u <- u + s (f - A u) at every node, in place, in one pass over memory.

    The new values of plane i0 go into a buffer and are written back once plane i0 + 1 (the
    last one that reads the old plane i0) is done; plane 0 is written back at the very end
    (a periodic last plane still reads it). ``planes`` holds 3 planes of n1 * n2."""
    u, f, planes, sv = _borrow(u), _borrow(f), _borrow(planes), _borrow(sv)
    st = (_borrow(gsrc), _borrow(gkind), _borrow(gc), _borrow(gv), _borrow(cv), sg, periodic, fused)
    plane = n1 * n2
    for b in range(B):
        for i0 in range(n0):
            slot = 2 if i0 == 0 else i0 % 2
            for i1 in range(n1):
                pb = slot * plane + i1 * n2
                _stencil_row(u, f, planes, pb, b, i0, i1, n0, n1, n2, st)
                ub = ((b * n0 + i0) * n1 + i1) * n2
                if use_sv:
                    cb = (i0 * n1 + i1) * n2
                    for j in range(n2):
                        planes[_u(pb + j)] = u[_u(ub + j)] + sv[_u(cb + j)] * planes[_u(pb + j)]
                else:
                    for j in range(n2):
                        planes[_u(pb + j)] = u[_u(ub + j)] + s * planes[_u(pb + j)]
            if i0 >= 2:
                _write_plane(u, (b * n0 + i0 - 1) * plane, planes, ((i0 - 1) % 2) * plane, plane)
        if n0 >= 2:
            _write_plane(u, (b * n0 + n0 - 1) * plane, planes, ((n0 - 1) % 2) * plane, plane)
        _write_plane(u, b * n0 * plane, planes, 2 * plane, plane)


@_inline
def _restrict_taps(I, n, mode, idx, wt, w):
    """Fine indices and weights of coarse index I along an axis; returns their number."""
    if mode == 0:
        idx[0] = I
        wt[0] = w[2]
        return 1
    base = 2 * I if mode == 1 else 2 * I - 1
    for t in range(3):
        k = base + t
        idx[t] = n - 1 if k < 0 else k
    wt[0] = w[0]
    wt[1] = w[1]
    wt[2] = w[0]
    return 3


@_inline
def _restrict_row_add(src, sb, n, dst, db, m, c, mode, w):
    """dst[db + J] += c (full weighting of the fine row src[sb:sb + n]), J < m."""
    q, h = w[0], w[1]
    if mode == 1:
        for J in range(m):
            dst[_u(db + J)] += c * (
                q * src[_u(sb + 2 * J)] + h * src[_u(sb + 2 * J + 1)] + q * src[_u(sb + 2 * J + 2)]
            )
    else:
        dst[_u(db)] += c * (q * src[_u(sb + n - 1)] + h * src[_u(sb)] + q * src[_u(sb + 1)])
        for J in range(1, m):
            dst[_u(db + J)] += c * (
                q * src[_u(sb + 2 * J - 1)] + h * src[_u(sb + 2 * J)] + q * src[_u(sb + 2 * J + 1)]
            )


@_jit
def _restrict_plane(src, pbase, w0, t0, n1, n2, out, ob, m1, m2, modes, w, idx1, w1):
    """out[ob:] (m1 x m2) = full weighting of the fine planes that start at src[pbase[a]]
    (n1 x n2 each; weights w0[a] across the planes)."""
    for I1 in range(m1):
        rb = ob + I1 * m2
        for J in range(m2):
            out[_u(rb + J)] = 0
        t1 = _restrict_taps(I1, n1, modes[1], idx1, w1, w)
        for a in range(t0):
            for c in range(t1):
                _restrict_row_add(
                    src, pbase[a] + idx1[c] * n2, n2, out, rb, m2, w0[a] * w1[c], modes[2], w
                )


@_jit
def restrict(x, out, iscr, fscr, B, n0, n1, n2, m0, m1, m2, modes, w):
    """out = R x, full weighting (weights 1/4, 1/2, 1/4 per coarsened axis); ``iscr`` and
    ``fscr`` are scratch of at least 9 integers and 6 numbers."""
    x, out, modes, w = _borrow(x), _borrow(out), _borrow(modes), _borrow(w)
    iscr, fscr = _borrow(iscr), _borrow(fscr)
    idx0, idx1, pbase = iscr[0:3], iscr[3:6], iscr[6:9]
    w0, w1 = fscr[0:3], fscr[3:6]
    for b in range(B):
        for I0 in range(m0):
            t0 = _restrict_taps(I0, n0, modes[0], idx0, w0, w)
            for a in range(t0):
                pbase[a] = (b * n0 + idx0[a]) * n1 * n2
            ob = (b * m0 + I0) * m1 * m2
            _restrict_plane(x, pbase, w0, t0, n1, n2, out, ob, m1, m2, modes, w, idx1, w1)


@_inline
def _interp_taps(i, m, mode, idx, wt, w):
    """Coarse indices and weights that interpolate fine index i along an axis."""
    if mode == 0:
        idx[0] = i
        wt[0] = w[2]
        return 1
    if mode == 1:
        if i % 2 == 1:
            idx[0] = (i - 1) // 2
            wt[0] = w[2]
            return 1
        t = 0
        if i // 2 - 1 >= 0:
            idx[t] = i // 2 - 1
            wt[t] = w[1]
            t += 1
        if i // 2 < m:
            idx[t] = i // 2
            wt[t] = w[1]
            t += 1
        return t
    if i % 2 == 0:
        idx[0] = i // 2
        wt[0] = w[2]
        return 1
    idx[0] = (i - 1) // 2
    idx[1] = (i + 1) // 2 if (i + 1) // 2 < m else 0
    wt[0] = w[1]
    wt[1] = w[1]
    return 2


@_inline
def _interp_row_add(u, ub, src, eb, m, mode, h):
    """u[ub:] += 1D linear interpolation of the coarse row src[eb:eb + m]."""
    if mode == 1:
        for J in range(m):
            u[_u(ub + 2 * J + 1)] += src[_u(eb + J)]
        u[_u(ub)] += h * src[_u(eb)]
        for J in range(1, m):
            u[_u(ub + 2 * J)] += h * (src[_u(eb + J - 1)] + src[_u(eb + J)])
        u[_u(ub + 2 * m)] += h * src[_u(eb + m - 1)]
    else:
        for J in range(m - 1):
            u[_u(ub + 2 * J)] += src[_u(eb + J)]
            u[_u(ub + 2 * J + 1)] += h * (src[_u(eb + J)] + src[_u(eb + J + 1)])
        u[_u(ub + 2 * m - 2)] += src[_u(eb + m - 1)]
        u[_u(ub + 2 * m - 1)] += h * (src[_u(eb + m - 1)] + src[_u(eb)])


@_jit
def _interp_plane(u, e, row, b, i0, n0, n1, n2, m0, m1, m, modes, w, idx0, w0, idx1, w1, assign):
    """u += P e on the fine plane i0 (u = P e when ``assign``): each fine row gets the 1D
    interpolation (along axis 2) of the weighted sum of the (up to four) coarse rows that
    interpolate it."""
    h = w[1]
    t0 = _interp_taps(i0, m0, modes[0], idx0, w0, w)
    for i1 in range(n1):
        t1 = _interp_taps(i1, m1, modes[1], idx1, w1, w)
        ub = ((b * n0 + i0) * n1 + i1) * n2
        if assign:  # zeroed row by row, while the row is in cache
            for j in range(n2):
                u[_u(ub + j)] = 0
        if t0 == 1 and t1 == 1 and w0[0] == w[2] and w1[0] == w[2]:
            eb = ((b * m0 + idx0[0]) * m1 + idx1[0]) * m
            _interp_row_add(u, ub, e, eb, m, modes[2], h)
            continue
        for J in range(m):
            row[_u(J)] = 0
        for a in range(t0):
            for c in range(t1):
                rb = ((b * m0 + idx0[a]) * m1 + idx1[c]) * m
                wc = w0[a] * w1[c]
                for J in range(m):
                    row[_u(J)] += wc * e[_u(rb + J)]
        _interp_row_add(u, ub, row, 0, m, modes[2], h)


@_jit
def _colour_plane(u, f, plane, b, p, n0, n1, n2, st, parity, s, sv, use_sv):
    """u <- u + s (f - A u) on the nodes of plane p with (p + i1 + i2) % 2 == parity."""
    gsrc, gkind, gc, gv, cv, sg, periodic, fused = st
    for i1 in range(n1):
        rb = i1 * n2
        ub = ((b * n0 + p) * n1 + i1) * n2
        j0 = (parity + p + i1) % 2
        if fused != NOT_FUSED and fused != BOX3 and not use_sv:
            s1, s2, s3, s4 = _fused_sources(b, p, i1, n0, n1, n2, gsrc, periodic)
            if s1 >= 0:  # the interior nodes of the colour directly, then the two ends
                _fused_colour_row(u, f, ub, s1, s2, s3, s4, n2, gc, fused, 2 - j0, s)
                if j0 == 0:
                    _fused_end(u, f, plane, rb, ub, s1, s2, s3, s4, n2, gc, fused, periodic, 0)
                    u[_u(ub)] += s * plane[_u(rb)]
                last = n2 - 1
                if last > 0 and (last - j0) % 2 == 0:
                    _fused_end(u, f, plane, rb, ub, s1, s2, s3, s4, n2, gc, fused, periodic, last)
                    u[_u(ub + last)] += s * plane[_u(rb + last)]
                continue
        _stencil_row(u, f, plane, rb, b, p, i1, n0, n1, n2, st)
        if use_sv:
            cb = (p * n1 + i1) * n2
            for j in range(j0, n2, 2):
                u[_u(ub + j)] += sv[_u(cb + j)] * plane[_u(rb + j)]
        else:
            for j in range(j0, n2, 2):
                u[_u(ub + j)] += s * plane[_u(rb + j)]


@_jit
def _advance(q, done, S, u, f, e, plane, row, b, dims, st, modes, w, stages, scratch):
    """Run every stage k as far as plane min(q + S - 1 - k, n0 - 1): afterwards the last
    stage is done on planes 0 .. q. ``dims`` = (n0, n1, n2, m0, m1, m2), ``stages`` =
    (interp, parities, scales, sv, use_sv), ``scratch`` = (ia, wa, ib, wb)."""
    n0, n1, n2, m0, m1, m2 = dims
    interp, parities, scales, sv, use_sv = stages
    ia, wa, ib, wb = scratch
    for k in range(S):
        tgt = min(q + S - 1 - k, n0 - 1)
        while done[k] <= tgt:
            if interp != 0 and k == 0:
                _interp_plane(
                    u, e, row, b, done[k], n0, n1, n2, m0, m1, m2, modes, w, ia, wa, ib, wb,
                    interp == 2,
                )  # fmt: skip
            else:
                c = k - 1 if interp != 0 else k
                _colour_plane(
                    u, f, plane, b, done[k], n0, n1, n2, st, parities[c], scales[c], sv, use_sv
                )
            done[k] += 1


@_jit
def sweep(
    u,
    f,
    e,
    out,
    plane,
    ring,
    row,
    iscr,
    fscr,
    B,
    n0,
    n1,
    n2,
    m0,
    m1,
    m2,
    gsrc,
    gkind,
    gc,
    gv,
    cv,
    sg,
    periodic,
    fused,
    modes,
    w,
    parities,
    scales,
    sv,
    use_sv,
    interp,
    restrict,
):
    """Up to three things in one pass over memory, plane by plane along axis 0:

    1. ``interp`` 1: u += P e (e on the coarse grid m0 x m1 x m2); 2: u = P e;
    2. the colour steps k = 0, 1, ...: u <- u + s_k (f - A u) on the nodes of parity
       ``parities[k]`` (scale ``scales[k]``, or the grid ``sv`` when ``use_sv``), each
       exact for a stencil with axis neighbours only (see :func:`_colour_plane`);
    3. ``restrict``: out = R (f - A u) of the result (full weighting onto the coarse grid
       m0 x m1 x m2), without storing the residual: the residual of the (at most three)
       fine planes a coarse plane needs goes to ``ring`` just before.

    Stage k may run on plane p once stage k - 1 is done on planes p - 1 .. p + 1 (it reads
    them and writes plane p only), and the residual of plane p once the last stage is done
    on p - 1 .. p + 1; so on a Dirichlet grid the stages run a plane or two apart while
    the planes they touch are in cache. A periodic axis 0 couples plane 0 to the last
    plane: there every stage covers the grid before the residual starts. ``plane`` holds
    n1 * n2 numbers, ``ring`` 3 * n1 * n2, ``row`` m2; ``iscr`` and ``fscr`` are scratch
    of at least 22 + S integers (S: the stages) and 12 numbers."""
    u, f, e, out = _borrow(u), _borrow(f), _borrow(e), _borrow(out)
    plane, ring, row = _borrow(plane), _borrow(ring), _borrow(row)
    st = (_borrow(gsrc), _borrow(gkind), _borrow(gc), _borrow(gv), _borrow(cv), sg, periodic, fused)
    modes, w, parities = _borrow(modes), _borrow(w), _borrow(parities)
    scales, sv = _borrow(scales), _borrow(sv)
    iscr, fscr = _borrow(iscr), _borrow(fscr)
    S = parities.shape[0] + 1 if interp != 0 else parities.shape[0]
    held, slots, pbase = iscr[0:3], iscr[3:6], iscr[6:9]
    idx0, idx1, ia, ib = iscr[9:12], iscr[12:15], iscr[15:18], iscr[18:21]
    done = iscr[21 : 22 + S]
    w0, w1, wa, wb = fscr[0:3], fscr[3:6], fscr[6:9], fscr[9:12]
    size = n1 * n2
    dims = (n0, n1, n2, m0, m1, m2)
    stages = (interp, parities, scales, sv, use_sv)
    scratch = (ia, wa, ib, wb)
    for b in range(B):
        for k in range(S):
            done[k] = 0
        for a in range(3):
            held[a] = -1
        for I0 in range(m0 if restrict else 0):
            t0 = _restrict_taps(I0, n0, modes[0], idx0, w0, w)
            for a in range(t0):
                slots[a] = -1
                for c in range(3):
                    if held[c] == idx0[a]:
                        slots[a] = c
            for a in range(t0):
                if slots[a] >= 0:
                    continue
                for c in range(3):  # a slot that holds none of this coarse plane's planes
                    free = True
                    for a2 in range(t0):
                        if slots[a2] == c:
                            free = False
                    if free:
                        slots[a] = c
                        break
                p = idx0[a]
                held[slots[a]] = p
                q = n0 - 1 if periodic else min(p + 1, n0 - 1)
                _advance(q, done, S, u, f, e, plane, row, b, dims, st, modes, w, stages, scratch)
                for i1 in range(n1):
                    _stencil_row(u, f, ring, slots[a] * size + i1 * n2, b, p, i1, n0, n1, n2, st)
            for a in range(t0):
                pbase[a] = slots[a] * size
            ob = (b * m0 + I0) * m1 * m2
            _restrict_plane(ring, pbase, w0, t0, n1, n2, out, ob, m1, m2, modes, w, idx1, w1)
        _advance(n0 - 1, done, S, u, f, e, plane, row, b, dims, st, modes, w, stages, scratch)


@_jit
def residual_sq(u, f, out, row, acc, B, n0, n1, n2, gsrc, gkind, gc, gv, cv, sg, periodic, fused):
    """out[b] = sum of (f - A u)^2 over sample b, in float64, without storing f - A u; the
    squares are summed per column into ``acc`` (n2 float64s), so the loop vectorizes."""
    u, f, out, row, acc = _borrow(u), _borrow(f), _borrow(out), _borrow(row), _borrow(acc)
    st = (_borrow(gsrc), _borrow(gkind), _borrow(gc), _borrow(gv), _borrow(cv), sg, periodic, fused)
    for b in range(B):
        for j in range(n2):
            acc[j] = 0.0
        for i0 in range(n0):
            for i1 in range(n1):
                _stencil_row(u, f, row, 0 * b, b, i0, i1, n0, n1, n2, st)
                for j in range(n2):
                    v = np.float64(row[_u(j)])
                    acc[_u(j)] += v * v
        out[b] = acc.sum()


@_inline
def _cubic_taps(i, m, periodic):
    """Fine row i of a cubic interpolation along an axis of m coarse nodes: the coarse rows
    j0..j3 it reads and their weights w0..w3 (a weight 0 where a tap is the Dirichlet
    boundary). Dirichlet (n = 2m + 1, m >= 3): fine 2j + 1 is coarse j, fine 2k lies
    between coarse k - 1 and k. Periodic (n = 2m, m >= 4): fine 2j is coarse j."""
    if periodic:
        k = i // 2
        if i % 2 == 0:
            return k, k, k, k, 1.0, 0.0, 0.0, 0.0
        return (k - 1) % m, k, (k + 1) % m, (k + 2) % m, -0.0625, 0.5625, 0.5625, -0.0625
    if i % 2 == 1:
        k = i // 2
        return k, k, k, k, 1.0, 0.0, 0.0, 0.0
    k = i // 2
    if k == 0:  # between the boundary (0) and coarse 0: Lagrange on (0, x0, x1, x2)
        return 0, 1, 2, 0, 0.9375, -0.3125, 0.0625, 0.0
    if k == m:
        return m - 1, m - 2, m - 3, 0, 0.9375, -0.3125, 0.0625, 0.0
    if k == 1:  # the boundary is the left-most tap
        return 0, 1, 2, 0, 0.5625, 0.5625, -0.0625, 0.0
    if k == m - 1:
        return m - 2, m - 1, m - 3, 0, 0.5625, 0.5625, -0.0625, 0.0
    return k - 2, k - 1, k, k + 1, -0.0625, 0.5625, 0.5625, -0.0625


@_inline
def _cubic_line(x, xb, out, ob, m, periodic):
    """One line of :func:`cubic_axis` along a contiguous axis (the taps of
    :func:`_cubic_taps` written out)."""
    if periodic:
        for j in range(m):
            out[ob + 2 * j] = x[xb + j]
        for j in range(1, m - 2):
            out[ob + 2 * j + 1] = 0.5625 * (x[xb + j] + x[xb + j + 1]) - 0.0625 * (
                x[xb + j - 1] + x[xb + j + 2]
            )
        for j in (0, m - 2, m - 1):
            jm, j1, j2 = (j - 1) % m, (j + 1) % m, (j + 2) % m
            out[ob + 2 * j + 1] = 0.5625 * (x[xb + j] + x[xb + j1]) - 0.0625 * (
                x[xb + jm] + x[xb + j2]
            )
        return
    for j in range(m):
        out[ob + 2 * j + 1] = x[xb + j]
    for k in range(2, m - 1):
        out[ob + 2 * k] = 0.5625 * (x[xb + k - 1] + x[xb + k]) - 0.0625 * (
            x[xb + k - 2] + x[xb + k + 1]
        )
    out[ob] = 0.9375 * x[xb] - 0.3125 * x[xb + 1] + 0.0625 * x[xb + 2]
    out[ob + 2 * m] = 0.9375 * x[xb + m - 1] - 0.3125 * x[xb + m - 2] + 0.0625 * x[xb + m - 3]
    out[ob + 2] = 0.5625 * (x[xb] + x[xb + 1]) - 0.0625 * x[xb + 2]
    out[ob + 2 * m - 2] = 0.5625 * (x[xb + m - 2] + x[xb + m - 1]) - 0.0625 * x[xb + m - 3]


@_jit
def cubic_axis(x, out, a, m, c, periodic):
    """out = cubic interpolation of x along the middle axis of x seen as (a, m, c), into
    out seen as (a, n, c): each fine row is a combination of at most four coarse rows
    (:func:`_cubic_taps`), the inner loop runs along the contiguous c."""
    x, out = _borrow(x), _borrow(out)
    n = 2 * m if periodic else 2 * m + 1
    if c == 1:  # along the contiguous axis: the taps written out, no per-node look-up
        for ia in range(a):
            _cubic_line(x, ia * m, out, ia * n, m, periodic)
        return
    for ia in range(a):
        xb = ia * m * c
        ob = ia * n * c
        for i in range(n):
            j0, j1, j2, j3, w0, w1, w2, w3 = _cubic_taps(i, m, periodic)
            o = ob + i * c
            s0, s1, s2, s3 = xb + j0 * c, xb + j1 * c, xb + j2 * c, xb + j3 * c
            if w1 == 0.0:
                for k in range(c):
                    out[o + k] = x[s0 + k]
            else:
                for k in range(c):
                    out[o + k] = w0 * x[s0 + k] + w1 * x[s1 + k] + w2 * x[s2 + k] + w3 * x[s3 + k]
