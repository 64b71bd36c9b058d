"""The algebraic instance's operators: sparse A^l, P, R and the smoothers B^{l,i}.

Every tensor the cycle sees here is shaped (batch, n): one row per right-hand side, one
column per unknown, as the core cycle's (batch, channel, *space) with the space flattened.
In memory it is stored *node-major*: ``u.T`` (n, batch) is the contiguous array, so the
``batch`` values of one unknown lie next to each other. A CSR row i of A then gathers, for
every nonzero a_ij, ``batch`` contiguous numbers u_j, and one pass over A serves every
right-hand side (the matrix is read once, not ``batch`` times); with batch-major storage
each right-hand side would be a separate SpMV. For one right-hand side both are the same.

How a product is computed (the values are the same on every path):

* CPU tensors outside autograd: SciPy's compiled CSR kernels on zero-copy NumPy views. The
  residual f - A u is fused (f copied once, then -A u accumulated into it in the same pass)
  and P's ``add_to`` accumulates P e straight into u. torch's CPU CSR product measured
  about 3x slower than SciPy's here (5-point Poisson, 10^6 unknowns, one thread).
* CUDA tensors, or tensors that need a gradient: ``torch.sparse_csr_tensor`` @ dense, the
  reference path (the tests compare the fast path against it). Gradients flow to u and,
  when they require one, to the matrix values.

Smoothers are B modules (data -> feature) of the cycle's step u <- u + B (f - A u):
:class:`DiagonalSmoother` (damped Jacobi, l1-Jacobi, one Chebyshev step), :class:`ColourStep`
(one colour of a multicolour Gauss-Seidel sweep, parallel: the CUDA Gauss-Seidel),
:class:`GaussSeidelSweep` (a lexicographic forward or backward sweep, compiled,
sequential: the CPU Gauss-Seidel) and :class:`CoarseSolve` (B = A^-1).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from torch import Tensor, nn

from mgnet.core.cycle import residual as core_residual

try:  # SciPy's compiled CSR kernels: y += A x for (n, k) arrays, in place
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - a SciPy without them takes the public A @ x
    _sparsetools = None

__all__ = [
    "SparseMatrix",
    "DiagonalSmoother",
    "ColourStep",
    "CoarseSolve",
    "GaussSeidelSweep",
    "gauss_seidel",
    "jacobi",
    "l1_jacobi",
    "chebyshev",
    "multicolour_gauss_seidel",
    "colour_graph",
    "spectral_radius",
    "as_csr",
]


_KERNELS = None


def _kernels():
    """The compiled CPU kernels of the algebraic instance (imported, and numba with them,
    on first use)."""
    global _KERNELS
    if _KERNELS is None:
        from mgnet.multigrid import _amg_compiled

        _KERNELS = _amg_compiled
    return _KERNELS


def as_csr(M, name: str = "A") -> sp.csr_matrix:
    """M as a canonical SciPy CSR matrix (sorted indices, no duplicates, float)."""
    if not sp.issparse(M):
        M = np.asarray(M)
        if M.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D matrix, got an array of shape {M.shape}")
    M = sp.csr_matrix(M)
    if not np.issubdtype(M.dtype, np.floating):
        M = M.astype(np.float64)
    M.sum_duplicates()
    M.sort_indices()
    return M


def _index_dtype(M: sp.csr_matrix) -> np.dtype:
    return np.int32 if max(M.nnz, *M.shape) < 2**31 - 1 else np.int64


def _cols(u: Tensor) -> Tensor:
    """The (n, batch) node-major array behind a (batch, n) tensor (a view when possible)."""
    t = u.T
    return t if t.is_contiguous() else t.contiguous()


_FLOATS = (torch.float32, torch.float64)


def _numpy_ok(*ts: Tensor) -> bool:
    """True when SciPy's kernels can run on these tensors: CPU, no autograd, one dtype.
    (Called several times per level and cycle: written for few attribute look-ups.)"""
    dtype = ts[0].dtype
    if _sparsetools is None or dtype not in _FLOATS:
        return False
    grad = torch.is_grad_enabled()
    for t in ts:  # noqa: SIM110 (a loop, not all() over a generator: the hot path)
        if not t.is_cpu or t.dtype != dtype or (grad and t.requires_grad):
            return False
    return True


class SparseMatrix(nn.Module):
    """A sparse matrix acting on (batch, n) tensors: A^l (feature -> data), P (feature,
    coarse -> fine) or R (data, fine -> coarse) of the algebraic instance.

    Built from anything SciPy turns into CSR. The CSR arrays are buffers, so ``.to(device,
    dtype)`` moves them (indices stay integer). ``forward(u)`` is M u, ``residual(u, f)``
    is f - M u in one pass and ``add_to(u, e)`` is u += M e in place (P's interpolation in
    the in-place cycle). ``symbol`` names the operator in printed tables.
    """

    def __init__(self, M, symbol: str = "A") -> None:
        super().__init__()
        M = as_csr(M, symbol)
        idx = _index_dtype(M)
        self.symbol = symbol
        self.shape = (int(M.shape[0]), int(M.shape[1]))
        self.register_buffer("crow", torch.from_numpy(M.indptr.astype(idx)))
        self.register_buffer("col", torch.from_numpy(M.indices.astype(idx)))
        self.register_buffer("values", torch.from_numpy(M.data.astype(np.float64)))
        self._cache: dict = {}

    # ------------------------------------------------------------------ bookkeeping
    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def _apply(self, fn, recurse: bool = True):  # .to(), .double(), ...: drop cached views
        self._cache = {}
        return super()._apply(fn, recurse)

    def to_scipy(self) -> sp.csr_matrix:
        """The matrix as a SciPy CSR matrix in float64 (a copy on the CPU)."""
        return sp.csr_matrix(
            (
                self.values.detach().double().cpu().numpy(),
                self.col.cpu().numpy(),
                self.crow.cpu().numpy(),
            ),
            shape=self.shape,
        )

    def _np(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, data, -data) as zero-copy NumPy views of the CPU buffers."""
        values = self._buffers["values"]
        key = ("np", values.data_ptr(), values.dtype)
        hit = self._cache.get(key)
        if hit is None:
            data = values.detach().numpy()
            hit = (self.crow.numpy(), self.col.numpy(), data, -data)
            self._cache = {key: hit}
        return hit

    def csr(self) -> Tensor:
        """The matrix as a ``torch.sparse_csr_tensor`` (rebuilt when values need a grad)."""
        key = ("csr", self.values.device, self.values.dtype)
        if self.values.requires_grad:
            return self._build_csr()
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._build_csr()
        return hit

    def _build_csr(self) -> Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            return torch.sparse_csr_tensor(
                self.crow, self.col, self.values, size=self.shape, check_invariants=False
            )

    def _check(self, u: Tensor, arg: str = "u") -> None:
        if u.dim() != 2 or u.shape[1] != self.shape[1]:
            raise ValueError(
                f"{arg}: expected a (batch, {self.shape[1]}) tensor for {self.symbol}, "
                f"got {tuple(u.shape)}"
            )

    # --------------------------------------------------------------------- products
    def _matvecs(self, negate: bool, x: np.ndarray, y: np.ndarray) -> None:
        """y += M x (``negate``: y -= M x) for node-major (n, k) arrays, in place (SciPy's
        compiled kernel)."""
        indptr, indices, data, neg = self._np()
        m, n = self.shape
        k = x.shape[1]
        if k == 1:
            _sparsetools.csr_matvec(
                m, n, indptr, indices, neg if negate else data, x.reshape(-1), y.reshape(-1)
            )
        else:
            _sparsetools.csr_matvecs(
                m, n, k, indptr, indices, neg if negate else data, x.reshape(-1), y.reshape(-1)
            )

    def forward(self, u: Tensor) -> Tensor:
        self._check(u)
        values = self._buffers["values"]
        if _numpy_ok(u, values):
            x = _cols(u).numpy()
            y = np.zeros((self.shape[0], x.shape[1]), dtype=x.dtype)
            self._matvecs(False, x, y)
            return torch.from_numpy(y).T
        return (self.csr() @ _cols(u).to(values.dtype)).T

    def residual(self, u: Tensor | None, f: Tensor, out: Tensor | None = None) -> Tensor:
        """f - M u (u = None is zero). ``out``, a (batch, m) node-major tensor, receives it
        when given (the smoothers' scratch buffer); f is never written."""
        if u is None:
            return f
        self._check(u)
        if _numpy_ok(u, f, self._buffers["values"]):
            if out is None:
                y = _cols(f).numpy().copy()
                res = torch.from_numpy(y).T
            else:
                res = out
                y = out.T.numpy()
                np.copyto(y, _cols(f).numpy())
            self._matvecs(True, _cols(u).numpy(), y)
            return res
        r = f - self(u)
        if out is not None:
            return out.copy_(r)
        return r

    def add_to(self, u: Tensor, e: Tensor) -> Tensor:
        """u += M e in place (u must be node-major); returns u."""
        self._check(e, "e")
        ut = u.T
        if _numpy_ok(u, e, self._buffers["values"]) and ut.is_contiguous():
            self._matvecs(False, _cols(e).numpy(), ut.numpy())
            return u
        return u.add_(self(e))

    # ------------------------------------------------------------------------ facts
    def diagonal(self) -> np.ndarray:
        """The diagonal of the matrix (float64 NumPy)."""
        return self.to_scipy().diagonal()

    def extra_repr(self) -> str:
        return f"{self.symbol}: {self.shape[0]} x {self.shape[1]}, {self.nnz} nonzeros"


