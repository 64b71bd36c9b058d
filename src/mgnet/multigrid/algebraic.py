"""Algebraic multigrid on the MgNet cycle: sparse A^l, P, R = P^T, Galerkin A^{l+1} = R A P.

A hierarchy of sparse matrices (from smoothed aggregation, :func:`smoothed_aggregation_solver`,
or from any PyAMG hierarchy, :func:`from_pyamg`) becomes the core
:class:`mgnet.core.MgCycle` with

* A^l: :class:`~mgnet.multigrid.sparse.SparseMatrix` (feature -> data);
* B^{l,i}: Gauss-Seidel (lexicographic or multicolour), damped Jacobi, l1-Jacobi or
  Chebyshev (data -> feature); the post-smoothing steps are the adjoints of the
  pre-smoothing ones in reverse order (a backward sweep after a forward one), so that a
  V-cycle from zero is a symmetric operator (a CG preconditioner);
* R = P^T on residuals (data), P on corrections (features), Pi = 0, sigma = identity;
* on the coarsest level one step with B = (A^J)^-1, factorised once.

Vectors of n unknowns are (batch, n) tensors stored node-major (see
:mod:`mgnet.multigrid.sparse` for why). Users pass ``b`` as PyAMG does: shape (n,) or
(n, k), a NumPy array, anything NumPy turns into one (a SciPy sparse column too), or a
torch tensor; the solution comes back as the same kind of object.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from mgnet.core import MgCycle
from mgnet.device import resolve_device
from mgnet.multigrid.aggregation import AGGREGATIONS, SALevel, sa_hierarchy
from mgnet.multigrid.multilevel import MultilevelSolver, SolverLevel, check_nu
from mgnet.multigrid.sparse import (
    CoarseSolve,
    SparseMatrix,
    _diagonal,
    as_csr,
    chebyshev,
    colour_graph,
    gauss_seidel,
    jacobi,
    l1_jacobi,
    multicolour_gauss_seidel,
    spectral_radius,
)

__all__ = [
    "AMG_SMOOTHERS",
    "AlgebraicSolver",
    "check_matrix",
    "check_symmetric",
    "default_smoother",
    "from_pyamg",
    "smoothed_aggregation_solver",
]

AMG_SMOOTHERS = (
    "gauss_seidel",
    "symmetric_gauss_seidel",
    "multicolour_gauss_seidel",
    "jacobi",
    "l1_jacobi",
    "chebyshev",
)
_SMOOTHER_NAMES = {
    "gauss_seidel": "Gauss-Seidel (lexicographic: forward sweeps before, backward after)",
    "symmetric_gauss_seidel": "symmetric Gauss-Seidel (a forward and a backward sweep per step)",
    "multicolour_gauss_seidel": "multicolour Gauss-Seidel (colours forward before, backward after)",
    "jacobi": "damped Jacobi",
    "l1_jacobi": "l1-Jacobi",
    "chebyshev": "Chebyshev",
}


def default_smoother(device: torch.device) -> str:
    """The Gauss-Seidel that suits the device: the lexicographic sweep (compiled,
    sequential) on the CPU, the multicolour sweep (parallel) elsewhere."""
    return "gauss_seidel" if device.type == "cpu" else "multicolour_gauss_seidel"


# ---------------------------------------------------------------------------- checks
def check_matrix(A, name: str = "A") -> sp.csr_matrix:
    """A as canonical CSR after the cheap checks every solver needs: a 2-D square sparse
    or dense matrix of real numbers, finite, with no empty row."""
    if isinstance(A, Tensor):
        A = A.to_dense().detach().cpu().numpy() if A.layout != torch.strided else A.cpu().numpy()
    if not (sp.issparse(A) or isinstance(A, np.ndarray)):
        raise TypeError(
            f"{name}: expected a SciPy sparse matrix or a 2-D NumPy array, got {type(A).__name__}"
        )
    if len(A.shape) != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {tuple(A.shape)}")
    if A.shape[0] == 0:
        raise ValueError(f"{name}: the matrix is empty (0 x 0)")
    dtype = A.dtype
    if np.issubdtype(dtype, np.complexfloating) or not (
        np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)
    ):
        raise TypeError(f"{name}: expected real entries, got dtype {dtype}")
    A = as_csr(A, name)
    if not np.isfinite(A.data).all():
        bad = int(np.flatnonzero(~np.isfinite(A.data))[0])
        row = int(np.searchsorted(A.indptr, bad, side="right") - 1)
        raise ValueError(f"{name}: holds NaN or inf (first in row {row})")
    A.eliminate_zeros()
    empty = np.flatnonzero(np.diff(A.indptr) == 0)
    if empty.size:
        raise ValueError(
            f"{name}: row {int(empty[0])} is empty ({empty.size} empty rows); "
            "every unknown needs an equation"
        )
    return A


def _bsr_blocksize(A) -> int:
    """The block size of a SciPy BSR matrix (its unknowns per node); 1 for anything else."""
    return A.blocksize[0] if sp.issparse(A) and A.format == "bsr" else 1


def check_symmetric(A: sp.csr_matrix, name: str = "A", rtol: float = 1e-8) -> None:
    """Refuse a non-symmetric A (cheap: x^T A y against y^T A x for random x, y)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(A.shape[0])
    y = rng.standard_normal(A.shape[0])
    Ax, Ay = A @ x, A @ y
    gap = abs(float(y @ Ax) - float(x @ Ay))
    if gap > rtol * np.linalg.norm(Ax) * np.linalg.norm(y) + np.finfo(float).tiny:
        raise ValueError(
            f"{name}: conjugate gradients (accel='cg') needs a symmetric matrix, and this "
            f"one is not (y^T A x - x^T A y = {gap:.3g} for random x, y); use accel=None"
        )


