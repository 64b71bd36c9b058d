"""Sparse problems for the algebraic solver: finite elements on unstructured meshes
(scikit-fem, the optional extra ``torch-mgnet[fem]``), Darcy flow with jumping
permeability and a rotated anisotropic operator on structured grids (no extra needed),
and reading a matrix from a Matrix Market or SciPy ``.npz`` file.

Each problem returns a :class:`MatrixProblem`: the matrix A, a right-hand side b, the
near-nullspace candidates B (None: constants) and the unknowns per node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from mgnet.constants import MATRIX_PROBLEMS

__all__ = [
    "MATRIX_PROBLEMS",
    "MatrixProblem",
    "darcy_matrix",
    "elasticity_matrix",
    "fem_poisson",
    "fem_jump",
    "fem_elasticity",
    "make_matrix_problem",
    "read_matrix",
    "read_vector",
    "rotated_anisotropy",
]


@dataclass
class MatrixProblem:
    """A x = b with the near-nullspace candidates B (None: the constants) and
    ``blocksize`` unknowns per node; ``name`` says what it is."""

    name: str
    A: sp.csr_matrix
    b: np.ndarray
    B: np.ndarray | None = None
    blocksize: int = 1


def _skfem():
    try:
        import skfem
    except ImportError as e:
        raise ValueError(
            "problem: the finite-element problems need scikit-fem (pip install 'torch-mgnet[fem]')"
        ) from e
    return skfem


def _check_refine(refine: int) -> int:
    if not isinstance(refine, int) or not 0 <= refine <= 12:
        raise ValueError(f"refine: expected an integer from 0 to 12, got {refine!r}")
    return refine


def fem_poisson(refine: int = 4) -> MatrixProblem:
    """-Laplace(u) = 1 on the L-shaped domain (-1, 1)^2 minus (0, 1) x (-1, 0), u = 0 on
    the boundary; P1 elements on a uniformly refined unstructured triangulation."""
    fem = _skfem()
    from skfem.models.poisson import laplace, unit_load

    mesh = fem.MeshTri.init_lshaped().refined(_check_refine(refine))
    basis = fem.Basis(mesh, fem.ElementTriP1())
    A = laplace.assemble(basis)
    b = unit_load.assemble(basis)
    I = basis.complement_dofs(basis.get_dofs())
    return MatrixProblem(f"fem-poisson (L-shape, refine {refine})", A[I][:, I].tocsr(), b[I])


def fem_jump(refine: int = 4, contrast: float = 1e4) -> MatrixProblem:
    """-div(a grad u) = 1 on the unit square with u = 0 on the boundary; a = ``contrast``
    on a checkerboard of 4 x 4 cells and 1 elsewhere (P1 elements, a per element)."""
    fem = _skfem()
    from skfem.helpers import dot, grad

    if not contrast > 0:
        raise ValueError(f"contrast: must be positive, got {contrast}")
    mesh = fem.MeshTri.init_sqsymmetric().refined(_check_refine(refine))
    basis = fem.Basis(mesh, fem.ElementTriP1())
    centre = mesh.p[:, mesh.t].mean(axis=1)
    cell = (np.floor(4 * centre[0]) + np.floor(4 * centre[1])) % 2
    a = np.where(cell == 1, contrast, 1.0)
    a0 = basis.with_element(fem.ElementTriP0()).zeros() + a

    @fem.BilinearForm
    def form(u, v, w):
        return w["a"] * dot(grad(u), grad(v))

    @fem.LinearForm
    def load(v, w):
        return v

    A = form.assemble(basis, a=basis.with_element(fem.ElementTriP0()).interpolate(a0))
    b = load.assemble(basis)
    I = basis.complement_dofs(basis.get_dofs())
    return MatrixProblem(
        f"fem-jump (checkerboard, contrast {contrast:g}, refine {refine})",
        A[I][:, I].tocsr(),
        b[I],
    )


def elasticity_matrix(
    refine: int = 3, clamp: bool = True, E: float = 1.0, nu: float = 0.3
) -> tuple[sp.csr_matrix, np.ndarray]:
    """(K, coords): the stiffness matrix of 2D linear elasticity (plane strain, P1 vector
    elements, unknowns interleaved per node) on the rectangle (0, 4) x (0, 1), clamped at
    x = 0 when ``clamp``, and the coordinates of the nodes it keeps."""
    fem = _skfem()
    from skfem.models.elasticity import lame_parameters, linear_elasticity

    mesh = fem.MeshTri.init_tensor(np.linspace(0, 4, 9), np.linspace(0, 1, 3)).refined(
        _check_refine(refine)
    )
    basis = fem.Basis(mesh, fem.ElementVector(fem.ElementTriP1()))
    K = linear_elasticity(*lame_parameters(E, nu)).assemble(basis)
    nodes = np.arange(mesh.p.shape[1])
    if clamp:
        nodes = np.flatnonzero(mesh.p[0] > 1e-12)
    dofs = np.stack([2 * nodes, 2 * nodes + 1], axis=1).ravel()
    return K[dofs][:, dofs].tocsr(), mesh.p[:, nodes].T.copy()


def fem_elasticity(refine: int = 3) -> MatrixProblem:
    """2D linear elasticity of a cantilever clamped at x = 0 under its own weight, with
    the rigid-body modes as B and 2 unknowns per node."""
    from mgnet.multigrid.aggregation import rigid_body_modes

    K, coords = elasticity_matrix(refine)
    b = np.zeros(K.shape[0])
    mass = np.asarray(abs(K).sum(axis=1)).ravel()  # a load on every node, downward
    b[1::2] = -mass[1::2] / mass.max()
    return MatrixProblem(
        f"fem-elasticity (cantilever, refine {refine})", K, b, rigid_body_modes(coords), 2
    )


def _random_field(n: int, seed: int, length: float = 0.1) -> np.ndarray:
    """A smooth Gaussian random field on an n x n grid (white noise filtered in Fourier
    space), zero mean."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n) * n
    kk = k[:, None] ** 2 + k[None, :] ** 2
    spectrum = np.exp(-0.5 * kk * (2 * math.pi * length) ** 2 / 4)
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * spectrum).real
    return field - np.median(field)