# ------------------------------------------------------------------------- smoothers
def _scratch(owner: nn.Module, like: Tensor, rows: int) -> Tensor:
    """A node-major (batch, rows) buffer owned by a smoother, reused across calls."""
    key = (like.shape[0], rows, like.dtype, like.device)
    buf = owner.__dict__.get("_buf")
    if buf is None or buf[0] != key:
        t = torch.empty(rows, like.shape[0], dtype=like.dtype, device=like.device).T
        owner.__dict__["_buf"] = buf = (key, t)
    return buf[1]


class DiagonalSmoother(nn.Module):
    """B = diag(s): one step u <- u + diag(s) (f - A u).

    ``s = w / a_ii`` is damped Jacobi, ``s = 1 / (a_ii + sum_j!=i |a_ij|)`` is l1-Jacobi,
    ``s = w_i / a_ii`` with Chebyshev step sizes w_i is one step of Chebyshev smoothing.
    ``update_`` does the step in place: the residual in a scratch buffer, then one
    multiply-add into u. ``name`` says which smoother it is.
    """

    def __init__(self, scale, name: str = "diag(s)") -> None:
        super().__init__()
        scale = torch.as_tensor(np.asarray(scale, dtype=np.float64))
        if scale.dim() != 1 or not bool(torch.isfinite(scale).all()):
            raise ValueError(f"{name}: the scaling must be a finite vector (no zero diagonal)")
        self.name = name
        self.register_buffer("scale", scale)

    def forward(self, r: Tensor) -> Tensor:
        return r * self.scale

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor:
        """u <- u + B (f - A u), in place: the cycle's step with this B, fused."""
        if isinstance(A, SparseMatrix):
            r = A.residual(u, f, out=_scratch(self, u, A.shape[0]))
        else:
            r = core_residual(A, u, f)
        return u.addcmul_(r, self.scale)

    def extra_repr(self) -> str:
        return f"B = {self.name}"


