"""Geometric multigrid on the MgNet cycle: what the solver adds on top of the CNN.

:class:`MultigridSolver` builds a hierarchy of fixed operators (A^l from
:mod:`mgnet.stencils`, by rediscretization or Galerkin R A P), wraps them into the core
:class:`mgnet.core.MgCycle` with sigma = identity, and then only *drives* that cycle:

* ``solve``: repeat the V, W or F cycle until the relative residual is below ``tol``;
* ``fmg``: full multigrid, the cycle started on every level from the interpolated coarser
  solution (the core's ``visit`` on level l);
* ``pcg``: conjugate gradients preconditioned by one cycle; ``aspreconditioner`` and
  ``aslinearoperator`` give the same to SciPy;
* FAS: for a :class:`~mgnet.stencils.NonlinearOperator` the transfers get Pi = injection,
  and the same cycle is the Full Approximation Scheme with Newton smoothers.

There is no second cycle here: every down- and up-sweep runs in ``mgnet.core.cycle``.
The solver owns its iterate, so it runs that cycle with ``inplace=True``: under
``torch.no_grad`` the steps, the red-black smoothers (``update_``) and the interpolation
(``add_to``) overwrite the iterate instead of allocating a grid-sized tensor per step.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mgnet.constants import COARSE, PRECISIONS, SMOOTHERS
from mgnet.core import Level, MgCycle, Step, Transfer
from mgnet.device import resolve_device
from mgnet.errors import DivergenceError
from mgnet.stencils import (
    DirectSolve,
    FullWeighting,
    Injection,
    Interpolation,
    Jacobi,
    NewtonJacobi,
    NonlinearOperator,
    StencilOperator,
    chebyshev_weights,
    coarse_shape,
    default_omega,
    interpolation_matrix,
    red_black,
    restriction_matrix,
)
from mgnet.stencils.smoothers import _parity

__all__ = ["MultigridSolver", "SMOOTHERS", "COARSE", "PRECISIONS"]

_SMOOTHER_NAMES = {
    "jacobi": "damped Jacobi",
    "rbgs": "red-black Gauss-Seidel",
    "chebyshev": "Chebyshev",
}


def _gershgorin(A: StencilOperator) -> float:
    """An upper bound of the spectrum of D^-1 A (max over rows of sum |a_ij| / a_ii)."""
    M = A.to_sparse()
    d = M.diagonal()
    return float((abs(M).sum(axis=1).A1 / np.abs(d)).max())


class MultigridSolver:
    """A geometric multigrid solver whose cycle is :class:`mgnet.core.MgCycle`.

    Args:
        A: the fine-grid operator A^1, a :class:`~mgnet.stencils.StencilOperator` (linear;
            correction scheme, Pi = 0) or :class:`~mgnet.stencils.NonlinearOperator` (FAS,
            Pi = injection).
        smoother: ``"rbgs"`` (red-black Gauss-Seidel, B^{l,1} = M_red D^-1, B^{l,2} =
            M_black D^-1), ``"jacobi"`` (B = w D^-1) or ``"chebyshev"`` (B^{l,i} = w_i D^-1).
        nu: (nu_l, nu'_l), pre- and post-smoothing sweeps per level.
        omega: w of damped Jacobi; default 2/3, 4/5, 6/7 in 1D, 2D, 3D.
        coarse: ``"rediscretize"`` (the PDE on the coarse grid) or ``"galerkin"``
            (A^{l+1} = R A^l P computed from the stencils).
        max_coarse: stop coarsening once a grid has at most this many unknowns.
        coarse_direct_max: the largest coarsest grid that is factorized directly; sizes
            that cannot be coarsened below it are refused.
        precision: ``"float64"``; ``"float32"`` (cycles and residuals in float32, stops at
            float32's floor); ``"mixed"`` (float32 cycles on the float64 residual:
            iterative refinement that reaches float64 tolerances at float32 cycle speed).
        device: ``"cpu"``, ``"cuda"``; default ``cuda`` when available.
        coarse_sweeps: Newton sweeps on the coarsest grid of a nonlinear (FAS) problem.
    """

    def __init__(
        self,
        A: StencilOperator | NonlinearOperator,
        smoother: str = "rbgs",
        nu: Sequence[int] | int = (1, 1),
        omega: float | None = None,
        coarse: str = "rediscretize",
        max_coarse: int = 1,
        coarse_direct_max: int = 200_000,
        precision: str = "float64",
        device: str | torch.device | None = None,
        coarse_sweeps: int = 20,
    ) -> None:
        t0 = time.perf_counter()
        if not isinstance(A, StencilOperator | NonlinearOperator):
            raise ValueError(
                f"A: expected a StencilOperator or NonlinearOperator, got {type(A).__name__}"
            )
        if smoother not in SMOOTHERS:
            raise ValueError(f"smoother: {smoother!r} is not one of {', '.join(SMOOTHERS)}")
        if coarse not in COARSE:
            raise ValueError(f"coarse: {coarse!r} is not one of {', '.join(COARSE)}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
        nu = (nu, nu) if isinstance(nu, int) else tuple(int(x) for x in nu)
        if len(nu) != 2 or min(nu) < 0 or sum(nu) < 1:
            raise ValueError(f"nu: need two sweep counts (pre, post) >= 0, not both 0; got {nu}")
        self.nonlinear = isinstance(A, NonlinearOperator)
        if self.nonlinear and smoother == "chebyshev":
            raise ValueError("smoother: 'chebyshev' is linear; use 'jacobi' or 'rbgs' for FAS")
        if self.nonlinear and coarse == "galerkin":
            raise ValueError("coarse: a nonlinear operator is coarsened by 'rediscretize' only")
        self.smoother = smoother
        self.nu = nu
        self.omega = default_omega(A.dim) if omega is None else float(omega)
        self.coarse = coarse
        self.precision = precision
        self.device = resolve_device(device)
        self.dtype = torch.float64 if precision == "float64" else torch.float32
        self.shape = A.shape
        self.dim = A.dim
        self.bc = A.bc

        ops = self._hierarchy(copy.deepcopy(A), max_coarse, coarse_direct_max)
        levels, transfers = [], []
        for l, op in enumerate(ops):
            last = l == len(ops) - 1
            if last:
                levels.append(self._coarsest_level(op, coarse_sweeps))
            else:
                levels.append(self._level(op))
                Pi = Injection(op.shape, op.bc) if self.nonlinear else None
                transfers.append(
                    Transfer(
                        R=FullWeighting(op.shape, op.bc), Pi=Pi, P=Interpolation(op.shape, op.bc)
                    )
                )
        self.ops = ops
        self.cycle = MgCycle(levels, transfers, shape="V").to(self.device, self.dtype)
        for op in ops:
            if isinstance(op, StencilOperator):
                op.workspace = True
        self.A = self.cycle.levels[0].A
        self.A64 = None
        if precision == "mixed":
            self.A64 = copy.deepcopy(self.A).to(self.device, torch.float64)
        self._sym: MgCycle | None = None
        self.setup_s = time.perf_counter() - t0
        self.history: list[float] = []
        self.iterations = 0
        self.converged = False

    # ----------------------------------------------------------------------- setup
    def _hierarchy(self, A, max_coarse: int, direct_max: int) -> list:
        ops = [A]
        while ops[-1].shape and math.prod(ops[-1].shape) > max_coarse:
            fine = ops[-1]
            cs = coarse_shape(fine.shape, fine.bc)
            if cs is None:
                break
            ch = tuple(2 * h for h in fine.h)
            if self.nonlinear:
                ops.append(fine.coarsen(cs, ch))
            elif self.coarse == "galerkin" or fine.rediscretize is None:
                G = (
                    restriction_matrix(fine.shape, fine.bc)
                    @ fine.to_sparse()
                    @ interpolation_matrix(fine.shape, fine.bc)
                )
                ops.append(
                    StencilOperator.from_sparse(
                        G, cs, ch, fine.bc, name=f"galerkin R A P ({fine.name})"
                    )
                )
            else:
                ops.append(fine.rediscretize(cs, ch))
        n_coarse = math.prod(ops[-1].shape)
        if n_coarse > direct_max:
            good = (
                "2^k - 1 (e.g. 255, 511, 1023)"
                if A.bc == "dirichlet"
                else "2^k (e.g. 256, 512, 1024)"
            )
            raise ValueError(
                f"shape: {A.shape} can only be coarsened to {ops[-1].shape} "
                f"({n_coarse} unknowns > coarse_direct_max={direct_max}); use "
                f"sizes {good}, or m * 2^k {'- 1' if A.bc == 'dirichlet' else ''}"
                f" with a small m"
            )
        return ops

    def _steps(self, op, phase: str, colors: tuple | None = None) -> list[Step]:
        """The nu_l (pre) or nu'_l (post) smoothing steps; ``colors`` are the level's
        (B_red, B_black), built once and shared by both phases."""
        n = self.nu[0] if phase == "pre" else self.nu[1]
        if n == 0:
            return []
        if self.nonlinear:
            if self.smoother == "jacobi":
                B = NewtonJacobi(op, self.omega)
                return [Step(op, B) for _ in range(n)]
            p = _parity(op.shape)
            red = NewtonJacobi(op, 1.0, p == 0, "red")
            black = NewtonJacobi(op, 1.0, p == 1, "black")
            return [Step(op, red), Step(op, black)] * n
        if self.smoother == "jacobi":
            B = Jacobi(op, self.omega)
            return [Step(op, B) for _ in range(n)]
        if self.smoother == "rbgs":
            red, black = red_black(op) if colors is None else colors
            return [Step(op, red), Step(op, black)] * n
        ws = chebyshev_weights(n, _gershgorin(op))
        steps = [Step(op, Jacobi(op, w)) for w in ws]
        return steps if phase == "pre" else steps[::-1]

    def _level(self, op) -> Level:
        colors = red_black(op) if self.smoother == "rbgs" and not self.nonlinear else None
        return Level(op, self._steps(op, "pre", colors), self._steps(op, "post", colors))

    def _coarsest_level(self, op, sweeps: int) -> Level:
        if self.nonlinear:  # Newton Gauss-Seidel sweeps on a tiny grid
            p = _parity(op.shape)
            red = NewtonJacobi(op, 1.0, p == 0, "red")
            black = NewtonJacobi(op, 1.0, p == 1, "black")
            return Level(op, [Step(op, red), Step(op, black)] * sweeps)
        return Level(op, [Step(op, DirectSolve(op))])

    # ------------------------------------------------------------------ utilities
    @property
    def levels(self) -> int:
        return len(self.ops)

    def _rhs(self, f, name: str = "f") -> tuple[Tensor, bool]:
        if isinstance(f, np.ndarray):
            f = torch.from_numpy(f)
        if not isinstance(f, Tensor):
            raise ValueError(f"{name}: expected a tensor or NumPy array, got {type(f).__name__}")
        grid = tuple(f.shape) == self.shape
        if grid:
            f = f.reshape(1, 1, *self.shape)
        elif f.dim() != self.dim + 2 or f.shape[1] != 1 or tuple(f.shape[2:]) != self.shape:
            dims = ", ".join(map(str, self.shape))
            raise ValueError(
                f"{name}: expected shape ({dims}) or (batch, 1, {dims}), got {tuple(f.shape)}"
            )
        if not torch.is_floating_point(f):
            raise ValueError(f"{name}: expected a floating-point tensor, got {f.dtype}")
        return f, grid

    def _release(self) -> None:
        """Let the operators drop the views of this call's iterates (they keep them alive)."""
        for op in self.ops:
            if isinstance(op, StencilOperator):
                op.release()
        if isinstance(self.A64, StencilOperator):
            self.A64.release()

    @staticmethod
    def _norm(x: Tensor) -> Tensor:
        return x.flatten(1).norm(dim=1).double()

    def residual(self, x: Tensor, f: Tensor) -> Tensor:
        """f - A x on the fine grid (a fresh tensor)."""
        A = self.A64 if self.A64 is not None else self.A
        x = x.to(self.device, f.dtype)
        return f - A(x)

    # ----------------------------------------------------------------------- solve
    @torch.no_grad()
    def solve(
        self,
        f,
        x0=None,
        tol: float = 1e-8,
        maxiter: int = 100,
        cycle: str = "V",
        residuals: list | None = None,
    ) -> Tensor:
        """Cycle until ||f - A x|| <= tol ||f|| for every right-hand side of the batch.

        ``f`` is shaped like the grid or (batch, 1, *grid); the result has f's shape, on
        the solver's device, in float64 (float32 for precision="float32"). ``residuals``,
        when given, receives ||f - A x|| (2-norm; the largest over a batch) before the
        first cycle and after each. ``self.iterations``, ``self.converged`` and
        ``self.history`` describe the last call.
        """
        if cycle not in ("V", "W", "F"):
            raise ValueError(f"cycle: {cycle!r} is not one of V, W, F (use fmg() for FMG)")
        if not tol > 0:
            raise ValueError(f"tol: must be positive, got {tol}")
        if maxiter < 1:
            raise ValueError(f"maxiter: must be >= 1, got {maxiter}")
        f, grid = self._rhs(f)
        outer = torch.float32 if self.precision == "float32" else torch.float64
        f = f.to(self.device, outer)
        x = None if x0 is None else self._rhs(x0, "x0")[0].to(self.device, outer).clone()
        A = self.A64 if self.A64 is not None else self.A
        fn = self._norm(f)
        fn = torch.where(fn > 0, fn, torch.ones_like(fn))
        res = self._norm(A.residual(x, f) if x is not None else f)
        history = [float(res.max())]
        self.converged = bool((res <= tol * fn).all())
        it = 0
        stalled = 0
        while not self.converged and it < maxiter:
            if self.precision == "mixed":
                r = f if x is None else A.residual(x, f)
                e = self.cycle(r.to(torch.float32), None, shape=cycle, inplace=True)
                e = e.to(torch.float64)
                x = e if x is None else x.add_(e)
            else:
                x = self.cycle(f, x, shape=cycle, inplace=True)  # x is ours: no copies
            it += 1
            new = self._norm(A.residual(x, f))
            if not bool(torch.isfinite(new).all()):
                raise DivergenceError(
                    f"solve: the residual became {float(new.max())} after {it} "
                    f"cycles; the cycle diverges for this operator/smoother"
                )
            history.append(float(new.max()))
            self.converged = bool((new <= tol * fn).all())
            # precision floor: no progress over three cycles
            stalled = stalled + 1 if float(new.max()) > 0.95 * float(res.max()) else 0
            res = new
            if stalled >= 3:
                break
        self.iterations = it
        self.history = history
        if residuals is not None:
            residuals.extend(history)
        if x is None:
            x = torch.zeros_like(f)
        x = x.clone()
        self._release()
        return x.reshape(self.shape) if grid else x

    def convergence_factor(self, history: Sequence[float] | None = None) -> float:
        """Mean factor per cycle, (r_k / r_0)^(1/k), of a residual history."""
        h = self.history if history is None else list(history)
        if len(h) < 2 or h[0] == 0:
            return 0.0
        return (h[-1] / h[0]) ** (1.0 / (len(h) - 1))

    # ------------------------------------------------------------------------- FMG
    @torch.no_grad()
    def fmg(self, f, cycles: int = 2, cycle: str = "V") -> Tensor:
        """Full multigrid: solve on the coarsest grid, then on every finer level interpolate
        the coarse solution (P) and run ``cycles`` cycles of the core cycle from that level.

        The right-hand sides of the coarse levels are the full-weighting restrictions of f.
        """
        if cycle not in ("V", "W", "F"):
            raise ValueError(f"cycle: {cycle!r} is not one of V, W, F")
        if cycles < 1:
            raise ValueError(f"cycles: must be >= 1, got {cycles}")
        f, grid = self._rhs(f)
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        fs = [f.to(self.device, dtype)]
        for t in self.cycle.transfers:
            fs.append(t.R(fs[-1]))
        J = self.levels
        u = self.cycle.visit(J - 1, None, fs[-1], cycle, inplace=True)
        for l in range(J - 2, -1, -1):
            u = self.cycle.transfers[l].P(u)
            for _ in range(cycles):
                u = self.cycle.visit(l, u, fs[l], cycle, inplace=True)
        u = u.clone()
        self._release()
        if self.precision == "mixed":
            u = u.double()
        return u.reshape(self.shape) if grid else u

    # ------------------------------------------------------------------------- PCG
    def symmetric_cycle(self) -> MgCycle:
        """The cycle with post-smoothing in the reverse order of pre-smoothing, so that one
        cycle from zero is a symmetric operator M (the CG preconditioner). Same modules,
        same core cycle; for red-black smoothing the post sweeps run black before red."""
        if self._sym is None:
            levels = [
                Level(L.A, list(L.pre), list(L.pre)[::-1] if len(L.post) else [])
                for L in self.cycle.levels
            ]
            self._sym = MgCycle(levels, list(self.cycle.transfers), shape="V")
        return self._sym

    @torch.no_grad()
    def precondition(self, r: Tensor, cycle: str = "V") -> Tensor:
        """M r: one symmetric cycle on A e = r from e = 0."""
        e = self.symmetric_cycle()(r.to(self.dtype), None, shape=cycle, inplace=True)
        return e.to(r.dtype)

    @torch.no_grad()
    def pcg(
        self,
        f,
        x0=None,
        tol: float = 1e-8,
        maxiter: int = 50,
        residuals: list | None = None,
        cycle: str = "V",
    ) -> Tensor:
        """Conjugate gradients on A x = f, preconditioned by one ``cycle`` (M = MgCycle).

        Needs a symmetric A and a symmetric cycle: red-black sweeps are reversed after the
        coarse correction, and Jacobi/Chebyshev post-smoothing mirrors pre-smoothing.
        """
        if self.nonlinear:
            raise ValueError("pcg: conjugate gradients needs a linear operator")
        if self.nu[0] != self.nu[1]:
            raise ValueError(f"nu: a CG preconditioner needs nu_pre == nu_post, got {self.nu}")
        f, grid = self._rhs(f)
        f = f.to(self.device, torch.float64)
        A = (
            self.A64
            if self.A64 is not None
            else (self.A if self.dtype == torch.float64 else copy.deepcopy(self.A).double())
        )
        x = torch.zeros_like(f) if x0 is None else self._rhs(x0, "x0")[0].to(f).clone()
        r = f - A(x)
        fn = self._norm(f)
        fn = torch.where(fn > 0, fn, torch.ones_like(fn))
        view = (-1,) + (1,) * (f.dim() - 1)

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).flatten(1).sum(dim=1)

        history = [float(self._norm(r).max())]
        z = self.precondition(r, cycle)
        p = z.clone()
        rz = dot(r, z)
        it = 0
        self.converged = bool((self._norm(r) <= tol * fn).all())
        while not self.converged and it < maxiter:
            Ap = A(p)
            alpha = rz / dot(p, Ap)
            x.add_(alpha.view(view) * p)
            r.sub_(alpha.view(view) * Ap)
            it += 1
            rn = self._norm(r)
            history.append(float(rn.max()))
            self.converged = bool((rn <= tol * fn).all())
            if self.converged:
                break
            z = self.precondition(r, cycle)
            rz_new = dot(r, z)
            p = z + (rz_new / rz).view(view) * p
            rz = rz_new
        self.iterations = it
        self.history = history
        if residuals is not None:
            residuals.extend(history)
        self._release()
        return x.reshape(self.shape) if grid else x

    # ------------------------------------------------------------------------ SciPy
    def aspreconditioner(self, cycle: str = "V"):
        """M, one cycle from zero, as a ``scipy.sparse.linalg.LinearOperator``."""
        from scipy.sparse.linalg import LinearOperator

        n = math.prod(self.shape)

        def matvec(v: np.ndarray) -> np.ndarray:
            r = (
                torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
                .reshape(1, 1, *self.shape)
                .to(self.device)
            )
            return self.precondition(r, cycle).cpu().numpy().ravel()

        return LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def aslinearoperator(self):
        """A (the fine-grid operator) as a ``scipy.sparse.linalg.LinearOperator``."""
        from scipy.sparse.linalg import LinearOperator

        n = math.prod(self.shape)
        A = copy.deepcopy(self.A).to("cpu", torch.float64)
        A.workspace = False

        def matvec(v: np.ndarray) -> np.ndarray:
            u = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64))
            with torch.no_grad():
                return A(u.reshape(1, 1, *self.shape)).numpy().ravel()

        return LinearOperator((n, n), matvec=matvec, dtype=np.float64)

    # ------------------------------------------------------------------------ print
    def operator_complexity(self) -> float:
        """Sum over levels of (unknowns x stencil points) relative to the finest level."""

        def nnz(op) -> int:
            lin = op.linear if isinstance(op, NonlinearOperator) else op
            return math.prod(lin.shape) * len(lin.offsets)

        return sum(nnz(op) for op in self.ops) / nnz(self.ops[0])

    def __repr__(self) -> str:
        scheme = "FAS, Pi = injection" if self.nonlinear else "correction scheme, Pi = 0"
        smoother = _SMOOTHER_NAMES[self.smoother]
        if self.smoother == "jacobi":
            smoother += f" (w = {self.omega:.4g})"
        if self.nonlinear:
            smoother = "Newton " + smoother
        lines = [
            f"MultigridSolver on mgnet.core.MgCycle ({scheme}, sigma = identity)",
            f"  operator:  {self.ops[0].name}, bc={self.bc}, grid {self._fmt(self.shape)}",
            f"  smoother:  {smoother}, nu = {self.nu}",
            f"  coarse:    {self.coarse}; R = full weighting, P = linear interpolation",
            f"  precision: {self.precision}, device: {self.device}",
            f"  levels:    {self.levels}, operator complexity {self.operator_complexity():.3f}",
            "  level  grid              unknowns  A^l",
        ]
        for l, op in enumerate(self.ops):
            lin = op.linear if isinstance(op, NonlinearOperator) else op
            what = f"{len(lin.offsets)}-point " + ("constant" if lin.is_constant else "variable")
            if l == self.levels - 1:
                B = self.cycle.levels[l].pre[0].B
                what += "; coarsest: " + (
                    B.extra_repr() if isinstance(B, DirectSolve) else "Newton Gauss-Seidel sweeps"
                )
            lines.append(f"  {l:>5}  {self._fmt(op.shape):<16}{math.prod(op.shape):>10}  {what}")
        return "\n".join(lines)

    @staticmethod
    def _fmt(shape: Sequence[int]) -> str:
        return "x".join(map(str, shape))
