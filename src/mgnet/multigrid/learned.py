"""Learned smoothers: B^{l,i} as convolutions trained through the solver's own cycle.

The smoothing step of the MgNet cycle is u <- u + B^{l,i} (f - A^l u). In the classifier
B^{l,i} is a learned convolution; in the solver it is a fixed smoother (w D^-1, a red-black
mask times D^-1). Here it is both: a learned convolution inside the solver,

    B^{l,i} r = K^{l,i} * (D_l^-1 r),          i = 1..nu,

a k_1 x ... x k_d kernel K^{l,i} (zero padding: the Dirichlet boundary) applied to the
Jacobi-scaled residual D_l^-1 r. With K = w delta it is damped Jacobi, where training
starts. D_l^-1 makes one kernel fit every level of a constant-coefficient problem (A^l is
the same stencil times 1/h_l^2) and, for variable coefficients (a jump in a), carries the
local scale of A^l node by node, so that the kernel only has to learn the shape of the
correction. The nu steps are one *sweep* of the :class:`~mgnet.multigrid.Smoother`
protocol: ``MultigridSolver(A, smoother=learned)`` with its default nu = (1, 1) runs the
nu learned steps before and again after the coarse correction, the cycle the smoother
was trained in.

The kernels are shared by all levels (``sharing="shared"``) or one set per level
(``"level"``), counted from the coarsest grid: a level that can be halved q more times
(q = 1 just above a 1-node coarsest grid) takes set ``sets - q``, and every level finer
than those seen in training takes set 0, the kernels of the training grid's finest level.

Training (:func:`learn_smoother`) minimises a stochastic estimate of the spectral radius of
the cycle's error propagation: with f = 0 the iterate of the cycle *is* the error, so m
cycles are run on a batch of random errors e_0 and the loss is the mean of
log(||e_m|| / ||e_0||) / m, differentiated by autograd through the core cycle
(:class:`mgnet.core.MgCycle`, the solver's own, not in-place). Half of the batch is fresh
noise; the other half carries the previous step's errors on (normalised and detached),
which is power iteration interleaved with training, so the loss sees the slowest modes of
the current cycle and not only the transient of random starts. Adam, cosine learning rate.
:func:`asymptotic_factor` measures the result by power iteration on one cycle, on any grid.

Why a convolution can smooth anisotropic problems. For A = -u_xx - eps u_yy with full
coarsening, the errors that a point smoother cannot reduce are smooth along the strong axis
x and oscillate across it: at theta_x = 0 the symbol of D^-1 A is only eps (1 - cos theta_y)
/ (1 + eps), against up to 2 for the roughest modes. A step multiplies a Fourier mode by
1 - b(theta) a(theta); with a kernel k_1 wide along x, b is a trigonometric polynomial of
degree (k_1 - 1) / 2 in theta_x, and a sweep of nu steps is a polynomial of degree
p = nu (k_1 + 1) / 2 in cos theta_x that is 1 where a vanishes (cos theta_x just above 1)
and should be small on [-1, 1]. The best such polynomial (Chebyshev) leaves about
2 exp(-p sqrt(2 eps)), so the reach along the strong axis times the number of steps has to
grow like 1 / sqrt(eps): a 3x3 kernel cannot, 7x3 with nu = 2 is enough for eps = 0.1, and
eps = 0.01 needs p of about 10 to 20 (11x3, nu = 3). Width across the weak axis buys
little, and one kernel set per level fits the training grid's levels and generalises
worse than shared kernels (benchmarks/learned_smoother.py has the figures).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgnet.constants import LEARN_PROBLEMS, SHARING
from mgnet.core import residual
from mgnet.errors import DivergenceError, first_line
from mgnet.multigrid.problems import ANISOTROPY, make_problem
from mgnet.multigrid.solver import MultigridSolver
from mgnet.stencils import StencilOperator, coarse_shape, default_omega

__all__ = [
    "FORMAT",
    "LEARN_PROBLEMS",
    "SHARING",
    "ConvolutionSmoother",
    "LearnedSmoother",
    "asymptotic_factor",
    "learn_smoother",
]

FORMAT = "mgnet-learned-smoother"
VERSION = 1
# Numbers per block of rows of the fused step (512 KiB of float64: a block of u and the
# rows of the residual it reads stay in a core's L2 cache).
_BLOCK = 65536


def kernel_shape(kernel: int | Sequence[int] | str, dim: int) -> tuple[int, ...]:
    """(k_1, ..., k_d) from ``3``, ``(7, 3)`` or ``"7x3"``; every size odd and positive."""
    try:
        if isinstance(kernel, str):
            sizes = tuple(int(k) for k in kernel.lower().split("x"))
        elif isinstance(kernel, int):
            sizes = (int(kernel),) * dim
        else:
            sizes = tuple(int(k) for k in kernel)
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) == 1:
        sizes = sizes * dim
    if len(sizes) != dim or any(k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError(
            f"kernel: need one odd size or {dim} odd sizes (e.g. 3, 5 or 7x3 in 2D), got {kernel!r}"
        )
    return sizes


def _pieces(kernel: Sequence[int], shape: Sequence[int]) -> list[tuple[int, tuple, tuple]]:
    """(flat tap index, dst slices, src slices) per tap of the kernel that reaches the
    grid: out[dst] += K[tap] * x[src] is the correlation with zero padding."""
    pieces = []
    for flat, tap in enumerate(itertools.product(*(range(k) for k in kernel))):
        dst, src = [slice(None), slice(None)], [slice(None), slice(None)]
        for t, k, n in zip(tap, kernel, shape):
            o = t - k // 2
            lo, hi = max(0, -o), n - max(0, o)
            if lo >= hi:
                break
            dst.append(slice(lo, hi))
            src.append(slice(lo + o, hi + o))
        else:
            pieces.append((flat, tuple(dst), tuple(src)))
    return pieces


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _blocks(pieces: list[tuple[int, tuple, tuple]], shape: Sequence[int]) -> list:
    """The pieces cut into blocks of rows along the first grid axis, block after block:
    all taps of one block of u run while that block (and the rows of r it reads) is in
    cache, instead of streaming the whole grid once per tap (2-3x faster on 1023^2)."""
    n0 = shape[0]
    rows = max(1, _BLOCK // max(1, math.prod(shape[1:])))
    if rows >= n0:
        return pieces
    out = []
    for b0 in range(0, n0, rows):
        b1 = min(n0, b0 + rows)
        for flat, dst, src in pieces:
            d = dst[2]
            lo, hi = max(d.start, b0), min(d.stop, b1)
            if lo < hi:
                shift = src[2].start - d.start
                out.append(
                    (
                        flat,
                        dst[:2] + (slice(lo, hi),) + dst[3:],
                        src[:2] + (slice(lo + shift, hi + shift),) + src[3:],
                    )
                )
    return out


class ConvolutionSmoother(nn.Module):
    """B^{l,i} r = K^{l,i} * (D^-1 r): a learned convolution of the Jacobi-scaled residual.

    Args:
        A: the level's operator A^l (a :class:`~mgnet.stencils.StencilOperator`); only its
            diagonal D and grid are used.
        kernel: K^{l,i}, a tensor of odd sizes (k_1, ..., k_d). An ``nn.Parameter`` is
            used as it is (training: the gradient reaches it); any other tensor is copied
            into a buffer.

    The convolution is a cross-correlation with zero padding. While autograd records a
    graph it is one ``conv2d`` (``conv1d``, ``conv3d``); otherwise it is one multiply-add
    per tap over the grid, which on the CPU is several times faster than a
    single-channel convolution of a large grid. ``update_`` is the fused in-place step of
    the solver's no-grad cycle.
    """

    def __init__(self, A: StencilOperator, kernel: Tensor) -> None:
        super().__init__()
        if not isinstance(A, StencilOperator):
            raise ValueError(
                f"A: a learned smoother needs a StencilOperator, got {type(A).__name__}"
            )
        if kernel.dim() != A.dim:
            raise ValueError(
                f"smoother: a {kernel.dim()}D kernel cannot smooth the {A.dim}D grid {A.shape}"
            )
        if A.bc != "dirichlet":
            raise ValueError(
                f"A: learned convolutions are zero-padded (a Dirichlet grid), got bc={A.bc!r}"
            )
        self.shape = A.shape
        if isinstance(kernel, nn.Parameter):
            self.kernel = kernel
        else:
            self.register_buffer("kernel", kernel.detach().clone())
        d = A.diagonal()
        self.dinv_value: float | None = None
        if isinstance(d, Tensor):
            if not bool((d > 0).all()):
                raise ValueError("A: a learned smoother needs a positive diagonal D")
            self.register_buffer("dinv", 1.0 / d)
        else:
            if not d > 0:
                raise ValueError(f"A: a learned smoother needs a positive diagonal, got {d}")
            self.dinv_value = 1.0 / float(d)
            self.dinv = None
        self.pieces = _pieces(tuple(kernel.shape), self.shape)
        self.blocks = _blocks(self.pieces, self.shape)

    def _taps(self, scale: float = 1.0) -> list[float]:
        return [scale * k for k in self.kernel.detach().double().flatten().tolist()]

    def forward(self, r: Tensor) -> Tensor:
        """K * (D^-1 r), a fresh tensor; differentiable in K and r."""
        x = r * (self.dinv_value if self.dinv is None else self.dinv)
        K = self.kernel.to(x.dtype)
        if torch.is_grad_enabled() and (K.requires_grad or x.requires_grad):
            pad = tuple(k // 2 for k in K.shape)
            return _CONV[K.dim()](x, K[None, None], padding=pad)
        out = torch.zeros_like(x)
        taps = self._taps()
        for flat, dst, src in self.pieces:
            if taps[flat] != 0.0:
                out[dst].add_(x[src], alpha=taps[flat])
        return out

    def update_(self, A: nn.Module, u: Tensor, f: Tensor) -> Tensor:
        """u <- u + K * (D^-1 (f - A u)) in place (no autograd): the step, fused."""
        r = residual(A, u, f)
        if self.dinv is None:  # constant D: fold D^-1 into the taps
            taps = self._taps(self.dinv_value)
        else:
            r, taps = r * self.dinv, self._taps()
        for flat, dst, src in self.blocks:
            if taps[flat] != 0.0:
                u[dst].add_(r[src], alpha=taps[flat])
        return u

    def extra_repr(self) -> str:
        k = "x".join(map(str, self.kernel.shape))
        return f"B = K * D^-1 (learned {k} convolution)"


class LearnedSmoother(nn.Module):
    """A learned smoother: the kernels K^{l,i} and how to place them in a hierarchy.

    It follows the :class:`~mgnet.multigrid.Smoother` protocol: ``learned(A, level)``
    returns the nu :class:`ConvolutionSmoother` steps of one sweep on a level, so
    ``MultigridSolver(A, smoother=learned)`` (nu = (1, 1)) runs them before and after the
    coarse correction. In training mode (``learned.train()``) the steps share this
    module's parameter; in eval mode (the default after :func:`learn_smoother` and
    :meth:`load`) they hold copies, so a solver may move or cast them freely.

    Args:
        dim: the grid dimension (1, 2, 3).
        kernel: the kernel sizes per axis, e.g. 3 or (7, 3); odd.
        nu: steps per sweep (distinct kernels K^{l,1..nu}).
        sharing: ``"shared"`` (one set of nu kernels for all levels) or ``"level"`` (one
            set per level, counted from the coarsest grid; see the module docstring).
        sets: the number of kernel sets for ``"level"`` (the levels of the training
            hierarchy above its coarsest grid).
        omega: the damping w of the initial kernels w delta (damped Jacobi); default
            2/3, 4/5, 6/7 in 1D, 2D, 3D.

    Attributes: ``kernels``, the parameters K (``weight`` stacks them, shaped
    (sets, nu, *kernel)); ``problem`` and ``training_log``, dicts that
    :func:`learn_smoother` fills and :meth:`save` stores.
    """

    def __init__(
        self,
        dim: int = 2,
        kernel: int | Sequence[int] | str = 3,
        nu: int = 2,
        sharing: str = "shared",
        sets: int = 1,
        omega: float | None = None,
    ) -> None:
        super().__init__()
        if dim not in (1, 2, 3):
            raise ValueError(f"dim: must be 1, 2 or 3, got {dim!r}")
        if sharing not in SHARING:
            raise ValueError(f"sharing: {sharing!r} is not one of {', '.join(SHARING)}")
        if not isinstance(nu, int) or nu < 1:
            raise ValueError(f"nu: need at least one learned step per sweep, got {nu!r}")
        if sharing == "shared":
            sets = 1
        if not isinstance(sets, int) or sets < 1:
            raise ValueError(f"sets: need at least one kernel set, got {sets!r}")
        self.dim = dim
        self.kernel_shape = kernel_shape(kernel, dim)
        self.nu = nu
        self.sharing = sharing
        w = default_omega(dim) if omega is None else float(omega)
        delta = torch.zeros(self.kernel_shape, dtype=torch.float64)
        delta[tuple(k // 2 for k in self.kernel_shape)] = w
        self.kernels = nn.ParameterList([nn.Parameter(delta.clone()) for _ in range(sets * nu)])
        self.problem: dict = {}
        self.training_log: dict = {}
        self.eval()

    @property
    def sets(self) -> int:
        return len(self.kernels) // self.nu

    def kernel(self, s: int, i: int) -> nn.Parameter:
        """K^{l,i} of kernel set s (see :meth:`kernel_set`), step i = 0..nu-1."""
        return self.kernels[s * self.nu + i]

    @property
    def weight(self) -> Tensor:
        """All kernels, shaped (sets, nu, *kernel) (a detached copy)."""
        return torch.stack([k.detach() for k in self.kernels]).reshape(
            self.sets, self.nu, *self.kernel_shape
        )

    @weight.setter
    def weight(self, value: Tensor) -> None:
        value = torch.as_tensor(value, dtype=torch.float64)
        if tuple(value.shape) != (self.sets, self.nu, *self.kernel_shape):
            raise ValueError(
                f"weight: expected shape {(self.sets, self.nu, *self.kernel_shape)}, "
                f"got {tuple(value.shape)}"
            )
        with torch.no_grad():
            for k, v in zip(self.kernels, value.reshape(-1, *self.kernel_shape)):
                k.copy_(v)

    @property
    def name(self) -> str:
        k = "x".join(map(str, self.kernel_shape))
        return f"learned {k} convolutions ({self.nu} steps per sweep, {self.sharing})"

    def kernel_set(self, shape: Sequence[int], bc: str = "dirichlet") -> int:
        """The kernel set of a level on the grid ``shape`` (module docstring)."""
        return max(0, self.sets - max(_halvings(shape, bc), 1))

    def __call__(self, A: nn.Module, level: int = 0) -> list[ConvolutionSmoother]:  # type: ignore[override]
        """The B^{l,1..nu} of one sweep on a level whose operator is A (the protocol)."""
        if not isinstance(A, StencilOperator):
            raise ValueError(
                f"smoother: a learned smoother needs a StencilOperator, got {type(A).__name__}"
            )
        if A.dim != self.dim:
            raise ValueError(
                f"smoother: trained for {self.dim}D grids, the operator is {A.dim}D {A.shape}"
            )
        s = self.kernel_set(A.shape, A.bc)
        if self.training:
            return [ConvolutionSmoother(A, self.kernel(s, i)) for i in range(self.nu)]
        return [ConvolutionSmoother(A, self.kernel(s, i).detach()) for i in range(self.nu)]

    def forward(self, *args, **kwargs):  # pragma: no cover - not a tensor map
        raise TypeError("LearnedSmoother builds smoothers: call it as learned(A, level)")

    def extra_repr(self) -> str:
        return f"{self.name}, dim={self.dim}, sets={self.sets}"

    # ------------------------------------------------------------------ save / load
    def state(self) -> dict:
        """The file's content: a dict of plain values and one tensor (weights_only)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "dim": self.dim,
            "kernel": list(self.kernel_shape),
            "nu": self.nu,
            "sharing": self.sharing,
            "weight": self.weight.cpu(),
            "problem": dict(self.problem),
            "training": dict(self.training_log),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the smoother to ``path`` (``torch.save`` of :meth:`state`)."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"path: {str(path)!r} is a folder; give a file name")
        if not path.parent.is_dir():
            raise ValueError(f"path: folder {str(path.parent)!r} does not exist")
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        dim: int | None = None,
        kernel: int | Sequence[int] | str | None = None,
    ) -> LearnedSmoother:
        """Read a smoother written by :meth:`save` (``torch.load(weights_only=True)``).

        ``dim`` and ``kernel``, when given, are what the caller needs; a file trained for
        another dimension or kernel shape is refused, as is a file that is not a learned
        smoother, each with a one-line ValueError.
        """
        name = str(path)[-200:]
        if not Path(path).is_file():
            raise FileNotFoundError(f"smoother: no such file {name!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - whatever a file that is not ours raises
            why = first_line(e, 120)
            raise ValueError(f"smoother: {name!r} is not a learned smoother file ({why})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(
                f"smoother: {name!r} is not a learned smoother (no format {FORMAT!r}; "
                "write one with mgnet learn-smoother)"
            )
        if state.get("version") != VERSION:
            raise ValueError(
                f"smoother: {name!r} has format version {state.get('version')!r}; "
                f"this mgnet reads version {VERSION}"
            )
        try:
            learned = cls(
                int(state["dim"]),
                tuple(int(k) for k in state["kernel"]),
                int(state["nu"]),
                str(state["sharing"]),
                sets=int(state["weight"].shape[0]),
            )
            weight = state["weight"]
            if not isinstance(weight, Tensor) or not bool(torch.isfinite(weight).all()):
                raise ValueError("the weights are not a finite tensor")
            learned.weight = weight
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"smoother: {name!r} is damaged ({str(e)[:120]})") from None
        learned.problem = dict(state.get("problem") or {})
        learned.training_log = dict(state.get("training") or {})
        if dim is not None and dim != learned.dim:
            raise ValueError(
                f"smoother: {name!r} was trained for {learned.dim}D problems, not {dim}D"
            )
        if kernel is not None and kernel_shape(kernel, learned.dim) != learned.kernel_shape:
            want = "x".join(map(str, kernel_shape(kernel, learned.dim)))
            have = "x".join(map(str, learned.kernel_shape))
            raise ValueError(f"smoother: {name!r} has {have} kernels, not {want}")
        return learned