def darcy_matrix(n: int = 63, contrast: float = 1e4, seed: int = 0) -> MatrixProblem:
    """-div(a grad u) = 1 on the unit square, u = 0 on the boundary, finite differences on
    an n x n grid (harmonic face averages); a = ``contrast`` where a smooth random field is
    positive and 1 elsewhere: a random interface with a jump of ``contrast``."""
    from mgnet.stencils import diffusion

    if n < 3:
        raise ValueError(f"n: need at least 3 nodes per axis, got {n}")
    if not contrast > 0:
        raise ValueError(f"contrast: must be positive, got {contrast}")
    psi = _random_field(n + 2, seed)
    a = torch.from_numpy(np.where(psi >= 0, contrast, 1.0))
    A = diffusion((n, n), a).to_sparse().tocsr()
    return MatrixProblem(
        f"darcy {n}x{n} (contrast {contrast:g})", A, np.full(A.shape[0], 1.0 / (n + 1) ** 2)
    )


def rotated_anisotropy(n: int = 63, eps: float = 1e-3, angle: float = math.pi / 8) -> MatrixProblem:
    """-div(K grad u) = 1 on an n x n grid, K with eigenvalues 1 and ``eps`` rotated by
    ``angle`` (bilinear finite elements, 9-point stencil), u = 0 on the boundary."""
    if n < 3:
        raise ValueError(f"n: need at least 3 nodes per axis, got {n}")
    c, s = math.cos(angle), math.sin(angle)
    kxx, kyy, kxy = c * c + eps * s * s, s * s + eps * c * c, (1 - eps) * c * s
    # Q1 element stiffness (2 x 2 Gauss points); in 2D it does not depend on the mesh size
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    Ke = np.zeros((4, 4))
    for xi in (-1 / math.sqrt(3), 1 / math.sqrt(3)):
        for eta in (-1 / math.sqrt(3), 1 / math.sqrt(3)):
            dx = np.array([p * (1 + eta * q) / 4 for p, q in corners])
            dy = np.array([q * (1 + xi * p) / 4 for p, q in corners])
            Ke += kxx * np.outer(dx, dx) + kyy * np.outer(dy, dy)
            Ke += kxy * (np.outer(dx, dy) + np.outer(dy, dx))
    m = n + 2  # with the boundary nodes
    idx = np.arange(m * m).reshape(m, m)
    # element nodes in the order of ``corners``: (x, y) -> idx[y, x]
    elems = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], axis=-1).reshape(
        -1, 4
    )
    rows = np.repeat(elems, 4, axis=1).ravel()
    cols = np.tile(elems, (1, 4)).ravel()
    vals = np.tile(Ke.ravel(), len(elems))
    A = sp.csr_matrix((vals, (rows, cols)), shape=(m * m, m * m))
    inner = idx[1:-1, 1:-1].ravel()
    A = A[inner][:, inner].tocsr()
    A.eliminate_zeros()
    return MatrixProblem(
        f"rotated anisotropy {n}x{n} (eps {eps:g}, angle {angle:.3g})",
        A,
        np.full(A.shape[0], 1.0 / (n + 1) ** 2),
    )


