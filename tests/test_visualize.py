"""mgnet.visualize and `mgnet inspect`: recorded numbers are right, PNGs are written."""

import json

import numpy as np
import pytest
import torch

from mgnet.cli import main
from mgnet.models import create_model
from mgnet.multigrid import MultigridSolver
from mgnet.stencils import laplacian
from mgnet.visualize import inspect_classifier, inspect_solver, load_image, model_from_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def test_classifier_records_every_level_and_step(tmp_path):
    torch.manual_seed(0)
    model = create_model("mgnet_digits").eval()
    x = torch.randn(1, 8, 8)
    report = inspect_classifier(model, x, out=tmp_path / "c.png", channels=3)
    assert is_png(report.path)
    # 3 levels x (start + 2 steps)
    assert [(e["level"], e["phase"], e["step"]) for e in report.events] == [
        (l, p, i) for l in (1, 2, 3) for p, i in (("start", 0), ("pre", 1), ("pre", 2))
    ]
    assert [e["f_shape"][1:] for e in report.events[::3]] == [(32, 8, 8), (64, 4, 4), (128, 2, 2)]
    # the recorded residual is ||f - A u|| of that level's A, recomputed here by hand
    with torch.no_grad():
        f = model.cycle.f_in(x[None])
        u1 = model.cycle.levels[0].pre[0](None, f)
        r = f - model.cycle.levels[0].A(u1)
        logits = model(x[None])
    assert report.events[0]["residual"] == pytest.approx(float(f.norm()), rel=1e-5)
    assert report.events[1]["residual"] == pytest.approx(float(r.norm()), rel=1e-5)
    assert report.prediction == int(logits.argmax())
    assert sum(report.probabilities) == pytest.approx(1.0)
    assert not model.training


def test_solver_v_cycle_errors_drop_at_each_coarse_correction(tmp_path):
    solver = MultigridSolver(laplacian((31, 31)), smoother="jacobi", nu=(2, 2), device="cpu")
    g = torch.Generator().manual_seed(0)
    f = torch.randn(31, 31, generator=g, dtype=torch.float64)
    x0 = torch.rand(31, 31, generator=g, dtype=torch.float64)
    report = inspect_solver(solver, f, x0=x0, out=tmp_path / "s.png")
    assert is_png(report.path)
    assert [c["level"] for c in report.corrections] == [1, 2, 3, 4]
    for c in report.corrections:
        # smoothing alone barely reduces the error (it only makes it smooth) ...
        assert c["before"] > 0.5 * c["start"]
        # ... the coarse correction removes most of it (less on the 3x3 grid above 1x1)
        assert c["after"] < (0.35 if c["level"] < 4 else 0.6) * c["before"]
    # the finest level's numbers are the solver's: error against the exact solution and
    # the residual after the cycle equal one solver iteration from x0
    import scipy.sparse.linalg as spla

    exact = spla.spsolve(solver.levels[0].A.to_sparse().tocsc(), f.numpy().ravel())
    assert report.corrections[0]["start"] == pytest.approx(
        np.linalg.norm(exact - x0.numpy().ravel())
    )
    history: list[float] = []
    solver.solve(f, x0=x0, maxiter=1, tol=1e-30, residuals=history)
    assert report.events[-1]["level"] == 1 and report.events[-1]["phase"] == "post"
    assert report.events[-1]["residual"] == pytest.approx(history[1], rel=1e-10)
    # residual falls on the way down and the coarsest solve is exact
    coarsest = [e for e in report.events if e["level"] == 5]
    assert coarsest[-1]["residual"] < 1e-10


def test_load_image_and_checkpoint_round_trip(tmp_path):
    arr = np.arange(64, dtype=np.float32).reshape(8, 8)
    np.save(tmp_path / "x.npy", arr)
    x = load_image(tmp_path / "x.npy", in_channels=1, size=8)
    assert x.shape == (1, 1, 8, 8)
    assert float(x.mean()) == pytest.approx(0, abs=1e-6) and float(x.std()) == pytest.approx(1)
    torch.manual_seed(0)
    model = create_model("mgnet_digits", num_classes=7)
    torch.save(
        {"model": model.state_dict(), "config": {"model": "mgnet_digits"}}, tmp_path / "ck.pt"
    )
    loaded, config = model_from_checkpoint(tmp_path / "ck.pt")
    assert config["model"] == "mgnet_digits" and loaded.fc.out_features == 7
    model.eval()
    torch.testing.assert_close(loaded(x), model(x))
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare state dict; pass the model"):
        model_from_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="do not fit model 'mgnet_cifar'"):
        model_from_checkpoint(tmp_path / "bare.pt", model="mgnet_cifar")


def test_cli_classifier_and_solver(tmp_path, capsys):
    out = tmp_path / "c.png"
    assert (
        main(["inspect", "--model", "mgnet_digits", "--index", "2", "--out", str(out), "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert is_png(out) and len(summary["events"]) == 9 and 0 <= summary["label"] <= 9
    out = tmp_path / "s.png"
    assert main(["inspect", "--solver", "--n", "15", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert is_png(out) and summary["levels"] == 4 and len(summary["corrections"]) == 3


@pytest.mark.parametrize(
    "argv,message",
    [
        (["inspect", "--out", "x.png"], "pass --model and/or --checkpoint"),
        (["inspect", "--model", "mgnet_digits", "--out", "x.jpg"], "--out: expected a .png"),
        (["inspect", "--model", "mgnet_digits", "--index", "999"], "--index: must lie in 0..359"),
        (["inspect", "--checkpoint", "missing.pt"], "checkpoint: no such file"),
        (["inspect", "--solver", "--nu", "2,x"], "--nu: expected 'pre,post'"),
        (["inspect", "--solver", "--model", "mgnet_digits"], "leave out --model"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_bad_inputs():
    model = create_model("mgnet_digits")
    with pytest.raises(ValueError, match="image: expected"):
        inspect_classifier(model, torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="model: expected an MgNet"):
        inspect_classifier(torch.nn.Linear(2, 2), torch.randn(1, 8, 8))
    solver = MultigridSolver(laplacian((15, 15)), smoother="jacobi", device="cpu")
    with pytest.raises(ValueError, match="f: expected shape"):
        inspect_solver(solver, torch.randn(16, 16))
    with pytest.raises(ValueError, match="cycle: 'X'"):
        inspect_solver(solver, torch.randn(15, 15), cycle="X")