def _diagonal(A: sp.csr_matrix, name: str = "A") -> np.ndarray:
    d = A.diagonal()
    if not np.all(d != 0):
        raise ValueError(
            f"{name}: row {int(np.flatnonzero(d == 0)[0])} has a zero diagonal; "
            "Jacobi-type smoothers need a_ii != 0"
        )
    return d


def jacobi(A, omega: float) -> DiagonalSmoother:
    """B = w D^-1, damped Jacobi."""
    if not omega > 0:
        raise ValueError(f"omega: the damping must be positive, got {omega}")
    return DiagonalSmoother(omega / _diagonal(as_csr(A)), f"{omega:.4g} D^-1 (damped Jacobi)")


def l1_jacobi(A, omega: float = 1.0) -> DiagonalSmoother:
    """B = w D_l1^-1 with (D_l1)_ii = |a_ii| + sum_{j != i} |a_ij|: l1-Jacobi, convergent
    for every symmetric positive definite A without estimating a spectral radius."""
    A = as_csr(A)
    d = _diagonal(A)
    l1 = abs(A).sum(axis=1).A1
    return DiagonalSmoother(omega * np.sign(d) / l1, f"{omega:.4g} D_l1^-1 (l1-Jacobi)")


def spectral_radius(A, scale: np.ndarray | None = None, steps: int = 15, seed: int = 0) -> float:
    """rho(diag(scale) A) for a symmetric A and positive scale, by Lanczos on the similar
    symmetric matrix S^1/2 A S^1/2 (``steps`` matrix-vector products). The largest Ritz
    value is a lower bound that is tight after a few steps; it is returned times 1.01."""
    A = as_csr(A)
    n = A.shape[0]
    s = np.ones(n) if scale is None else np.sqrt(np.abs(scale))
    steps = min(steps, n)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(n)
    v /= np.linalg.norm(v)
    alphas, betas = [], []
    v_prev = np.zeros(n)
    beta = 0.0
    for _ in range(steps):
        w = s * (A @ (s * v)) - beta * v_prev
        alpha = float(v @ w)
        w -= alpha * v
        alphas.append(alpha)
        beta = float(np.linalg.norm(w))
        if beta < 1e-12 * max(1.0, abs(alpha)):
            break
        betas.append(beta)
        v_prev, v = v, w / beta
    k = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: k - 1], 1) + np.diag(betas[: k - 1], -1)
    return 1.01 * float(np.abs(np.linalg.eigvalsh(T)).max())