def _check_nullspace(A: sp.csr_matrix, B, name: str = "B") -> np.ndarray:
    n = A.shape[0]
    if B is None:
        ones = np.ones(n)
        if np.linalg.norm(A @ ones) <= 1e-10 * abs(A).sum(axis=1).max() * np.sqrt(n):
            raise ValueError(
                "A: the matrix is singular (A @ ones = 0, a pure-Neumann operator); "
                "pass its null space as B (e.g. B=np.ones((n, 1))), which the coarse levels "
                "then keep, and a right-hand side orthogonal to it"
            )
        return ones[:, None]
    if isinstance(B, Tensor):
        B = B.detach().cpu().numpy()
    B = np.asarray(B, dtype=np.float64)
    if B.ndim == 1:
        B = B[:, None]
    if B.ndim != 2 or B.shape[0] != n or not 1 <= B.shape[1] <= n:
        raise ValueError(
            f"{name}: expected near-nullspace candidates of shape ({n}, K) with 1 <= K, "
            f"got {B.shape}"
        )
    if not np.isfinite(B).all():
        raise ValueError(f"{name}: holds NaN or inf")
    if np.linalg.matrix_rank(B[: min(n, 10 * B.shape[1] + 100)]) < B.shape[1] and (
        np.linalg.matrix_rank(B) < B.shape[1]
    ):
        raise ValueError(f"{name}: the {B.shape[1]} candidates are linearly dependent")
    return B


# ------------------------------------------------------------------- smoothers
def _smoothers(
    A: sp.csr_matrix,
    Am: SparseMatrix,
    smoother: str,
    nu: tuple[int, int],
    omega: float | None,
    blocksize: int = 1,
):
    """(pre, post): the B^{l,i} of one level (``Am`` is A^l as the level's module;
    lexicographic Gauss-Seidel works on ``blocksize`` x ``blocksize`` blocks). The
    post-smoothing steps are the adjoints of the pre-smoothing ones in reverse order, so
    that a cycle from zero is symmetric (a CG preconditioner)."""
    pre_n, post_n = nu
    if smoother in ("gauss_seidel", "symmetric_gauss_seidel"):
        forward, backward = gauss_seidel(Am, blocksize)
        if smoother == "gauss_seidel":
            return [forward] * pre_n, [backward] * post_n
        return [forward, backward] * pre_n, [forward, backward] * post_n
    if smoother == "multicolour_gauss_seidel":
        sweep = multicolour_gauss_seidel(A, colour_graph(A))
        return sweep * pre_n, sweep[::-1] * post_n
    if smoother == "chebyshev":
        Bs = chebyshev(A, degree=max(pre_n, post_n))
        return Bs[:pre_n], Bs[::-1][:post_n]
    if smoother == "jacobi":
        w = omega
        if w is None:
            w = 4.0 / (3.0 * spectral_radius(A, 1.0 / A.diagonal()))
        B = jacobi(A, w)
    else:
        B = l1_jacobi(A, 1.0 if omega is None else omega)
    return [B] * pre_n, [B] * post_n


