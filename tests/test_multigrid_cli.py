"""`mgnet solve`: JSON figures, the plot, and one-line errors."""

import json

import pytest

from mgnet.cli import main


def test_solve_json_reports_the_figures(capsys):
    assert main(["solve", "--problem", "poisson", "--dim", "2", "--n", "63", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "unknowns",
        "levels",
        "iterations",
        "residuals",
        "convergence_factor",
        "setup_s",
        "solve_s",
        "error_vs_exact",
    ):
        assert key in out
    assert out["unknowns"] == 63 * 63 and out["levels"] == 6 and out["converged"]
    assert out["residuals"][-1] <= 1e-8 * out["residuals"][0]
    assert len(out["residuals"]) == out["iterations"] + 1
    assert out["convergence_factor"] < 0.15
    assert 1e-4 < out["error_vs_exact"] < 5e-4  # O(h^2) with h = 1/64


@pytest.mark.parametrize(
    "argv",
    [
        [
            "--problem",
            "nonlinear",
            "--dim",
            "1",
            "--n",
            "127",
            "--smoother",
            "jacobi",
            "--nu",
            "2,2",
        ],
        ["--problem", "diffusion", "--dim", "3", "--n", "15", "--cycle", "W"],
        ["--problem", "anisotropic", "--dim", "2", "--n", "31", "--cycle", "pcg"],
        ["--problem", "poisson", "--dim", "2", "--n", "31", "--dtype", "mixed", "--cycle", "F"],
    ],
)
def test_solve_variants_converge(argv, capsys):
    assert main(["solve", *argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] and out["relative_residual"] <= 1e-8


def test_solve_fmg_reaches_discretization_error(capsys):
    main(["solve", "--n", "127", "--json"])
    full = json.loads(capsys.readouterr().out)["error_vs_exact"]
    main(["solve", "--n", "127", "--cycle", "fmg", "--json"])
    fmg = json.loads(capsys.readouterr().out)
    assert fmg["iterations"] == 1 and fmg["error_vs_exact"] <= 1.5 * full


def test_solve_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "conv.png"
    assert main(["solve", "--n", "31", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "saved" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--nu", "two"], "--nu"),
        (["--n", "1000"], "1023"),
        (["--tol", "-1"], "--tol"),
        (["--plot", "out.jpg"], "--plot"),
    ],
)
def test_solve_user_errors_are_one_line(argv, needle, capsys):
    assert main(["solve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err