def chebyshev(
    A, degree: int = 3, lower: float = 1.0 / 30.0, rho: float | None = None
) -> list[DiagonalSmoother]:
    """B^{l,i} = w_i D^-1, i = 1..degree: Chebyshev smoothing for D^-1 A, whose error
    propagator prod_i (I - w_i D^-1 A) is the Chebyshev polynomial that is smallest on
    [lower * rho, rho] (rho = rho(D^-1 A), estimated when not given)."""
    from mgnet.stencils import chebyshev_weights

    A = as_csr(A)
    dinv = 1.0 / _diagonal(A)
    rho = spectral_radius(A, dinv) if rho is None else float(rho)
    return [
        DiagonalSmoother(w * dinv, f"{w:.4g} D^-1 (Chebyshev step {i + 1}/{degree})")
        for i, w in enumerate(chebyshev_weights(degree, rho, lower))
    ]


# ------------------------------------------------------- lexicographic Gauss-Seidel
class _TriangularSolve(torch.autograd.Function):
    """x = B r for a :class:`GaussSeidelSweep` B, computed on the CPU (any device and
    dtype in and out); the gradient is B^T g, the transposed triangular solve."""

    @staticmethod
    def forward(ctx, r: Tensor, sweep: GaussSeidelSweep) -> Tensor:
        ctx.sweep = sweep
        return sweep._solve(r, transpose=False)

    @staticmethod
    def backward(ctx, g: Tensor):
        return ctx.sweep._solve(g, transpose=True), None