def _halvings(shape: Sequence[int], bc: str = "dirichlet") -> int:
    """How often the grid ``shape`` can be halved before it has a single node."""
    q, s = 0, tuple(shape)
    while math.prod(s) > 1 and (c := coarse_shape(s, bc)) is not None:
        q, s = q + 1, c
    return q


# ------------------------------------------------------------------------- problems
def smoother_problem(
    problem: str, n: int, dim: int = 2, eps: float = ANISOTROPY
) -> StencilOperator:
    """The operator A of a training problem on n^dim interior nodes: ``"poisson"``,
    ``"anisotropic"`` (A = -u_11 - eps (u_22 + ...): the lines of strong coupling run
    along axis 0) or ``"jump"`` (-div(a grad u) with a = 100 on the middle square)."""
    if problem not in LEARN_PROBLEMS:
        raise ValueError(f"problem: {problem!r} is not one of {', '.join(LEARN_PROBLEMS)}")
    return make_problem(problem, dim, n, eps=eps).A


# ------------------------------------------------------------------------- training
def _solver(A: StencilOperator, learned: LearnedSmoother) -> MultigridSolver:
    return MultigridSolver(A, smoother=learned, nu=(1, 1), device="cpu")


@torch.no_grad()
def asymptotic_factor(solver, iterations: int = 60, tail: int = 10, seed: int = 0) -> float:
    """The asymptotic convergence factor of one cycle of ``solver`` by power iteration.

    With f = 0 one cycle maps the error e to M e (M the error propagation operator);
    starting from random e, e <- M e / ||M e|| is repeated ``iterations`` times and the
    result is the geometric mean of ||M e|| / ||e|| over the last ``tail`` iterations, an
    estimate of the spectral radius of M (a complex pair of eigenvalues makes the single
    ratios oscillate, their mean settles). A diverging cycle gives a factor > 1; inf
    when the error overflows.
    """
    if iterations < 1 or not 1 <= tail <= iterations:
        raise ValueError(
            f"iterations, tail: need 1 <= tail <= iterations, got {iterations}, {tail}"
        )
    g = torch.Generator().manual_seed(seed)
    shape = (1, 1, *solver.shape)
    e = torch.randn(shape, generator=g, dtype=torch.float64).to(solver.device, solver.dtype)
    e /= e.norm()
    f = torch.zeros_like(e)
    logs = []
    for _ in range(iterations):
        e = solver.cycle(f, e, inplace=True)
        norm = float(e.norm())
        if not math.isfinite(norm) or norm == 0.0:
            return math.inf if not math.isfinite(norm) else 0.0
        logs.append(math.log(norm))
        e /= norm
    return math.exp(sum(logs[-tail:]) / tail)


