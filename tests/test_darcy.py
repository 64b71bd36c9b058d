"""Darcy data: the random field's law, every sample against a direct solve, the .mat files
(this library's and Li et al.'s layouts, v5 and v7.3), determinism, subsampling, and the
one-line errors of `mgnet data darcy` and the reader."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from scipy.special import k1

from mgnet.cli import main
from mgnet.data import darcy
from mgnet.data.darcy import (
    DarcyDataset,
    DarcyParams,
    generate_darcy,
    grf_from_coefficients,
    grf_sqrt_eigenvalues,
    load_darcy,
    read_darcy_mat,
    sample_coefficient,
    solve_darcy,
    write_darcy,
    write_darcy_mat,
)

TAU, ALPHA = 3.0, 2.0


# ------------------------------------------------------------------ the random field
def _cosines(s: int, x: np.ndarray) -> np.ndarray:
    """phi_k(x) in 1D at the points x, k = 0..s-1: (len(x), s), L2-normalised on [0, 1]."""
    k = np.arange(s)
    return np.where(k == 0, 1.0, np.sqrt(2.0)) * np.cos(np.pi * np.outer(x, k))


def test_field_is_the_kl_sum_at_the_nodes():
    """The fast transform equals sum_k c_k xi_k phi_k(x_i) phi_k(y_j) summed term by term."""
    s = 17
    xi = np.random.default_rng(3).standard_normal((s, s))
    C = _cosines(s, np.linspace(0.0, 1.0, s))
    explicit = C @ (grf_sqrt_eigenvalues(s, ALPHA, TAU) * xi) @ C.T
    np.testing.assert_allclose(grf_from_coefficients(xi, ALPHA, TAU), explicit, atol=1e-13)
    c = grf_sqrt_eigenvalues(s, ALPHA, TAU)
    assert c[0, 0] == 0 and c[1, 0] == pytest.approx(TAU * (np.pi**2 + TAU**2) ** -1)


def _neumann_kernel(x, y, images: int = 6) -> float:
    """tau^(2 alpha - 2) (-Laplacian + tau^2)^(-alpha) for alpha = 2 on the unit square with
    zero Neumann conditions, by reflecting the free-space kernel r K_1(tau r) / (4 pi tau),
    minus the constant mode (its eigenvalue is tau^-2): an expression that shares nothing
    with the cosine expansion of the generator."""
    total = 0.0
    for m1 in range(-images, images + 1):
        for s1 in (1, -1):
            for m2 in range(-images, images + 1):
                for s2 in (1, -1):
                    r = np.hypot(x[0] - (s1 * y[0] + 2 * m1), x[1] - (s2 * y[1] + 2 * m2))
                    g = 1 / (4 * np.pi * TAU**2) if r == 0 else r * k1(TAU * r) / (4 * np.pi * TAU)
                    total += g
    return TAU ** (2 * ALPHA - 2) * total - TAU**-2


def test_field_covariance_is_the_prescribed_operator():
    """The exact covariance of the generated node values (the transform applied to every
    unit coefficient) equals the kernel of tau^2 (-Delta + 9)^-2 (Neumann, mean mode
    removed) up to the truncation of the expansion at s modes."""
    s = 33
    basis = np.eye(s * s).reshape(s * s, s, s)
    T = np.stack([grf_from_coefficients(e, ALPHA, TAU).ravel() for e in basis], axis=1)
    cov = T @ T.T
    h = 1.0 / (s - 1)
    pairs = [((16, 16), (16, 16)), ((8, 24), (8, 24)), ((0, 0), (0, 0)), ((8, 16), (16, 16))]
    pairs += [((4, 8), (24, 16)), ((0, 16), (32, 16)), ((3, 29), (30, 2))]
    for p, q in pairs:
        want = _neumann_kernel(np.array(p) * h, np.array(q) * h)
        got = cov[p[0] * s + p[1], q[0] * s + q[1]]
        assert got == pytest.approx(want, abs=5e-4), (p, q)  # truncation: ~2e-4 at s = 33
    assert cov[0, 0] > 0.2 and cov.trace() / (s * s) > 0.05  # the kernel is not trivial


def test_field_samples_have_the_prescribed_covariance():
    """4,000 seeded samples at 17^2: the empirical covariance S of psi matches the exact C
    within three standard errors, both as a matrix and in scale (the least-squares factor
    <S, C> / <C, C>, whose three standard errors are below 0.1: the check sees a 10 %
    error of scale); the mean is zero within its standard error."""
    s, n = 17, 4000
    params = DarcyParams(resolution=33)  # only its law is used; the field is drawn at s
    basis = np.eye(s * s).reshape(s * s, s, s)
    T = np.stack([grf_from_coefficients(e, ALPHA, TAU).ravel() for e in basis], axis=1)
    C = T @ T.T
    psi = np.stack(
        [
            grf_from_coefficients(darcy._generator(7, "train", i).standard_normal((s, s)))
            for i in range(n)
        ]
    ).reshape(n, -1)
    S = psi.T @ psi / n
    # Gaussian samples with known mean 0: E ||S - C||_F^2 = (||C||_F^2 + tr(C)^2) / n and
    # Var <S, C> = 2 tr(C^4) / n
    sigma = np.sqrt((np.sum(C**2) + np.trace(C) ** 2) / n)
    assert np.linalg.norm(S - C) < 3 * sigma
    cc = np.sum(C**2)
    sigma_scale = np.sqrt(2 * np.trace(np.linalg.matrix_power(C, 4)) / n) / cc
    assert abs(np.sum(S * C) / cc - 1) < 3 * sigma_scale < 0.1
    assert abs(psi.mean(0)).max() < 4 * np.sqrt(C.diagonal().max() / n)
    # the coefficient is the threshold of the field at the nodes
    a, field = sample_coefficient(params, "test", 5)
    assert set(np.unique(a)) == {3.0, 12.0}
    np.testing.assert_array_equal(a, np.where(field >= 0, 12.0, 3.0))


# ------------------------------------------------------------------ against spsolve
def _direct(a: np.ndarray) -> np.ndarray:
    """u of -div(a grad u) = 1, u = 0 on the boundary, assembled here from its definition
    (five points, harmonic mean of the two nodes' a on each face, h = 1/(s - 1)) and solved
    by a sparse direct solver."""
    s = a.shape[0]
    n = s - 2
    h2 = (1.0 / (s - 1)) ** 2
    idx = -np.ones((s, s), dtype=np.int64)
    idx[1:-1, 1:-1] = np.arange(n * n).reshape(n, n)
    rows, cols, vals = [], [], []
    diag = np.zeros((n, n))
    centre = a[1:-1, 1:-1]
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = a[1 + di : s - 1 + di, 1 + dj : s - 1 + dj]
        w = 2 * centre * nb / (centre + nb) / h2
        diag += w
        j = idx[1 + di : s - 1 + di, 1 + dj : s - 1 + dj]
        inside = j >= 0
        rows.append(idx[1:-1, 1:-1][inside])
        cols.append(j[inside])
        vals.append(-w[inside])
    rows.append(np.arange(n * n))
    cols.append(np.arange(n * n))
    vals.append(diag.ravel())
    M = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))))
    u = np.zeros((s, s))
    u[1:-1, 1:-1] = spla.spsolve(M.tocsc(), np.ones(n * n)).reshape(n, n)
    return u


def _rel(x, y) -> float:
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / np.linalg.norm(y))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """A 65^2 set with 3 train and 3 test samples, test also at 33^2."""
    out = tmp_path_factory.mktemp("darcy65")
    report = write_darcy(out, DarcyParams(resolution=65, seed=4), 3, 3, test_resolutions=[33])
    return out, report


def test_every_sample_matches_a_direct_solve(small_set):
    """Each written sample (float32) equals spsolve of the same discretization to float32
    rounding; the solver's float64 solution equals it to 1e-8; each residual <= 1e-10."""
    out, report = small_set
    assert 0 < report.max_residual <= 1e-10
    for name in ("train.mat", "test.mat"):
        coeff, sol = read_darcy_mat(out / name)
        for a, u in zip(coeff.double().numpy(), sol.numpy()):
            ref = _direct(a)
            assert _rel(u, ref) < 1e-6  # float32 storage
            u64, res, _ = solve_darcy(a)
            assert res <= 1e-10 and _rel(u64.numpy(), ref) < 1e-8
            assert np.all(u[[0, -1], :] == 0) and np.all(u[:, [0, -1]] == 0)


def test_high_contrast_falls_back_to_galerkin_and_converges():
    """Rediscretized coarse operators stall at contrast 1e4; the solve is redone with
    Galerkin coarse operators and still matches the direct solve."""
    a, _ = sample_coefficient(DarcyParams(resolution=33, high=1e4, low=1.0), "train", 0)
    u, res, its = solve_darcy(a)
    assert res <= 1e-10 and its > darcy.FAST_MAXITER
    assert _rel(u.numpy(), _direct(a)) < 1e-8


def test_a_sample_that_did_not_converge_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(
        darcy, "solve_darcy", lambda a, tol, device: (torch.zeros(a.shape), 3e-6, 200)
    )
    with pytest.raises(RuntimeError, match="train sample 0 .* did not converge"):
        write_darcy(tmp_path, DarcyParams(resolution=33), 2, 1)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- the files
def test_mat_round_trip_in_li_et_als_layout(small_set):
    """loadmat (FNO's reader) sees exactly the keys coeff and sol, (N, s, s) float32, and
    the neuraloperator-style .pt files hold the same arrays."""
    out, report = small_set
    m = scipy.io.loadmat(out / "train.mat")
    assert sorted(k for k in m if not k.startswith("__")) == ["coeff", "sol"]
    assert m["coeff"].shape == m["sol"].shape == (3, 65, 65)
    assert m["coeff"].dtype == m["sol"].dtype == np.float32
    assert set(np.unique(m["coeff"])) == {3.0, 12.0}
    assert report.files == {"train.mat": (3, 65, 65), "test.mat": (3, 65, 65)} | {
        "test_33.mat": (3, 33, 33)
    }
    meta = json.loads((out / "darcy.json").read_text())
    assert meta["resolution"] == 65 and meta["seed"] == 4 and meta["train"] == 3
    # FNO's script: loadmat, then [:n, ::r, ::r]
    c, u = read_darcy_mat(out / "train.mat", stride=2, limit=2)
    assert c.shape == (2, 33, 33) and c.dtype == torch.float32
    np.testing.assert_array_equal(u.numpy(), m["sol"][:2, ::2, ::2])


def test_neuralop_pt_files(tmp_path):
    write_darcy(tmp_path, DarcyParams(resolution=33, seed=1), 2, 1, neuralop=True)
    pt = torch.load(tmp_path / "darcy_train_33.pt", weights_only=True)
    assert sorted(pt) == ["x", "y"] and pt["x"].shape == (2, 33, 33)
    assert pt["x"].dtype == pt["y"].dtype == torch.float32
    c, u = read_darcy_mat(tmp_path / "train.mat")
    assert torch.equal(pt["x"], c) and torch.equal(pt["y"], u)
    assert (tmp_path / "darcy_test_33.pt").is_file()


def _write_v73(path, arrays: dict) -> None:
    """A MATLAB v7.3 file as MATLAB writes one: HDF5 behind a 512-byte header, each
    column-major array stored with its dimensions reversed."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w", userblock_size=512) as fh:
        for key, x in arrays.items():
            fh.create_dataset(key, data=np.ascontiguousarray(np.transpose(x, (2, 1, 0))))
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116))
        fh.write(b"\0" * 8 + b"\x00\x02" + b"IM")


def test_published_layout_v5_and_v73(tmp_path):
    """Li et al.'s files: float64, s = 4 m + 1 (421 there), read with a stride (5 there)
    from a data folder by their file names, as v5 and as v7.3."""
    rng = np.random.default_rng(0)
    coeff = np.where(rng.standard_normal((3, 21, 21)) >= 0, 12.0, 3.0)
    sol = rng.random((3, 21, 21))
    scipy.io.savemat(tmp_path / "piececonst_r421_N1024_smooth1.mat", {"coeff": coeff, "sol": sol})
    train = load_darcy(tmp_path, "train", stride=5)
    assert len(train) == 3 and train.resolution == 5
    a, u = train[1]
    assert a.shape == u.shape == (1, 5, 5) and a.dtype == torch.float32
    np.testing.assert_allclose(u[0].numpy(), sol[1, ::5, ::5].astype(np.float32))
    v73 = tmp_path / "piececonst_r421_N1024_smooth2.mat"
    _write_v73(v73, {"coeff": coeff, "sol": sol})
    c, s = read_darcy_mat(v73, resolution=11, limit=2)
    np.testing.assert_array_equal(c.numpy(), coeff[:2, ::2, ::2].astype(np.float32))
    np.testing.assert_array_equal(s.numpy(), sol[:2, ::2, ::2].astype(np.float32))
    assert len(load_darcy(tmp_path, "test")) == 3


# ----------------------------------------------------------- determinism, subsampling
def test_same_seed_same_bytes_and_independent_streams(tmp_path):
    write_darcy(tmp_path / "a", DarcyParams(resolution=33, seed=2), 3, 2)
    write_darcy(tmp_path / "b", DarcyParams(resolution=33, seed=2), 3, 2)
    for name in ("train.mat", "test.mat", "darcy.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # sample i does not depend on how many samples are drawn, nor on the other split
    write_darcy(tmp_path / "c", DarcyParams(resolution=33, seed=2), 1, 3)
    a_train, a_test = (read_darcy_mat(tmp_path / "a" / f) for f in ("train.mat", "test.mat"))
    c_train, c_test = (read_darcy_mat(tmp_path / "c" / f) for f in ("train.mat", "test.mat"))
    assert torch.equal(c_train[0], a_train[0][:1]) and torch.equal(c_test[1][:2], a_test[1])
    assert not torch.equal(a_train[0][:2], a_test[0][:2])  # train and test differ
    other, _, _ = generate_darcy(DarcyParams(resolution=33, seed=3), "train", 1)
    assert not np.array_equal(other[0], a_train[0][0].numpy())


def test_subsampled_sets_are_the_fine_solution_at_the_shared_nodes(small_set, tmp_path):
    out, _ = small_set
    fine, coarse = read_darcy_mat(out / "test.mat"), read_darcy_mat(out / "test_33.mat")
    for f, c in zip(fine, coarse):
        assert c.shape == (3, 33, 33) and torch.equal(c, f[:, ::2, ::2])
    # a train set subsampled from a finer solve: the same nodes of the same solves
    write_darcy(tmp_path, DarcyParams(resolution=65, seed=4), 3, 0, train_resolution=33)
    sub = read_darcy_mat(tmp_path / "train.mat")
    full = read_darcy_mat(out / "train.mat")
    assert torch.equal(sub[1], full[1][:, ::2, ::2]) and not (tmp_path / "test.mat").exists()


def test_dataset_items(small_set):
    ds = DarcyDataset.from_mat(small_set[0] / "test_33.mat")
    a, u = ds[2]
    assert len(ds) == 3 and a.shape == u.shape == (1, 33, 33) and u.dtype == torch.float32
    assert load_darcy(small_set[0], "test_33").resolution == 33


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 100}, r"resolution: 100 is not one of 33, 65, 129, 257, 513"),
        ({"resolution": 64}, r"2\^k \+ 1"),
        ({"high": 0.0}, "positive"),
        ({"alpha": 1.0}, "alpha: must be > 1"),
        ({"tol": 1e-6}, r"tol: .*\(0, 1e-10\]"),
        ({"seed": -1}, "seed: expected an integer >= 0"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DarcyParams(**kwargs)


def test_bad_outputs(tmp_path):
    p = DarcyParams(resolution=33)
    with pytest.raises(ValueError, match="test_resolutions: 65 is finer"):
        write_darcy(tmp_path, p, 1, 1, test_resolutions=[65])
    with pytest.raises(ValueError, match="test_resolutions: 17 is not one of"):
        write_darcy(tmp_path, p, 1, 1, test_resolutions=[17])
    with pytest.raises(ValueError, match="nothing to generate"):
        write_darcy(tmp_path, p, 0, 0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        write_darcy(tmp_path / "file", p, 1, 0)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "test.mat").write_bytes(b"keep")
    with pytest.raises(ValueError, match="test.mat' exists; pass --force"):
        write_darcy(tmp_path / "old", p, 1, 1)
    assert (tmp_path / "old" / "test.mat").read_bytes() == b"keep"
    assert not (tmp_path / "old" / "train.mat").exists()  # refused before any work
    write_darcy(tmp_path / "old", p, 1, 1, force=True)
    assert read_darcy_mat(tmp_path / "old" / "test.mat")[0].shape == (1, 33, 33)
    with pytest.raises(ValueError, match="at most 2 GiB|2 GiB"):
        darcy._check_mat5_size((5000, 513, 513), "train")


def test_bad_files(tmp_path):
    good = np.ones((2, 9, 9))
    cases = {
        "nokey.mat": {"coeff": good, "u": good},
        "shapes.mat": {"coeff": good, "sol": np.ones((2, 9, 8))},
        "mismatch.mat": {"coeff": good, "sol": np.ones((3, 9, 9))},
        "nan.mat": {"coeff": good, "sol": np.where(np.eye(9) > 0, np.nan, 1.0)[None].repeat(2, 0)},
    }
    for name, arrays in cases.items():
        scipy.io.savemat(tmp_path / name, arrays)
    with pytest.raises(ValueError, match="needs the keys 'coeff' and 'sol'; it has 'coeff', 'u'"):
        read_darcy_mat(tmp_path / "nokey.mat")
    with pytest.raises(ValueError, match=r"'sol' must be an \(N, s, s\) array"):
        read_darcy_mat(tmp_path / "shapes.mat")
    with pytest.raises(ValueError, match="must have one shape"):
        read_darcy_mat(tmp_path / "mismatch.mat")
    with pytest.raises(ValueError, match="'sol' holds NaN or infinite values"):
        read_darcy_mat(tmp_path / "nan.mat")
    write_darcy_mat(tmp_path / "ok.mat", good, good)
    with pytest.raises(ValueError, match="stride: .* must divide s - 1 = 8 .*: 1, 2, 4, 8; got 3"):
        read_darcy_mat(tmp_path / "ok.mat", stride=3)
    with pytest.raises(ValueError, match="resolution: .* subsample .* to 9, 5, 3, 2; got 4"):
        read_darcy_mat(tmp_path / "ok.mat", resolution=4)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 20)
    with pytest.raises(ValueError, match="junk.mat"):
        read_darcy_mat(tmp_path / "junk.mat")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_darcy_mat(tmp_path / "missing.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'train.mat' or 'piececonst"):
        load_darcy(tmp_path / "empty")


# ------------------------------------------------------------------------------ CLI
def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "d"
    argv = ["data", "darcy", "--resolution", "33", "--train", "2", "--test", "1", "-o", str(out)]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == {"train.mat": [2, 33, 33], "test.mat": [1, 33, 33]}
    assert summary["samples"] == 3 and summary["samples_per_second"] > 0
    assert summary["max_relative_residual"] <= 1e-10
    assert main([*argv, "--force"]) == 0
    assert "samples/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--resolution", "100"], "resolution: 100 is not one of 33, 65, 129, 257, 513"),
        (["--test-resolutions", "33,x"], "--test-resolutions: expected comma-separated"),
        (["--threads", "0"], "--threads: must be >= 1"),
        (["--train", "-1"], "train: expected a number of samples >= 0"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, extra, match):
    argv = ["data", "darcy", "--resolution", "33", "--train", "1", "--test", "0"]
    assert main([*argv, "-o", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("mgnet data: error: ")
    assert re.search(match, err), err


def test_docs_darcy_python_blocks_run(tmp_path, monkeypatch):
    """docs/darcy.md's python blocks run as written (in a scratch folder)."""
    doc = Path(__file__).resolve().parents[1] / "docs" / "darcy.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)


def test_write_without_hard_links(tmp_path, monkeypatch):
    """On a file system without hard links the no-overwrite write still refuses an existing
    file and otherwise renames the temporary file into place, leaving no temporary."""

    def no_link(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(darcy.os, "link", no_link)
    x = np.ones((1, 3, 3))
    write_darcy_mat(tmp_path / "a.mat", x, x)
    assert read_darcy_mat(tmp_path / "a.mat")[0].shape == (1, 3, 3)
    with pytest.raises(ValueError, match="a.mat' exists; pass --force"):
        write_darcy_mat(tmp_path / "a.mat", x, 2 * x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mat"]