def _block_diagonal_inverse(A: sp.csr_matrix, b: int, name: str = "A") -> np.ndarray:
    """The inverses of the b x b diagonal blocks of A, shape (n / b, b, b) (b = 1:
    1 / a_ii). A zero diagonal entry or a singular block is a one-line ValueError."""
    if b == 1:
        return (1.0 / _diagonal(A, name))[:, None, None]
    C = A.tocoo()
    on = C.row // b == C.col // b
    D = np.zeros((A.shape[0] // b, b, b))
    D[C.row[on] // b, C.row[on] % b, C.col[on] % b] = C.data[on]
    det = np.linalg.det(D)
    bad = np.flatnonzero(~(np.abs(det) > 1e-300))
    if bad.size:
        raise ValueError(
            f"{name}: the {b} x {b} diagonal block of node {int(bad[0])} is singular; "
            "block Gauss-Seidel needs invertible diagonal blocks"
        )
    return np.linalg.inv(D)


class GaussSeidelSweep(nn.Module):
    """B = (D + L)^-1 (forward sweep) or B = (D + U)^-1 (``reverse=True``, backward sweep):
    one lexicographic Gauss-Seidel sweep over the unknowns in their natural order, D, L,
    U the diagonal, strictly lower and strictly upper parts of A^l. With ``blocksize``
    b > 1 it is block Gauss-Seidel: D holds the b x b diagonal blocks (the unknowns of
    one node, e.g. the displacements of elasticity), L and U the blocks off it.

    ``update_(A, u, f)`` is the sweep itself, u <- u + B (f - A u), done in place by a
    compiled kernel (each u_i is replaced using the values already updated in the same
    sweep; the residual is never formed); ``forward(r)`` is the sweep from u = 0, the
    triangular solve B r (a coarse level's first step). Forward sweeps before the coarse
    correction and backward sweeps after it make the cycle a symmetric operator for a
    symmetric A (a CG preconditioner), because (D + L)^T = D + U.

    The sweep is sequential: it runs on the CPU. On CUDA tensors, or when a gradient is
    needed, B r is computed on a CPU copy and the gradient is B^T g (the transposed
    solve); the multicolour sweep (:func:`multicolour_gauss_seidel`) is the parallel
    Gauss-Seidel for CUDA.

    ``A`` is the level's :class:`SparseMatrix`, shared (not copied) with the level.
    """

    def __init__(self, A: SparseMatrix, reverse: bool = False, blocksize: int = 1) -> None:
        super().__init__()
        self.A = A
        self.reverse = bool(reverse)
        self.blocksize = int(blocksize)
        dinv = _block_diagonal_inverse(A.to_scipy(), self.blocksize)
        self.register_buffer("dinv", torch.from_numpy(dinv))
        self._copies: dict[bool, tuple] = {}

    def _apply(self, fn, recurse: bool = True):  # .to(), .double(), ...: drop the copies
        self._copies = {}
        return super()._apply(fn, recurse)

    def _fast(self, *ts: Tensor) -> bool:
        return _numpy_ok(*ts, self.A._buffers["values"], self._buffers["dinv"])

    def _cpu64(self, transpose: bool) -> tuple:
        """(indptr, indices, data, dinv) of A (or of A^T) as float64 CPU arrays."""
        hit = self._copies.get(transpose)
        if hit is None:
            M = self.A.to_scipy()
            dinv = self.dinv.detach().double().cpu().numpy()
            if transpose:  # (D + L)^T = D^T + (the strictly upper part of A^T): sweep A^T
                M = M.T.tocsr()
                M.sort_indices()
                dinv = np.ascontiguousarray(dinv.transpose(0, 2, 1))
            hit = self._copies[transpose] = (M.indptr, M.indices, M.data, dinv)
        return hit

    def _solve(self, r: Tensor, transpose: bool) -> Tensor:
        """B r (or B^T r) on a float64 CPU copy of r, returned on r's device and dtype."""
        rhs = np.ascontiguousarray(_cols(r).detach().double().cpu().numpy())
        x = np.zeros_like(rhs)
        _kernels().gauss_seidel_sweep(*self._cpu64(transpose), x, rhs, self.reverse != transpose)
        return torch.from_numpy(x).to(r.device, r.dtype).T

    def _sweep(self, u: np.ndarray, f: np.ndarray) -> None:
        """The compiled sweep on node-major arrays in this module's dtype (CPU)."""
        indptr, indices, data, _ = self.A._np()
        dinv = self._buffers["dinv"].numpy()
        _kernels().gauss_seidel_sweep(indptr, indices, data, dinv, u, f, self.reverse)

    def forward(self, r: Tensor) -> Tensor:
        self.A._check(r, "r")
        if self._fast(r):
            f = _cols(r).numpy()
            x = np.zeros(f.shape, dtype=f.dtype)
            self._sweep(x, f)
            return torch.from_numpy(x).T
        return _TriangularSolve.apply(r, self)

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor:
        """u <- u + B (f - A u) in place: one Gauss-Seidel sweep (A must be this B's A)."""
        if A is self.A and self._fast(u, f) and u.T.is_contiguous():
            self._sweep(u.T.numpy(), _cols(f).numpy())
            return u
        return u.add_(self(core_residual(A, u, f)))

    def extra_repr(self) -> str:
        which = "(D + U)^-1 (backward" if self.reverse else "(D + L)^-1 (forward"
        block = f", {self.blocksize} x {self.blocksize} blocks" if self.blocksize > 1 else ""
        return f"B = {which} Gauss-Seidel sweep{block})"


def gauss_seidel(A: SparseMatrix, blocksize: int = 1) -> tuple[GaussSeidelSweep, GaussSeidelSweep]:
    """(forward, backward): the lexicographic (block) Gauss-Seidel sweeps of the level
    whose operator is ``A``, B = (D + L)^-1 and B = (D + U)^-1."""
    forward = GaussSeidelSweep(A, reverse=False, blocksize=blocksize)
    backward = GaussSeidelSweep(A, reverse=True, blocksize=blocksize)
    backward.dinv = forward.dinv  # one copy of D^-1 for both
    return forward, backward


# --------------------------------------------------------------- multicolour sweeps
def _rowmax(indptr: np.ndarray, vals: np.ndarray, empty: float) -> np.ndarray:
    """max over each CSR row of ``vals`` (per nonzero); ``empty`` for empty rows."""
    n = len(indptr) - 1
    out = np.full(n, empty, dtype=vals.dtype)
    nonempty = indptr[1:] > indptr[:-1]
    if vals.size:
        red = np.maximum.reduceat(vals, indptr[:-1][nonempty])
        out[nonempty] = red
    return out


def colour_graph(A, seed: int = 0) -> np.ndarray:
    """A colouring of the graph of A + A^T (colour[i] != colour[j] when a_ij != 0, i != j),
    vectorised: colour c is a maximal independent set of the nodes left, found by Luby's
    rule (a node joins when its random weight beats every remaining neighbour's)."""
    A = as_csr(A)
    G = (abs(A) + abs(A).T).tocsr()
    G.setdiag(0)
    G.eliminate_zeros()
    n = G.shape[0]
    indptr, nbr = G.indptr, G.indices
    weight = np.random.default_rng(seed).permutation(n).astype(np.float64) + 1
    colour = np.full(n, -1, dtype=np.int64)
    c = 0
    while (colour < 0).any():
        # candidates for colour c: uncoloured nodes; those that join leave it together
        cand = colour < 0
        while cand.any():
            w = np.where(cand, weight, 0.0)
            best = _rowmax(indptr, w[nbr], 0.0)
            joins = cand & (w > best)
            colour[joins] = c
            cand &= ~joins
            # neighbours of the new members cannot take colour c
            hit = _rowmax(indptr, joins[nbr].astype(np.float64), 0.0) > 0
            cand &= ~hit
        c += 1
    return colour


class ColourStep(nn.Module):
    """B = M_c D^-1: one colour's part of a multicolour Gauss-Seidel sweep (M_c the 0/1
    mask of the colour's rows). The rows of one colour are not coupled to each other, so
    updating them all at once from the current residual is exactly Gauss-Seidel on them.

    ``update_`` computes the residual on the colour's rows only (``rows`` is that block of
    A, a SparseMatrix) and scatters the update into u: one colour costs its share of a
    matrix-vector product, a whole sweep one product.
    """

    def __init__(self, A: sp.csr_matrix, index: np.ndarray, colour: int) -> None:
        super().__init__()
        A = as_csr(A)
        d = _diagonal(A)
        n = A.shape[0]
        self.colour = int(colour)
        self.register_buffer("index", torch.from_numpy(np.asarray(index, dtype=np.int64)))
        self.register_buffer("dinv", torch.from_numpy(1.0 / d[index]))
        mask = np.zeros(n)
        mask[index] = 1.0 / d[index]
        self.register_buffer("scale", torch.from_numpy(mask))
        self.rows = SparseMatrix(A[index], symbol=f"A[colour {colour}]")

    def forward(self, r: Tensor) -> Tensor:
        return r * self.scale

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor:
        """u <- u + M_c D^-1 (f - A u), computing f - A u on the colour's rows only."""
        idx = self.index
        if _numpy_ok(u, f, self.rows.values) and u.T.is_contiguous():
            uc = u.T.numpy()
            i = idx.numpy()
            y = _cols(f).numpy()[i]  # (m, batch): f on the colour's rows, a fresh array
            self.rows._matvecs(True, uc, y)
            y *= self.dinv.numpy()[:, None]
            uc[i] += y
            return u
        r = self.rows.residual(u, f.index_select(1, idx))
        return u.index_add_(1, idx, r * self.dinv.to(r.dtype))

    def extra_repr(self) -> str:
        return f"B = M_{self.colour} D^-1 ({self.index.numel()} rows)"


def multicolour_gauss_seidel(A, colour: np.ndarray | None = None) -> list[ColourStep]:
    """One multicolour Gauss-Seidel sweep as B modules, one per colour, in colour order
    (reverse the list for the backward sweep of a symmetric smoother)."""
    A = as_csr(A)
    colour = colour_graph(A) if colour is None else np.asarray(colour)
    return [ColourStep(A, np.flatnonzero(colour == c), c) for c in range(int(colour.max()) + 1)]


# ---------------------------------------------------------------------- coarse solve
class CoarseSolve(nn.Module):
    """B = (A^J)^-1 on the coarsest level, factorised once at construction.

    Up to ``dense_max`` unknowns the inverse is a dense buffer (one matrix product on any
    device, so on CUDA it stays on the device); a singular A (a pure-Neumann or
    null-space-carrying coarse operator) gets the pseudo-inverse, which solves every
    compatible system. Above ``dense_max``, a sparse LU (SciPy ``splu``) on the CPU.
    """

    def __init__(self, A, dense_max: int = 4096) -> None:
        super().__init__()
        A = as_csr(A)
        self.n = A.shape[0]
        self.lu = None
        if self.n <= dense_max:
            dense = A.toarray()
            inv = None
            try:
                lu = sla.lu_factor(dense, check_finite=True)
                if np.abs(np.diag(lu[0])).min() > 1e-12 * np.abs(dense).max():
                    inv = sla.lu_solve(lu, np.eye(self.n))
            except (np.linalg.LinAlgError, ValueError):
                inv = None
            self.kind = "dense inverse"
            if inv is None or not np.isfinite(inv).all():
                inv = np.linalg.pinv(dense)
                self.kind = "dense pseudo-inverse"
            self.register_buffer("inv", torch.from_numpy(inv))
        else:
            self.register_buffer("inv", None)
            self.lu = spla.splu(A.tocsc())
            self.kind = "sparse LU"

    def forward(self, r: Tensor) -> Tensor:
        if self.inv is not None:
            return (self.inv.to(r.dtype) @ _cols(r)).T
        x = self.lu.solve(np.ascontiguousarray(_cols(r).detach().cpu().double().numpy()))
        return torch.from_numpy(np.ascontiguousarray(x)).to(r).T

    def extra_repr(self) -> str:
        return f"B = A^-1 ({self.kind}, {self.n} unknowns)"
