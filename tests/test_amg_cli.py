"""`mgnet solve` with a matrix: the input errors are one line and exit status 2."""

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from mgnet import cli
from mgnet.multigrid.matrices import MATRIX_PROBLEMS, read_matrix, read_vector


def run(capsys, *argv):
    code = cli.main(["solve", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


def test_cli_problem_list_is_the_packages():
    parser = cli.build_parser()
    solve = next(a for a in parser._actions if a.dest == "command").choices["solve"]
    problems = next(a for a in solve._actions if a.dest == "problem").choices
    assert set(MATRIX_PROBLEMS) <= set(problems)


def test_unreadable_matrix_file(tmp_path, capsys):
    bad = tmp_path / "bad.mtx"
    bad.write_text("%%MatrixMarket matrix coordinate real general\nthis is not a matrix\n")
    code, err = run(capsys, "--matrix", str(bad))
    assert code == 2 and err.startswith("mgnet solve: error: --matrix: cannot read 'bad.mtx'")
    assert len(err.splitlines()) == 1
    code, err = run(capsys, "--matrix", str(tmp_path / "missing.mtx"))
    assert code == 2 and "--matrix: no such file" in err
    other = tmp_path / "A.csv"
    other.write_text("1,2\n")
    code, err = run(capsys, "--matrix", str(other))
    assert code == 2 and "neither a Matrix Market (.mtx) nor a SciPy (.npz)" in err


def test_non_square_and_non_finite_matrices(tmp_path, capsys):
    path = tmp_path / "rect.mtx"
    scipy.io.mmwrite(str(path), sp.random(4, 5, 0.5, random_state=0))
    code, err = run(capsys, "--matrix", str(path))
    assert (code, err) == (2, "mgnet solve: error: A: expected a square matrix, got shape (4, 5)")
    A = sp.eye(5, format="csr")
    A.data[2] = np.nan
    path = tmp_path / "nan.npz"
    sp.save_npz(str(path), A)
    code, err = run(capsys, "--matrix", str(path))
    assert code == 2 and err.endswith("A: holds NaN or inf (first in row 2)")


def test_bad_rhs_and_method(tmp_path, capsys):
    path = tmp_path / "A.npz"
    sp.save_npz(str(path), sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(6, 6)).tocsr())
    rhs = tmp_path / "b.txt"
    rhs.write_text("1\n2\n3\n")
    code, err = run(capsys, "--matrix", str(path), "--rhs", str(rhs))
    assert code == 2 and "--rhs: expected 6 numbers" in err
    code, err = run(capsys, "--matrix", str(path), "--method", "gmg")
    assert code == 2 and err.endswith(
        "--method: gmg needs a structured grid problem "
        "(--problem poisson, diffusion, ...); use sa or rs for a matrix"
    )
    code, err = run(capsys, "--matrix", str(path), "--cycle", "fmg")
    assert code == 2 and "--cycle: fmg is for grid problems" in err


def test_singular_neumann_matrix_is_refused(tmp_path, capsys):
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(8, 8)).tolil()
    T[0, 0] = T[7, 7] = 1.0
    path = tmp_path / "neumann.mtx"
    scipy.io.mmwrite(str(path), T.tocsr())
    code, err = run(capsys, "--matrix", str(path))
    assert code == 2 and "A: the matrix is singular (A @ ones = 0" in err


def test_readers_round_trip(tmp_path):
    A = sp.random(7, 7, 0.4, random_state=1, format="csr") + sp.eye(7)
    scipy.io.mmwrite(str(tmp_path / "A.mtx"), A)
    sp.save_npz(str(tmp_path / "A.npz"), A.tocsr())
    for name in ("A.mtx", "A.npz"):
        assert abs(read_matrix(tmp_path / name) - A).max() < 1e-15
    np.save(tmp_path / "b.npy", np.arange(7.0))
    assert (read_vector(tmp_path / "b.npy", 7) == np.arange(7.0)).all()
    with pytest.raises(ValueError, match="^--rhs: holds NaN or inf"):
        np.save(tmp_path / "nan.npy", np.full(7, np.nan))
        read_vector(tmp_path / "nan.npy", 7)


def test_benchmark_quick_mode_runs(capsys):
    pytest.importorskip("pyamg")
    pytest.importorskip("skfem")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "amg_vs_pyamg.py"
    spec = importlib.util.spec_from_file_location("amg_vs_pyamg", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "worst" in out and ": ok" in out.split("SA-PCG")[0]  # every path matches spsolve
    assert out.count("darcy contrast") == 2
