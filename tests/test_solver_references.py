"""The solver's operators against references written out by hand, not against each other:
stencil coefficients computed on paper, the order in which an F-cycle visits its levels,
the symmetry of the CG preconditioner, the 1D weights of R, P and Pi, and the O(h^2)
discretization error of every model problem."""

import numpy as np
import pytest
import torch
from torch import nn

from mgnet.core import CycleRecord, Level, MgCycle, Step, Transfer
from mgnet.multigrid import MultigridSolver, make_problem
from mgnet.stencils import (
    FullWeighting,
    Injection,
    Interpolation,
    anisotropic,
    diffusion,
)

torch.set_num_threads(1)


# ------------------------------------------------------------ stencil coefficients
def test_diffusion_faces_are_harmonic_means_computed_by_hand():
    # 2 x 2 interior nodes, h = 1/3; a given on the 4 x 4 grid with boundary
    a = torch.tensor(
        [
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, 3.0, 1.0],
            [1.0, 6.0, 2.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
        ],
        dtype=torch.float64,
    )
    M = diffusion(2, a, dim=2).to_sparse().toarray() * (1 / 3) ** 2  # times h^2
    # unknowns in C order: (1,1) -> 0, (1,2) -> 1, (2,1) -> 2, (2,2) -> 3 (indices of a)
    h01 = 2 * 1 * 3 / (1 + 3)  # between a[1,1] = 1 and a[1,2] = 3: 1.5 (arithmetic: 2)
    h02 = 2 * 1 * 6 / (1 + 6)  # a[1,1] = 1 and a[2,1] = 6: 12/7 (arithmetic: 3.5)
    h13 = 2 * 3 * 2 / (3 + 2)  # a[1,2] = 3 and a[2,2] = 2: 2.4
    h23 = 2 * 6 * 2 / (6 + 2)  # a[2,1] = 6 and a[2,2] = 2: 3
    assert M[0, 1] == pytest.approx(-h01) and M[1, 0] == pytest.approx(-h01)
    assert M[0, 2] == pytest.approx(-h02) and M[1, 3] == pytest.approx(-h13)
    assert M[2, 3] == pytest.approx(-h23) and M[0, 3] == 0
    # the diagonal adds the faces to the boundary too: a[1,1] = 1 against a[0,1] = a[1,0] = 1
    assert M[0, 0] == pytest.approx(h01 + h02 + 1 + 1)
    b31 = 2 * 6 * 1 / 7  # a[2,1] = 6 against the boundary a[3,1] = a[2,0] = 1
    assert M[2, 2] == pytest.approx(h02 + h23 + b31 + b31)
    b12 = 2 * 3 * 1 / 4  # a[1,2] = 3 against the boundary a[0,2] = a[1,3] = 1
    assert M[1, 1] == pytest.approx(h01 + h13 + b12 + b12)


def test_anisotropy_acts_on_the_axes_it_names():
    # 3 x 5 interior nodes: h = (1/4, 1/6); eps = (1, 0.1)
    op = anisotropic((3, 5), eps=(1.0, 0.1))
    M = op.to_sparse().toarray()
    centre = 1 * 5 + 2  # node (1, 2)
    assert M[centre, centre + 5] == pytest.approx(-1.0 * 16)  # axis 0 neighbour: -eps_0 / h_0^2
    assert M[centre, centre + 1] == pytest.approx(-0.1 * 36)  # axis 1 neighbour: -eps_1 / h_1^2
    assert M[centre, centre] == pytest.approx(2 * 16 + 2 * 0.1 * 36)
    # 3D: eps = (1, 0.1, 0.01), h = (1/4, 1/4, 1/4)
    op = anisotropic((3, 3, 3), eps=(1.0, 0.1, 0.01))
    M = op.to_sparse().toarray()
    c = 13  # node (1, 1, 1)
    assert [M[c, c + 9], M[c, c + 3], M[c, c + 1]] == pytest.approx([-16, -1.6, -0.16])


