"""The Darcy benchmark of operator learning, generated with this library's multigrid solver.

Each sample is a pair (a, u) on the unit square with

    -div(a grad u) = f,   f = 1,   u = 0 on the boundary,

a = ``high`` (12) where psi >= 0 and a = ``low`` (3) where psi < 0, and psi a Gaussian
random field with mean 0 and covariance tau^(2 alpha - 2) (-Delta + tau^2)^(-alpha)
(alpha = 2, tau = 3), Delta the Laplacian with zero Neumann boundary conditions and the
constant mode left out. This is the problem of Li et al.'s Fourier-neural-operator
benchmark; ``docs/darcy.md`` lists their published conventions and where ours differ.

Conventions here:

* **Grid.** s = 2^k + 1 nodes per side, boundary included (33, 65, 129, 257, 513), mesh
  width h = 1/(s - 1); array index [i, j] is the node (x, y) = (i h, j h). The
  coefficient, the field and the solution all live on these nodes.
* **Field.** psi(x) = sum_k c_k xi_k phi_k(x) over k = (k1, k2), 0 <= k1, k2 < s, k != 0,
  with phi_k the L2-normalised cosines (the Neumann eigenfunctions), xi_k independent
  standard normals and c_k = tau^(alpha - 1) (pi^2 |k|^2 + tau^2)^(-alpha / 2) the square
  roots of the covariance's eigenvalues; evaluated at the nodes by one type-I discrete
  cosine transform (``scipy.fft.dctn``).
* **PDE.** The five-point scheme of :func:`mgnet.stencils.diffusion` on the (s - 2)^2
  interior nodes: a node's coefficient is the value of a there, the coefficient of the
  face between two nodes is the harmonic mean of theirs. Solved by conjugate gradients
  preconditioned with one V-cycle of :class:`mgnet.multigrid.MultigridSolver` to a
  relative residual ``tol`` = 1e-10 (:func:`solve_darcy`); every sample's residual is
  recomputed from the fine operator and a sample above ``tol`` is an error, never data.
* **Randomness.** Sample i of split ``train`` (``test``) draws from its own generator,
  seeded by (seed, 0 (1), i): a split's samples do not depend on how many are drawn, and
  the train and test streams are independent.
* **Files.** ``train.mat`` and ``test.mat``: MATLAB v5 files with the keys ``coeff`` (a)
  and ``sol`` (u), each (N, s, s) float32, as in Li et al.'s files. ``test_R.mat``: the
  test set subsampled to R nodes per side (every (s - 1)/(R - 1)-th node of the same
  solves). ``darcy.json``: the parameters. Optionally ``darcy_train_R.pt`` /
  ``darcy_test_R.pt`` (keys ``x``, ``y``), the layout of the neuraloperator library.

Reading: :func:`read_darcy_mat` reads these files and Li et al.'s published ones
(``piececonst_r421_N1024_smooth1.mat``: (1024, 421, 421), float64, v5; v7.3/HDF5 files
need h5py), with optional subsampling by a stride; :class:`DarcyDataset` yields
(coefficient, solution) tensors shaped (1, s, s); :func:`darcy_splits` makes the
train/val/test splits of a data folder that ``mgnet train --data darcy`` trains on.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "RESOLUTIONS",
    "DarcyParams",
    "DarcyReport",
    "DarcyDataset",
    "check_resolution",
    "grf_sqrt_eigenvalues",
    "grf_from_coefficients",
    "sample_coefficient",
    "solve_darcy",
    "generate_darcy",
    "subsample",
    "write_darcy",
    "write_darcy_mat",
    "read_darcy_mat",
    "load_darcy",
    "darcy_splits",
    "DARCY_OPTIONS",
]

RESOLUTIONS = (33, 65, 129, 257, 513)
SPLITS = {"train": 0, "test": 1}
FORCING = 1.0
MAX_ITER = 200
FAST_MAXITER = 30  # CG iterations allowed with rediscretized coarse operators
# Coarsen until the coarsest grid has at most this many unknowns (7^2), which is then
# factorized directly: a 129^2 sample runs 5 levels instead of 7 (measured: about 1.25x faster
# than 7 levels; a 15^2 coarsest grid was no faster, its dense factorization costs more).
MAX_COARSE = 49
# A MATLAB v5 file stores a variable's size in 32 bits; MATLAB refuses more than 2 GB.
MAT5_MAX_BYTES = 2**31 - 1
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by mgnet data darcy"

PUBLISHED_FILES = {
    "train": "piececonst_r421_N1024_smooth1.mat",
    "test": "piececonst_r421_N1024_smooth2.mat",
}


# --------------------------------------------------------------------------- checks
def check_resolution(s: int, name: str = "resolution") -> int:
    """``s`` itself when it is one of :data:`RESOLUTIONS` (2^k + 1), else a ValueError."""
    if isinstance(s, bool) or not isinstance(s, int | np.integer) or int(s) not in RESOLUTIONS:
        accepted = ", ".join(map(str, RESOLUTIONS))
        raise ValueError(
            f"{name}: {s!r} is not one of {accepted} (2^k + 1 nodes per side, boundary included)"
        )
    return int(s)


def _count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"{name}: expected a number of samples >= 0, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class DarcyParams:
    """What defines a Darcy data set: the grid, the coefficient's law and the solve.

    ``resolution``: nodes per side s (2^k + 1); ``high``/``low``: a where psi >= 0 / < 0;
    ``alpha``/``tau``: the covariance tau^(2 alpha - 2) (-Delta + tau^2)^(-alpha) of psi
    (alpha > 1, the field's dimension over two, so that psi is a function); ``tol``: the
    relative residual every solve must reach; ``seed``: the seed of both splits.
    """

    resolution: int = 65
    high: float = 12.0
    low: float = 3.0
    alpha: float = 2.0
    tau: float = 3.0
    tol: float = 1e-10
    seed: int = 0

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name in ("high", "low", "alpha", "tau", "tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not (self.high > 0 and self.low > 0):
            raise ValueError(
                f"high, low: the coefficient must be positive, got high={self.high:g}, "
                f"low={self.low:g}"
            )
        if not self.alpha > 1:
            raise ValueError(
                f"alpha: must be > 1 (a field in 2D needs alpha > d/2), got {self.alpha:g}"
            )
        if not self.tau > 0:
            raise ValueError(f"tau: must be positive, got {self.tau:g}")
        if not 0 < self.tol <= 1e-10:
            raise ValueError(
                f"tol: the data need a relative residual in (0, 1e-10], got {self.tol:g}"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or self.seed < 0
        ):
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))


# ----------------------------------------------------------------- the random field
@functools.lru_cache(maxsize=16)
def grf_sqrt_eigenvalues(s: int, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """c_k = tau^(alpha - 1) (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha/2), 0 <= k1, k2 < s, with
    c_0 = 0: the square roots of the eigenvalues of the covariance of psi (read-only)."""
    k = np.arange(s, dtype=np.float64)
    lam = np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    c = tau ** (alpha - 1) * (lam + tau**2) ** (-alpha / 2)
    c[0, 0] = 0.0
    c.setflags(write=False)
    return c


@functools.lru_cache(maxsize=16)
def _dct_weights(s: int, alpha: float, tau: float) -> np.ndarray:
    """c_k times the factors that turn the unnormalised type-I DCT into the sum of
    c_k xi_k phi_k at the nodes: phi_k has the factor sqrt(2) per axis with k_i > 0, and
    the type-I DCT counts the modes 1..s-2 twice and the first and last once."""
    g = np.full(s, np.sqrt(2.0) / 2.0)
    g[0], g[-1] = 1.0, np.sqrt(2.0)
    w = grf_sqrt_eigenvalues(s, alpha, tau) * g[:, None] * g[None, :]
    w.setflags(write=False)
    return w


def grf_from_coefficients(xi: np.ndarray, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """psi at the s x s nodes for the KL coefficients ``xi`` (s x s; xi[0, 0] is unused).

    psi(x_i, y_j) = sum_k c_k xi_k phi_k(x_i, y_j), phi_k(x, y) = n_k1 n_k2 cos(pi k1 x)
    cos(pi k2 y) with n_0 = 1, n_k = sqrt(2) (see :func:`grf_sqrt_eigenvalues`), by one
    type-I discrete cosine transform.
    """
    from scipy.fft import dctn

    xi = np.asarray(xi, dtype=np.float64)
    if xi.ndim != 2 or xi.shape[0] != xi.shape[1] or xi.shape[0] < 2:
        raise ValueError(f"xi: expected a square (s, s) array with s >= 2, got {xi.shape}")
    return dctn(_dct_weights(xi.shape[0], float(alpha), float(tau)) * xi, type=1)


def _generator(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def sample_coefficient(
    params: DarcyParams, split: str, index: int
) -> tuple[np.ndarray, np.ndarray]:
    """(a, psi) of sample ``index`` of ``split``, both (s, s) float64 at the nodes."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    s = params.resolution
    xi = _generator(params.seed, split, index).standard_normal((s, s))
    psi = grf_from_coefficients(xi, params.alpha, params.tau)
    return np.where(psi >= 0, params.high, params.low), psi


# ------------------------------------------------------------------------ the solve
def solve_darcy(
    a: Tensor | np.ndarray, tol: float = 1e-10, device: str | torch.device | None = "cpu"
) -> tuple[Tensor, float, int]:
    """u with -div(a grad u) = 1 in the unit square, u = 0 on its boundary.

    ``a``: (s, s), the coefficient at every node including the boundary. Returns u (s, s)
    float64 on the CPU (zero boundary rows and columns), the relative residual
    ||f - A u|| / ||f|| recomputed with the fine operator A, and the CG iterations.

    A, the discrete -div(a grad), is :func:`mgnet.stencils.diffusion`; the solve is CG
    preconditioned by one symmetric V-cycle of :class:`mgnet.multigrid.MultigridSolver`
    (red-black Gauss-Seidel, nu = (1, 1)). Its coarse operators are first rediscretized
    (A^{l+1}: the same scheme with the coefficient injected; cheap to set up, about 14
    iterations at the contrast 12/3); when that has not converged after
    ``FAST_MAXITER`` iterations (high contrast) the solve is redone with Galerkin coarse
    operators R A P, robust to the jumps of a.
    """
    from mgnet.core import residual
    from mgnet.multigrid import MultigridSolver
    from mgnet.stencils import diffusion

    a = torch.as_tensor(a, dtype=torch.float64)
    s = a.shape[0]
    n = (s - 2, s - 2)
    A = diffusion(n, a)
    f = torch.full((1, 1, *n), FORCING, dtype=torch.float64)
    its = 0
    for coarse, maxiter in (("rediscretize", FAST_MAXITER), ("galerkin", MAX_ITER)):
        ml = MultigridSolver(A, coarse=coarse, max_coarse=MAX_COARSE, device=device)
        x = ml.pcg(f, tol=tol, maxiter=maxiter).cpu()
        its += ml.iterations
        if ml.converged:
            break
    with torch.no_grad():
        res = float(residual(A, x, f).norm() / f.norm())
    u = torch.zeros(s, s, dtype=torch.float64)
    u[1:-1, 1:-1] = x[0, 0]
    return u, res, its


# ------------------------------------------------------------------- generation
def _progress(total: int, enabled: bool, desc: str):
    import sys

    from tqdm import tqdm

    return tqdm(
        total=total,
        disable=not (enabled and sys.stderr.isatty()),
        unit="sample",
        desc=desc,
        dynamic_ncols=True,
        leave=False,
    )


def generate_darcy(
    params: DarcyParams,
    split: str,
    n: int,
    device: str | torch.device | None = "cpu",
    on_sample: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Samples 0..n-1 of ``split``: (coeff, sol, largest relative residual), the arrays
    (n, s, s) float32.

    A solve that does not reach ``params.tol`` raises a RuntimeError naming the sample.
    ``on_sample`` is called after each sample (a progress bar's ``update``).
    """
    from threadpoolctl import threadpool_limits

    n = _count(n, "n")
    s = params.resolution
    coeff = np.empty((n, s, s), dtype=np.float32)
    sol = np.empty((n, s, s), dtype=np.float32)
    worst = 0.0
    # the set-up's small dense factorizations are 10x slower with a BLAS thread pool on
    # shared cores; the limit reaches only libraries already loaded, so load them first
    import mgnet.multigrid  # noqa: F401  (SciPy's linear algebra, through the solver)

    with threadpool_limits(limits=1, user_api="blas"):
        for i in range(n):
            a, _ = sample_coefficient(params, split, i)
            u, res, its = solve_darcy(a, params.tol, device)
            if not res <= params.tol:  # also NaN
                raise RuntimeError(
                    f"darcy: {split} sample {i} (seed {params.seed}) did not converge: "
                    f"relative residual {res:.3g} > {params.tol:g} after {its} CG iterations;"
                    f" nothing was written"
                )
            coeff[i] = a
            sol[i] = u.numpy()
            worst = max(worst, res)
            if on_sample is not None:
                on_sample()
    return coeff, sol, worst


def subsample(x: np.ndarray | Tensor, resolution: int) -> np.ndarray | Tensor:
    """Every m-th node of (..., s, s) data, m = (s - 1)/(resolution - 1): the values of the
    same function on the coarser grid of ``resolution`` nodes per side (boundary kept)."""
    s = x.shape[-1]
    if resolution < 2 or (s - 1) % (resolution - 1):
        accepted = [(s - 1) // d + 1 for d in range(1, s) if (s - 1) % d == 0 and d < s - 1]
        raise ValueError(
            f"resolution: {s} nodes per side cannot be subsampled to {resolution} with the "
            f"boundary kept; accepted: {', '.join(map(str, accepted))}"
        )
    m = (s - 1) // (resolution - 1)
    return x[..., ::m, ::m]


# ------------------------------------------------------------------------- writing
def _write_atomic(path: Path, write: Callable[[Any], None], force: bool) -> None:
    """Write ``path`` through a temporary file in its folder, then rename it into place.
    Without ``force`` an existing ``path`` is never replaced (it is linked, not renamed,
    so that a file that appeared meanwhile is kept)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        exists = ValueError(f"-o: {str(path)!r} exists; pass --force to overwrite it")
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise exists from None
            except OSError:  # a file system without hard links: check, then rename
                if path.exists():
                    raise exists from None
                os.replace(tmp, path)
    except OSError as e:
        raise ValueError(f"-o: cannot write {str(path)!r}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_darcy_mat(
    path: str | Path, coeff: np.ndarray, sol: np.ndarray, force: bool = False
) -> Path:
    """Write (coeff, sol), each (N, s, s), as a MATLAB v5 file in Li et al.'s layout:
    keys ``coeff`` and ``sol``, float32. Atomic; an existing file is kept unless
    ``force``. The header carries no date, so equal data give identical files."""
    from scipy.io import savemat

    path = Path(path)
    coeff = np.ascontiguousarray(coeff, dtype=np.float32)
    sol = np.ascontiguousarray(sol, dtype=np.float32)
    if coeff.shape != sol.shape or coeff.ndim != 3:
        raise ValueError(
            f"coeff, sol: expected two (N, s, s) arrays of one shape, got {coeff.shape} "
            f"and {sol.shape}"
        )
    _check_mat5_size(coeff.shape, "coeff")

    def write(fh) -> None:
        savemat(fh, {"coeff": coeff, "sol": sol}, format="5")
        fh.seek(0)  # replace the free-text header (it holds the creation time)
        fh.write(MAT_HEADER.ljust(116))

    _write_atomic(path, write, force)
    return path


def _check_mat5_size(shape: Sequence[int], name: str) -> None:
    nbytes = 4 * math.prod(shape)
    if nbytes > MAT5_MAX_BYTES:
        per = 4 * math.prod(shape[1:])
        raise ValueError(
            f"{name}: {shape[0]} samples of {shape[1]}x{shape[2]} make {nbytes / 2**30:.1f} "
            f"GiB, more than a MATLAB v5 file holds per variable (2 GiB); at most "
            f"{MAT5_MAX_BYTES // per} samples per file at this resolution"
        )


def _write_pt(path: Path, coeff: np.ndarray, sol: np.ndarray, force: bool) -> None:
    x, y = torch.from_numpy(coeff), torch.from_numpy(sol)
    _write_atomic(path, lambda fh: torch.save({"x": x, "y": y}, fh), force)


@dataclass
class DarcyReport:
    """What :func:`write_darcy` wrote and how long it took."""

    params: DarcyParams
    out_dir: Path
    files: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0
    max_residual: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def _resolution_list(values: Sequence[int], s: int, name: str) -> list[int]:
    out = []
    for r in values:
        check_resolution(r, name)
        if r > s:
            raise ValueError(
                f"{name}: {r} is finer than --resolution {s}; subsampling only coarsens"
            )
        if r not in out:
            out.append(int(r))
    return out


def write_darcy(
    out_dir: str | Path,
    params: DarcyParams,
    n_train: int,
    n_test: int,
    train_resolution: int | None = None,
    test_resolutions: Sequence[int] = (),
    neuralop: bool = False,
    force: bool = False,
    progress: bool = False,
    device: str | torch.device | None = "cpu",
) -> DarcyReport:
    """Generate and write a Darcy data set into ``out_dir`` (see the module docstring).

    Files: ``train.mat`` (at ``train_resolution``, default ``params.resolution``),
    ``test.mat`` (at ``params.resolution``), ``test_R.mat`` for each R of
    ``test_resolutions``, ``darcy.json``; with ``neuralop`` also ``darcy_train_R.pt``
    and ``darcy_test_R.pt``. A split with 0 samples writes no file. Every argument and
    every output path is checked before the first solve; nothing is written until all
    samples are solved, and an existing file is kept unless ``force``.
    """
    n_train, n_test = _count(n_train, "train"), _count(n_test, "test")
    if n_train + n_test == 0:
        raise ValueError("train, test: nothing to generate; ask for at least one sample")
    s = params.resolution
    r_train = (
        s
        if train_resolution is None
        else _resolution_list([train_resolution], s, "train_resolution")[0]
    )
    r_tests = _resolution_list(test_resolutions, s, "test_resolutions")
    out = Path(out_dir)
    outputs: dict[str, tuple[str, int]] = {}  # file name -> (split, resolution)
    if n_train:
        outputs["train.mat"] = ("train", r_train)
        _check_mat5_size((n_train, r_train, r_train), "train")
    if n_test:
        outputs["test.mat"] = ("test", s)
        _check_mat5_size((n_test, s, s), "test")
        for r in r_tests:
            outputs[f"test_{r}.mat"] = ("test", r)
    if neuralop:
        if n_train:
            outputs[f"darcy_train_{r_train}.pt"] = ("train", r_train)
        if n_test:
            for r in [s, *r_tests]:
                outputs[f"darcy_test_{r}.pt"] = ("test", r)
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o: {str(out)!r} is a file, not a folder")
    if not force:
        for name in [*outputs, "darcy.json"]:
            if (out / name).exists():
                raise ValueError(f"-o: {str(out / name)!r} exists; pass --force to overwrite it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"-o: cannot create the folder {str(out)!r}: {e.strerror or e}") from None

    report = DarcyReport(params, out)
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    t0 = time.perf_counter()
    with _progress(n_train + n_test, progress, f"darcy {s}x{s}") as bar:
        for split, n in (("train", n_train), ("test", n_test)):
            if n:
                coeff, sol, worst = generate_darcy(params, split, n, device, bar.update)
                data[split] = (coeff, sol)
                report.max_residual = max(report.max_residual, worst)
    report.seconds = time.perf_counter() - t0
    report.samples = n_train + n_test

    for name, (split, r) in outputs.items():
        coeff, sol = (subsample(x, r) for x in data[split])
        if name.endswith(".mat"):
            write_darcy_mat(out / name, coeff, sol, force=force)
        else:
            _write_pt(out / name, np.ascontiguousarray(coeff), np.ascontiguousarray(sol), force)
        report.files[name] = tuple(coeff.shape)
    meta = {
        "problem": "-div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary",
        "coefficient": "a = high where psi >= 0, low where psi < 0; psi ~ N(0, "
        "tau^(2 alpha - 2) (-Laplacian + tau^2)^(-alpha)), Neumann, constant mode removed",
        "grid": "index [i, j] is the node (i h, j h), h = 1/(s - 1)",
        **asdict(params),
        "train": n_train,
        "test": n_test,
        "max_relative_residual": report.max_residual,
        "files": {k: list(v) for k, v in report.files.items()},
    }
    _write_atomic(
        out / "darcy.json",
        lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode()),
        force,
    )
    return report


# ------------------------------------------------------------------------- reading
def _mat_version(path: Path) -> int:
    """1 for MATLAB v4/v5/v7 files, 2 for v7.3 (HDF5); a ValueError for anything else."""
    from scipy.io.matlab import matfile_version

    try:
        major, _ = matfile_version(str(path))
    except Exception as e:  # scipy raises several types for a foreign file
        raise ValueError(f"{str(path)!r}: not a MATLAB .mat file ({e})") from None
    return 2 if major == 2 else 1


def _need_keys(path: Path, names: Sequence[str]) -> None:
    if "coeff" not in names or "sol" not in names:
        raise ValueError(
            f"{str(path)!r}: a Darcy .mat file needs the keys 'coeff' and 'sol'; it has "
            f"{', '.join(repr(n) for n in list(names)[:10]) or 'none'}"
        )


def _check_shapes(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """s, after checking that 'coeff' and 'sol' are (N, s, s) arrays of one shape."""
    for key, shape in shapes.items():
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] < 2 or shape[0] < 1:
            raise ValueError(
                f"{str(path)!r}: {key!r} must be an (N, s, s) array with N >= 1, s >= 2; got "
                f"shape {shape}"
            )
    if shapes["coeff"] != shapes["sol"]:
        raise ValueError(
            f"{str(path)!r}: 'coeff' {shapes['coeff']} and 'sol' {shapes['sol']} must have "
            f"one shape"
        )
    return shapes["coeff"][1]


def _read_v5(
    path: Path, stride: int | None, resolution: int | None, limit: int | None
) -> list[np.ndarray]:
    from scipy.io import loadmat, whosmat

    try:
        _need_keys(path, [w[0] for w in whosmat(str(path))])
        raw = loadmat(str(path), variable_names=["coeff", "sol"])
    except ValueError:
        raise
    except Exception as e:  # truncated or corrupt file: scipy raises several types
        raise ValueError(f"{str(path)!r}: cannot read it as a MATLAB file ({e})") from None
    s = _check_shapes(path, {k: raw[k].shape for k in ("coeff", "sol")})
    m = _stride_for(s, stride, resolution, path)
    return [raw[k][:limit, ::m, ::m] for k in ("coeff", "sol")]


def _read_v73(
    path: Path, stride: int | None, resolution: int | None, limit: int | None
) -> list[np.ndarray]:
    """A v7.3 (HDF5) file: MATLAB's column-major (N, s, s) is stored as (s, s, N); only
    the kept nodes and samples are read."""
    try:
        import h5py
    except ImportError:
        raise ValueError(
            f"{str(path)!r} is a MATLAB v7.3 (HDF5) file; reading it needs h5py "
            f"(pip install 'torch-mgnet[darcy]')"
        ) from None
    try:
        with h5py.File(path, "r") as fh:
            _need_keys(path, [k for k in fh if not k.startswith("#")])
            ds = {k: fh[k] for k in ("coeff", "sol")}
            shapes = {
                k: tuple(reversed(d.shape)) if isinstance(d, h5py.Dataset) else ()
                for k, d in ds.items()
            }
            s = _check_shapes(path, shapes)
            m = _stride_for(s, stride, resolution, path)
            return [np.transpose(d[::m, ::m, :limit], (2, 1, 0)) for d in ds.values()]
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"{str(path)!r}: cannot read it as a MATLAB v7.3 file ({e})") from None


def _stride_for(s: int, stride: int | None, resolution: int | None, path: Path) -> int:
    if stride is not None and resolution is not None:
        raise ValueError("stride, resolution: give one of them, not both")
    divisors = [d for d in range(1, s) if (s - 1) % d == 0]
    if resolution is not None:
        if (
            isinstance(resolution, bool)
            or not isinstance(resolution, int)
            or resolution < 2
            or (s - 1) % (resolution - 1)
        ):
            accepted = ", ".join(str((s - 1) // d + 1) for d in divisors)
            raise ValueError(
                f"resolution: {str(path)!r} has {s} nodes per side, which subsample (boundary "
                f"kept) to {accepted}; got {resolution!r}"
            )
        return (s - 1) // (resolution - 1)
    stride = 1 if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride not in divisors:
        raise ValueError(
            f"stride: {str(path)!r} has {s} nodes per side; a stride must divide s - 1 = "
            f"{s - 1} so that the boundary nodes are kept: {', '.join(map(str, divisors))}; "
            f"got {stride!r}"
        )
    return stride


def read_darcy_mat(
    path: str | Path,
    stride: int | None = None,
    resolution: int | None = None,
    limit: int | None = None,
) -> tuple[Tensor, Tensor]:
    """(coeff, sol) of a Darcy .mat file as float32 tensors (N, s', s').

    Reads this library's files and Li et al.'s (MATLAB v5 via SciPy, v7.3/HDF5 via h5py).
    ``stride`` keeps every stride-th node (it must divide s - 1, so that the boundary is
    kept: Li et al.'s 421 with stride 5 gives 85); ``resolution`` asks for s' instead.
    ``limit`` keeps the first samples only. A missing key, arrays that are not (N, s, s)
    of one shape, or a NaN/infinite entry is a ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: no such file")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a number of samples >= 1, got {limit!r}")
    read = _read_v73 if _mat_version(path) == 2 else _read_v5
    out = []
    for key, x in zip(("coeff", "sol"), read(path, stride, resolution, limit)):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"{str(path)!r}: {key!r} must hold real numbers, got {x.dtype}")
        bad = ~np.isfinite(x)
        if bad.any():
            i = int(np.argwhere(bad)[0][0])
            raise ValueError(
                f"{str(path)!r}: {key!r} holds NaN or infinite values (first in sample {i})"
            )
        out.append(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return out[0], out[1]


class DarcyDataset(Dataset):
    """Pairs (a, u) of a Darcy data set: coefficient and solution, each (1, s, s) float32.

    ``coeff`` and ``sol``: (N, s, s) tensors or arrays. :meth:`from_mat` reads a file
    (see :func:`read_darcy_mat` for ``stride``, ``resolution`` and ``limit``).
    """

    def __init__(self, coeff: Tensor | np.ndarray, sol: Tensor | np.ndarray) -> None:
        coeff = torch.as_tensor(coeff, dtype=torch.float32)
        sol = torch.as_tensor(sol, dtype=torch.float32)
        if coeff.dim() != 3 or coeff.shape != sol.shape or coeff.shape[1] != coeff.shape[2]:
            raise ValueError(
                f"coeff, sol: expected two (N, s, s) arrays of one shape, got "
                f"{tuple(coeff.shape)} and {tuple(sol.shape)}"
            )
        if not (bool(torch.isfinite(coeff).all()) and bool(torch.isfinite(sol).all())):
            raise ValueError("coeff, sol: the data hold NaN or infinite values")
        self.coeff = coeff
        self.sol = sol

    @classmethod
    def from_mat(
        cls,
        path: str | Path,
        stride: int | None = None,
        resolution: int | None = None,
        limit: int | None = None,
    ) -> DarcyDataset:
        return cls(*read_darcy_mat(path, stride=stride, resolution=resolution, limit=limit))

    @property
    def resolution(self) -> int:
        return int(self.coeff.shape[-1])

    def __len__(self) -> int:
        return int(self.coeff.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.coeff[index].unsqueeze(0), self.sol[index].unsqueeze(0)

    def __repr__(self) -> str:
        return f"DarcyDataset({len(self)} samples, {self.resolution}x{self.resolution})"


def load_darcy(
    root: str | Path,
    split: str = "train",
    stride: int | None = None,
    resolution: int | None = None,
    limit: int | None = None,
) -> DarcyDataset:
    """A split of a Darcy data folder: ``ROOT/<split>.mat`` (``train``, ``test``, or a
    subsampled ``test_R``), or for ``train``/``test`` Li et al.'s published file names
    (``piececonst_r421_N1024_smooth1.mat`` / ``..._smooth2.mat``) when those are there."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir: {str(root)!r} is not a folder")
    candidates = [root / f"{split}.mat"]
    if split in PUBLISHED_FILES:
        candidates.append(root / PUBLISHED_FILES[split])
    for path in candidates:
        if path.is_file():
            return DarcyDataset.from_mat(path, stride=stride, resolution=resolution, limit=limit)
    raise FileNotFoundError(
        f"data_dir: no {' or '.join(repr(p.name) for p in candidates)} in {str(root)!r} "
        f"(generate one with `mgnet data darcy -o {root}`)"
    )


#: the keyword options of :func:`darcy_splits` (``mgnet train --data-kwargs KEY=VALUE``)
DARCY_OPTIONS = ("stride", "resolution", "n_train", "n_test", "val", "test_resolution")
#: without ``val``, one training sample in VAL_EVERY is held out for validation
VAL_EVERY = 10


def _option_count(value: Any, name: str, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r:.60}")
    return int(value)


def darcy_splits(
    root: str | Path,
    holdout: bool = True,
    stride: int | None = None,
    resolution: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    val: int | None = None,
    test_resolution: int | None = None,
) -> tuple[DarcyDataset, DarcyDataset, DarcyDataset]:
    """(train, val, test) of a Darcy data folder, for operator learning.

    ``ROOT/train.mat`` (or Li et al.'s ``piececonst_r421_N1024_smooth1.mat``) gives train
    and val, ``ROOT/test.mat`` (or ``..._smooth2.mat``) the test split. ``stride`` or
    ``resolution`` subsample both files (:func:`read_darcy_mat`; Li et al.: stride 5,
    421 -> 85); ``n_train`` / ``n_test`` keep the first samples of each file (Li et al.:
    1000 and 100; asking for more than a file holds is an error). ``val``: the last
    ``val`` samples of the (kept) training samples are the validation split (default:
    one in :data:`VAL_EVERY`, at least one); ``holdout=False`` keeps none.
    ``test_resolution`` R: the test split at R nodes per side, from ``ROOT/test_R.mat``
    when there is one (``mgnet data darcy --test-resolutions``), else ``test.mat``
    subsampled to R (``stride``/``resolution`` then apply to the training file only).
    """
    n_train = _option_count(n_train, "n_train", 1)
    n_test = _option_count(n_test, "n_test", 1)
    val = _option_count(val, "val", 0)
    train = load_darcy(root, "train", stride=stride, resolution=resolution, limit=n_train)
    if test_resolution is None:
        test = load_darcy(root, "test", stride=stride, resolution=resolution, limit=n_test)
    else:
        r = _option_count(test_resolution, "test_resolution", 2)
        own = Path(root) / f"test_{r}.mat"
        split, kwargs = (own.stem, {}) if own.is_file() else ("test", {"resolution": r})
        test = load_darcy(root, split, limit=n_test, **kwargs)
    for name, asked, ds in (("n_train", n_train, train), ("n_test", n_test, test)):
        if asked is not None and len(ds) < asked:
            raise ValueError(
                f"{name}: {asked} samples asked for, the {'train' if ds is train else 'test'} "
                f"file of {str(root)!r} holds {len(ds)}"
            )
    if not holdout:
        if val:
            raise ValueError(
                f"val: {val} validation samples asked for, but this run keeps no validation "
                "split (--protocol paper); leave val out"
            )
        return train, DarcyDataset(train.coeff[:0], train.sol[:0]), test
    v = max(len(train) // VAL_EVERY, 1) if val is None else val
    if v >= len(train):
        raise ValueError(
            f"val: {v} validation samples leave none of the {len(train)} training samples "
            f"to train on; accepted: 0 to {len(train) - 1}"
        )
    k = len(train) - v
    return (
        DarcyDataset(train.coeff[:k], train.sol[:k]),
        DarcyDataset(train.coeff[k:], train.sol[k:]),
        test,
    )