# --------------------------------------------------------------------------- solver
class AlgebraicSolver(MultilevelSolver):
    """Algebraic multigrid whose cycle is :class:`mgnet.core.MgCycle`, driven by the shared
    :class:`~mgnet.multigrid.MultilevelSolver` (``solve``, ``aspreconditioner``, the
    complexities and the level table live there, once).

    ``smoother=None`` picks the device's Gauss-Seidel (:func:`default_smoother`): the
    lexicographic sweep (compiled, sequential; block sweeps where a level has blocks) on
    the CPU, the multicolour sweep (parallel) on CUDA.

    Built by :func:`smoothed_aggregation_solver` or :func:`from_pyamg`. ``levels`` is the
    base's list of levels (modules); ``hierarchy`` the same levels as SciPy matrices
    (``A``, and ``P``, ``R`` towards the next one; ``B`` for smoothed aggregation).
    """

    def __init__(
        self,
        hierarchy: Sequence,
        smoother: str | None = None,
        nu: Sequence[int] | int = (1, 1),
        omega: float | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        coarse_dense_max: int = 4096,
        method: str = "",
    ) -> None:
        if smoother is None:
            smoother = default_smoother(resolve_device(device))
        if smoother not in AMG_SMOOTHERS:
            raise ValueError(f"smoother: {smoother!r} is not one of {', '.join(AMG_SMOOTHERS)}")
        nu = check_nu(nu)
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype: expected torch.float64 or torch.float32, got {dtype}")
        self.hierarchy = list(hierarchy)
        self.smoother = smoother
        self.nu = nu
        self.omega = omega
        self.method = method
        self.n = self.hierarchy[0].A.shape[0]
        self.shape = (self.n,)
        levels = []
        for l, lvl in enumerate(self.hierarchy):
            A = lvl.A
            Am = SparseMatrix(A, f"A^{l + 1}")
            last = l == len(self.hierarchy) - 1
            if last:
                coarse = CoarseSolve(A, coarse_dense_max)
                pre, post, info = [coarse], [], f"sparse; coarsest: {coarse.extra_repr()}"
            else:
                bs = getattr(lvl, "blocksize", 1) or 1
                pre, post = _smoothers(
                    A, Am, smoother, nu, omega, bs if A.shape[0] % bs == 0 else 1
                )
                info = f"sparse, {pre[0].extra_repr() if pre else post[0].extra_repr()}"
            levels.append(
                SolverLevel(
                    A=Am,
                    presmoother=pre,
                    postsmoother=post,
                    R=None if last else SparseMatrix(lvl.R, f"R^{l + 2}_{l + 1}"),
                    P=None if last else SparseMatrix(lvl.P, "P"),
                    unknowns=A.shape[0],
                    nnz=A.nnz,
                    shape=(A.shape[0],),
                    info=info,
                )
            )
        precision = "float64" if dtype == torch.float64 else "float32"
        super().__init__(levels, precision=precision, device=device)
        self._symmetric: bool | None = None

    # ------------------------------------------------------------ vectors (hooks)
    def _to_cycle(self, x: Tensor, name: str) -> Tensor:
        """(n,) or (n, k) -> the cycle's (k, n), node-major (a view)."""
        if x.dim() not in (1, 2) or x.shape[0] != self.n or x.numel() == 0:
            raise ValueError(
                f"{name}: expected shape ({self.n},) or ({self.n}, k), got {tuple(x.shape)}"
            )
        return x.reshape(self.n, -1).T

    def _from_cycle(self, x: Tensor, given: tuple[int, ...]) -> Tensor:
        return x.T.reshape(given)

    def _vector(self, v, name: str, dtype: torch.dtype):
        if sp.issparse(v):  # a SciPy sparse column (or columns)
            v = v.toarray()
        return super()._vector(v, name, dtype)

    def to_cycle(self, b, name: str = "b") -> tuple[Tensor, tuple]:
        """b as the cycle's (batch, n) tensor, and what :meth:`from_cycle` needs."""
        x, numpy_like, given = self._vector(b, name, self.dtype)
        return x, (numpy_like, given)

    def from_cycle(self, x: Tensor, kind: tuple) -> np.ndarray | Tensor:
        """The cycle's (batch, n) tensor as the kind of object ``b`` was."""
        return self._output(x, *kind)

    def _cg(self, *args, **kwargs):
        """The base's conjugate gradients (``solve(accel="cg")``), after refusing a
        non-symmetric A."""
        self.check_cg()
        return super()._cg(*args, **kwargs)

    def check_cg(self) -> None:
        """Refuse CG for a non-symmetric fine-level matrix (checked once)."""
        if self._symmetric is None:
            check_symmetric(self.hierarchy[0].A)
            self._symmetric = True

    def symmetric_cycle(self) -> MgCycle:
        """The cycle itself: its post-smoothing steps are already the adjoints of its
        pre-smoothing steps in reverse order (see :func:`_smoothers`), so one cycle from
        zero is symmetric when nu_pre == nu_post."""
        self._check_symmetric_nu()
        return self.cycle

    def _header(self) -> list[str]:
        smoother = _SMOOTHER_NAMES[self.smoother]
        return [
            f"AlgebraicSolver ({self.method}) on mgnet.core.MgCycle "
            "(correction scheme, Pi = 0, sigma = identity, R = P^T)",
            f"  smoother:  {smoother}, nu = {self.nu}",
        ]