def make_matrix_problem(
    name: str, refine: int = 4, n: int = 63, contrast: float = 1e4, seed: int = 0
) -> MatrixProblem:
    """One of :data:`MATRIX_PROBLEMS`: the FEM problems take ``refine``, the grid problems
    ``n``; ``contrast`` is the coefficient jump of fem-jump and darcy."""
    if name == "fem-poisson":
        return fem_poisson(refine)
    if name == "fem-jump":
        return fem_jump(refine, contrast)
    if name == "fem-elasticity":
        return fem_elasticity(refine)
    if name == "darcy":
        return darcy_matrix(n, contrast, seed)
    if name == "rotated-anisotropy":
        return rotated_anisotropy(n)
    raise ValueError(f"problem: {name!r} is not one of {', '.join(MATRIX_PROBLEMS)}")


# ------------------------------------------------------------------------------ files
def read_matrix(path: str | Path, name: str = "--matrix") -> sp.csr_matrix:
    """A sparse matrix from a Matrix Market file (``.mtx``, also gzipped) or a SciPy
    ``.npz`` (``scipy.sparse.save_npz``). Unreadable files are one-line ValueErrors."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file: {str(path)[:200]}")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix in (".mtx", ".mtx.gz"):
            M = scipy.io.mmread(str(path))
        elif suffix == ".npz":
            M = sp.load_npz(str(path))
        else:
            raise ValueError(
                f"{name}: {path.name[:100]!r} is neither a Matrix Market (.mtx) nor a SciPy "
                "(.npz) file"
            )
    except ValueError as e:
        if str(e).startswith(name):
            raise
        raise ValueError(f"{name}: cannot read {path.name[:100]!r}: {str(e)[:150]}") from e
    except (OSError, EOFError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{name}: cannot read {path.name[:100]!r}: {str(e)[:150]}") from e
    if not sp.issparse(M):
        M = np.asarray(M)
        if M.ndim != 2:
            raise ValueError(f"{name}: {path.name[:100]!r} holds an array, not a matrix")
    return sp.csr_matrix(M)


def read_vector(path: str | Path, n: int, name: str = "--rhs") -> np.ndarray:
    """A right-hand side of n entries: Matrix Market (array or n x k), ``.npy``, ``.npz``
    (a sparse n x k) or text (one number per line)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file: {str(path)[:200]}")
    try:
        if path.suffix == ".npy":
            v = np.load(str(path), allow_pickle=False)
        elif path.suffix in (".mtx", ".gz"):
            v = scipy.io.mmread(str(path))
        elif path.suffix == ".npz":
            v = sp.load_npz(str(path))
        else:
            v = np.loadtxt(str(path), ndmin=1)
    except (ValueError, OSError, EOFError, KeyError, IndexError, TypeError) as e:
        raise ValueError(f"{name}: cannot read {path.name[:100]!r}: {str(e)[:150]}") from e
    v = v.toarray() if sp.issparse(v) else np.asarray(v)
    if not np.issubdtype(v.dtype, np.number) or v.ndim > 2 or v.shape[0] != n:
        raise ValueError(f"{name}: expected {n} numbers (or an {n} x k array), got {v.shape}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: holds NaN or inf")
    return v[:, 0] if v.ndim == 2 and v.shape[1] == 1 else v