# -------------------------------------------------------------- O(h^2) for every problem
@pytest.mark.parametrize(
    "name,dim,sizes",
    [
        ("poisson", 2, (31, 63, 127)),
        ("anisotropic", 2, (31, 63, 127)),
        ("diffusion", 2, (31, 63, 127)),
        ("nonlinear", 2, (31, 63, 127)),
        ("poisson", 1, (63, 127, 255)),
        ("anisotropic", 3, (7, 15, 31)),
        ("diffusion", 3, (7, 15, 31)),
    ],
)
def test_discretization_error_is_second_order(name, dim, sizes):
    errors = []
    for n in sizes:
        prob = make_problem(name, dim, n)
        ml = MultigridSolver(prob.A, device="cpu")
        u = ml.solve(prob.f, tol=1e-11, maxiter=200)
        assert ml.converged, (name, n)
        errors.append(prob.error(u))
    ratios = [c / f for c, f in zip(errors, errors[1:])]
    # halving h divides the error by 4 (measured 3.93 to 4.02)
    assert all(3.8 < r < 4.2 for r in ratios), (name, dim, errors, ratios)


# --------------------------------------------------------------------- R, P and Pi
def _fw_1d(x: np.ndarray, periodic: bool) -> np.ndarray:
    """Full weighting by hand: coarse I = (x[2I-1+s] + 2 x[2I+s] + x[2I+1+s]) / 4."""
    n = len(x)
    if periodic:
        return np.array(
            [(x[2 * i - 1] + 2 * x[2 * i] + x[(2 * i + 1) % n]) / 4 for i in range(n // 2)]
        )
    return np.array([(x[2 * i] + 2 * x[2 * i + 1] + x[2 * i + 2]) / 4 for i in range((n - 1) // 2)])


def _interp_1d(c: np.ndarray, n: int, periodic: bool) -> np.ndarray:
    """Linear interpolation by hand: coarse nodes copied, the nodes between them averaged
    (a Dirichlet boundary value is 0)."""
    out = np.zeros(n)
    m = len(c)
    for i in range(n):
        if periodic:
            out[i] = c[i // 2] if i % 2 == 0 else (c[i // 2] + c[(i // 2 + 1) % m]) / 2
        elif i % 2 == 1:
            out[i] = c[(i - 1) // 2]
        else:
            left = c[i // 2 - 1] if i // 2 - 1 >= 0 else 0.0
            right = c[i // 2] if i // 2 < m else 0.0
            out[i] = (left + right) / 2
    return out


@pytest.mark.parametrize("n,bc", [(9, "dirichlet"), (8, "periodic")])
def test_full_weighting_and_interpolation_against_hand_written_weights(n, bc):
    periodic = bc == "periodic"
    g = np.random.default_rng(0)
    x = g.standard_normal(n)
    R, P = FullWeighting((n,), bc), Interpolation((n,), bc)
    t = torch.from_numpy(x).view(1, 1, n)
    np.testing.assert_allclose(R(t).numpy().ravel(), _fw_1d(x, periodic), rtol=1e-14)
    if not periodic:  # spelled out: (x0 + 2 x1 + x2) / 4 on the first coarse node
        assert float(R(t)[0, 0, 0]) == pytest.approx((x[0] + 2 * x[1] + x[2]) / 4)
    m = n // 2
    c = g.standard_normal(m)
    ct = torch.from_numpy(c).view(1, 1, m)
    np.testing.assert_allclose(P(ct).numpy().ravel(), _interp_1d(c, n, periodic), rtol=1e-14)
    # 2D: the tensor product of the 1D weights, applied axis by axis by hand
    X = g.standard_normal((n, n))
    ref = np.array(
        [_fw_1d(col, periodic) for col in np.array([_fw_1d(row, periodic) for row in X]).T]
    ).T
    R2 = FullWeighting((n, n), bc)(torch.from_numpy(X).view(1, 1, n, n))
    np.testing.assert_allclose(R2.numpy()[0, 0], ref, rtol=1e-13)
    C = g.standard_normal((m, m))
    ref = np.array(
        [
            _interp_1d(col, n, periodic)
            for col in np.array([_interp_1d(r, n, periodic) for r in C]).T
        ]
    ).T
    P2 = Interpolation((n, n), bc)(torch.from_numpy(C).view(1, 1, m, m))
    np.testing.assert_allclose(P2.numpy()[0, 0], ref, rtol=1e-13)


def test_injection_takes_the_values_at_the_coarse_nodes():
    x = torch.arange(7, dtype=torch.float64).view(1, 1, 7)
    assert Injection((7,), "dirichlet")(x).flatten().tolist() == [1.0, 3.0, 5.0]
    x = torch.arange(8, dtype=torch.float64).view(1, 1, 8)
    assert Injection((8,), "periodic")(x).flatten().tolist() == [0.0, 2.0, 4.0, 6.0]
    X = torch.arange(49, dtype=torch.float64).view(1, 1, 7, 7)  # value 7 i + j at (i, j)
    coarse = Injection((7, 7), "dirichlet")(X)[0, 0]
    assert coarse.tolist() == [[7 * i + j for j in (1, 3, 5)] for i in (1, 3, 5)]


# ----------------------------------------------------------------- the F-cycle's order
def test_f_cycle_visits_its_levels_in_the_textbook_order():
    """F-cycle on three levels: after the restriction, level 1 is visited by an F-cycle
    (which itself visits level 2 by an F- then a V-cycle), then by a V-cycle."""
    lin = [nn.Identity() for _ in range(3)]
    levels = [Level(A, [Step(A, nn.Identity())], [Step(A, nn.Identity())]) for A in lin]
    half = nn.AvgPool1d(2)
    up = nn.Upsample(scale_factor=2)
    cycle = MgCycle(levels, [Transfer(R=half, P=up), Transfer(R=half, P=up)], shape="F")
    record = CycleRecord()
    cycle(torch.randn(1, 1, 8), record=record)
    coarsest = [(2, "start"), (2, "pre"), (2, "post")]
    expected = (
        [(0, "start"), (0, "pre"), (1, "restrict")]
        + [(1, "start"), (1, "pre"), (2, "restrict")]  # F on level 1 ...
        + coarsest  # ... visits level 2 by F (the coarsest: smoothing only)
        + coarsest  # ... then by V
        + [(1, "correct"), (1, "post")]
        + [(1, "start"), (1, "pre"), (2, "restrict")]  # V on level 1
        + coarsest
        + [(1, "correct"), (1, "post")]
        + [(0, "correct"), (0, "post")]
    )
    assert [(e["level"], e["phase"]) for e in record.events] == expected
    # and FMG: the coarsest level first, then each finer level's cycle once
    record = CycleRecord()
    MgCycle(levels, cycle.transfers, shape="V").fmg(torch.randn(1, 1, 8), record=record)
    starts = [e["level"] for e in record.events if e["phase"] == "start"]
    assert starts == [2, 1, 2, 0, 1, 2]


# ------------------------------------------------------------ the CG preconditioner
@pytest.mark.parametrize(
    "smoother,nu", [("rbgs", (1, 1)), ("rbgs", (2, 2)), ("jacobi", (2, 2)), ("chebyshev", (3, 3))]
)
def test_the_cg_preconditioner_is_symmetric(smoother, nu):
    A = diffusion((31, 31), lambda x, y: 1 + 10 * x * y)
    ml = MultigridSolver(A, smoother=smoother, nu=nu, device="cpu")
    M = ml.aspreconditioner()
    g = np.random.default_rng(0)
    for _ in range(3):
        x, y = g.standard_normal(31 * 31), g.standard_normal(31 * 31)
        xMy, yMx = x @ M.matvec(y), y @ M.matvec(x)
        assert abs(xMy - yMx) <= 1e-13 * np.linalg.norm(x) * np.linalg.norm(M.matvec(y)), (
            xMy,
            yMx,
        )
    # the non-reversed V-cycle is not symmetric, so the check above can tell them apart
    if smoother == "rbgs":
        with torch.no_grad():
            xt = torch.from_numpy(x).view(1, 1, 31, 31)
            yt = torch.from_numpy(y).view(1, 1, 31, 31)
            xMy = float((xt * ml.cycle(yt, None)).sum())
            yMx = float((yt * ml.cycle(xt, None)).sum())
        assert abs(xMy - yMx) > 1e-6 * abs(xMy)