def learn_smoother(
    problem: str = "anisotropic",
    eps: float = ANISOTROPY,
    n: int = 63,
    dim: int = 2,
    kernel: int | Sequence[int] | str = 3,
    nu: int = 2,
    sharing: str = "shared",
    steps: int = 80,
    cycles: int = 3,
    batch: int = 6,
    lr: float = 0.02,
    seed: int = 0,
    omega: float | None = None,
    log: Callable[[str], None] | None = None,
) -> LearnedSmoother:
    """Train a :class:`LearnedSmoother` on one problem (module docstring).

    Args:
        problem, eps, n, dim: the training problem (:func:`smoother_problem`), n^dim
            interior nodes; ``eps`` is the anisotropy of ``"anisotropic"``.
        kernel, nu, sharing, omega: the smoother (:class:`LearnedSmoother`).
        steps: Adam steps.
        cycles: m, the cycles per loss evaluation.
        batch: random errors per step (half fresh, half carried on).
        lr: Adam's initial learning rate (cosine decay to zero).
        seed: seeds the errors (the result is a function of the arguments).
        log: called with a progress line every tenth of the steps.

    Returns the smoother in eval mode; ``learned.training_log`` holds the figures: the
    loss (as a factor per cycle) at the start and the end, and the asymptotic factor on
    the training grid before and after (:func:`asymptotic_factor`).
    """
    for arg, value, low in (("steps", steps, 0), ("cycles", cycles, 1), ("batch", batch, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{arg}: must be an integer >= {low}, got {value!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: must be a positive number, got {lr!r}")
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: the anisotropy must be a positive number, got {eps!r}")
    A = smoother_problem(problem, n, dim, eps)
    sets = max(1, _halvings(A.shape, A.bc)) if sharing == "level" else 1
    learned = LearnedSmoother(dim, kernel, nu, sharing, sets=sets, omega=omega)
    factor0 = asymptotic_factor(_solver(A, learned))
    learned.train()
    solver = _solver(A, learned)
    learned.eval()
    torch.manual_seed(seed)
    opt = torch.optim.Adam(learned.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    shape = (1, *A.shape)
    keep = batch // 2
    carried = torch.randn(keep, *shape, dtype=torch.float64)
    first = last = math.nan
    t0 = time.perf_counter()
    for step in range(steps):
        e0 = torch.cat([torch.randn(batch - keep, *shape, dtype=torch.float64), carried])
        e0 = e0 / e0.flatten(1).norm(dim=1).view(-1, *[1] * (dim + 1))
        f = torch.zeros_like(e0)
        e = e0
        for _ in range(cycles):
            e = solver.cycle(f, e)
        norms = e.flatten(1).norm(dim=1)
        loss = norms.log().mean() / cycles
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"learn_smoother: the loss became {float(loss)} at step {step}; lower lr (now {lr})"
            )
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if keep:
            carried = (
                e[batch - keep :] / norms[batch - keep :].view(-1, *[1] * (dim + 1))
            ).detach()
        factor = math.exp(float(loss.detach()))
        first = factor if step == 0 else first
        last = factor
        if log is not None and (step % max(1, steps // 10) == 0 or step == steps - 1):
            took = time.perf_counter() - t0
            log(f"step {step:>4}/{steps}: loss {factor:.4f} per cycle, {took:.1f} s")
    seconds = time.perf_counter() - t0
    learned.eval()
    factor1 = asymptotic_factor(_solver(A, learned))
    learned.problem = {
        "name": problem,
        "eps": float(eps) if problem == "anisotropic" else None,
        "n": n,
        "dim": dim,
    }
    learned.training_log = {
        "steps": steps,
        "cycles": cycles,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "seconds": seconds,
        "loss_first": first,
        "loss_last": last,
        "factor_jacobi": factor0,
        "factor": factor1,
    }
    return learned