# ------------------------------------------------------------------------ factories
def smoothed_aggregation_solver(
    A,
    B=None,
    *,
    blocksize: int | None = None,
    theta: float = 0.02,
    omega_prolongator: float = 4.0 / 3.0,
    max_levels: int = 10,
    max_coarse: int = 300,
    aggregation: str = "standard",
    improve_candidates: int = 4,
    smoother: str | None = None,
    nu: Sequence[int] | int = (1, 1),
    omega: float | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> AlgebraicSolver:
    """Smoothed-aggregation AMG on the MgNet cycle (PyAMG's interface).

    Args:
        A: the square sparse matrix (SciPy sparse, dense NumPy; a SciPy BSR matrix gives
            its block size).
        B: near-nullspace candidates, shape (n, K); default the constant vector. For
            elasticity the rigid-body modes (:func:`~mgnet.multigrid.rigid_body_modes`).
        blocksize: unknowns per node (default: A's BSR block size, else 1).
        theta: strength threshold, |a_ij| >= theta sqrt(|a_ii a_jj|). The default 0.02
            (PyAMG's is 0) drops the couplings across coefficient jumps of about 1e3 and
            more, which otherwise make aggregates straddle the jump (Darcy 255^2 at
            contrast 1e6: 59 PCG iterations at theta = 0, 16 at 0.02); where nothing
            jumps it leaves the hierarchy as it was.
        omega_prolongator: P = (I - w D^-1 A) T with w = omega_prolongator / rho(D^-1 A).
        max_levels, max_coarse: stop coarsening at this many levels / unknowns. The
            coarsest level is solved directly (a dense inverse up to 4096 unknowns);
            ``max_coarse`` defaults to 300 (PyAMG's: 10) because below a few hundred
            unknowns one dense product costs less than the work of visiting more levels.
        aggregation: ``"standard"`` (default: the sequential greedy aggregation, compiled,
            on the CPU) or ``"parallel"`` (vectorised distance-2 independent sets, what a
            GPU set-up runs; less regular aggregates, more iterations).
        improve_candidates: symmetric Gauss-Seidel sweeps on A x = 0 that smooth B on
            the finest level before T is fitted (0: B as given).
        smoother: the default (None) depends on ``device``: on the CPU
            ``"gauss_seidel"``, lexicographic sweeps (compiled, sequential), forward
            before and backward after the coarse correction; on CUDA
            ``"multicolour_gauss_seidel"`` (the colours in order before, in reverse
            after: parallel). Also ``"symmetric_gauss_seidel"`` (a forward and a backward
            sweep in every step, PyAMG's default; twice the work of ``gauss_seidel``),
            ``"jacobi"``, ``"l1_jacobi"``, ``"chebyshev"``.
        nu: (pre, post) sweeps (Chebyshev: its degree).
        omega: the Jacobi damping w of B = w D^-1 (default 4 / (3 rho(D^-1 A)) per level).
        device, dtype: where and in which precision the cycle runs.
        seed: seeds the parallel aggregation's keys and the colouring (results are
            deterministic for a given seed).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation: {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
    if blocksize is None:
        blocksize = _bsr_blocksize(A)
    A = check_matrix(A)
    if not isinstance(blocksize, int) or blocksize < 1 or A.shape[0] % blocksize:
        raise ValueError(
            f"blocksize: must be a positive divisor of the size {A.shape[0]}, got {blocksize}"
        )
    B = _check_nullspace(A, B)
    _diagonal(A)  # a_ii != 0, which the smoothers and the smoothed prolongator divide by
    levels = sa_hierarchy(
        A,
        B,
        blocksize=blocksize,
        theta=theta,
        omega=omega_prolongator,
        max_levels=max_levels,
        max_coarse=max_coarse,
        seed=seed,
        aggregation=aggregation,
        improve=improve_candidates,
    )
    return AlgebraicSolver(
        levels,
        smoother=smoother,
        nu=nu,
        omega=omega,
        device=device,
        dtype=dtype,
        method="smoothed aggregation",
    )


def from_pyamg(
    ml,
    *,
    smoother: str | None = None,
    nu: Sequence[int] | int = (1, 1),
    omega: float | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> AlgebraicSolver:
    """Run a PyAMG ``MultilevelSolver`` hierarchy (its A, P and R on every level; any
    method: smoothed aggregation, Ruge-Stueben, ...) on the MgNet cycle, with this
    package's smoothers (the default as in :func:`smoothed_aggregation_solver`: Gauss-Seidel,
    lexicographic on the CPU, multicolour on CUDA) and a direct coarsest solve. ``omega``
    is the absolute Jacobi
    damping (PyAMG's ``('jacobi', {'omega': w, 'withrho': False})`` is ``omega=w``)."""
    if not hasattr(ml, "levels") or not ml.levels or not hasattr(ml.levels[0], "A"):
        raise TypeError(f"ml: expected a pyamg MultilevelSolver, got {type(ml).__name__}")
    levels = []
    for l, lvl in enumerate(ml.levels):
        last = l == len(ml.levels) - 1
        bs = _bsr_blocksize(lvl.A)
        A = check_matrix(lvl.A, f"ml.levels[{l}].A")
        P = None if last else as_csr(lvl.P, f"ml.levels[{l}].P")
        R = None if last else as_csr(lvl.R, f"ml.levels[{l}].R")
        levels.append(SALevel(A=A, B=getattr(lvl, "B", None), P=P, R=R, blocksize=bs))
    for l in range(len(levels) - 1):
        n, nc = levels[l].A.shape[0], levels[l + 1].A.shape[0]
        if levels[l].P.shape != (n, nc) or levels[l].R.shape != (nc, n):
            raise ValueError(
                f"ml: level {l} has P {levels[l].P.shape} and R {levels[l].R.shape}, "
                f"expected ({n}, {nc}) and ({nc}, {n})"
            )
    name = type(ml).__name__
    return AlgebraicSolver(
        levels,
        smoother=smoother,
        nu=nu,
        omega=omega,
        device=device,
        dtype=dtype,
        method=f"from PyAMG {name}",
    )
