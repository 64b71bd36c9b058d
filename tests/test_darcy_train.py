"""Operator learning with the one trainer: `mgnet train --data darcy` for every operator,
the regression task's loss and metrics against a hand computation, the pointwise
normalisers, exact resume, eval/export of an operator run, Li et al.'s file layout with a
stride, and the one-line refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.io
import torch

from mgnet.cli import build_parser, main
from mgnet.cli.train import train_config
from mgnet.data import get_dataset
from mgnet.data.darcy import DarcyParams, darcy_splits, write_darcy
from mgnet.models import count_parameters_of
from mgnet.train import TrainConfig, load_checkpoint, load_recipe, resume_config, train
from mgnet.train.normalizer import INPUT_STD_FLOOR, NormalizedOperator, PointwiseNormalizer
from mgnet.train.task import OperatorTask, evaluate_operator, relative_h1, relative_l2

OPERATORS = ("mgno", "fno", "fno_small", "unet")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 + 4 solves at 65^2; train.mat at 33^2 (the same solves subsampled), test.mat at
    65^2 and test_33.mat at 33^2."""
    root = tmp_path_factory.mktemp("darcy")
    write_darcy(root, DarcyParams(resolution=65, seed=1), 12, 4, train_resolution=33,
                test_resolutions=[33])  # fmt: skip
    return root


def config(data, out, **kw) -> TrainConfig:
    values = {
        **load_recipe("darcy_operator"),
        "data_dir": str(data),
        "data_args": {"test_resolution": 33},
        "epochs": 1,
        "batch_size": 4,
        "threads": 1,
        "progress": False,
        "output_dir": str(out),
    }
    return TrainConfig(**{**values, **kw})


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------- one epoch of each model
@pytest.mark.parametrize("name", OPERATORS)
def test_one_epoch_of_every_operator(name, data, tmp_path):
    """The registry's model, as registered, on 4 + 1 + 2 samples."""
    args = {"test_resolution": 33, "n_train": 5, "n_test": 2}
    results = train(config(data, tmp_path / "run", model=name, data_args=args))
    (row,) = rows(tmp_path / "run")
    metrics = ("rel_l2", "rel_h1")
    for split in ("train", "val", "test"):
        for m in metrics:
            assert 0 < row[f"{split}_{m}"] < 10, (split, m)
    assert row["train_loss"] == pytest.approx(row["train_rel_l2"])  # the loss is rel L2
    assert results["parameters"] == count_parameters_of(name)
    assert results["test_count"] == 2 and results["best_epoch"] == 1
    # the model chosen on val is the one epoch's, so its test figures are the epoch's
    assert results["test_rel_l2"] == pytest.approx(row["test_rel_l2"])
    assert results["test_rel_h1"] == pytest.approx(row["test_rel_h1"])
    stats = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    assert stats["x_norm.mean"].shape == stats["y_norm.std"].shape == (1, 33, 33)


# --------------------------------------------------------------- the task, by hand
def _h1_by_hand(v: np.ndarray) -> float:
    """||v||_H1^2 / h^2 on an n x n grid of the unit square, written out term by term."""
    n = v.shape[0]
    h = 1.0 / (n - 1)
    total = sum(v[i, j] ** 2 for i in range(n) for j in range(n))
    for i in range(n):
        for j in range(n - 1):
            total += ((v[i, j + 1] - v[i, j]) / h) ** 2 + ((v[j + 1, i] - v[j, i]) / h) ** 2
    return total


def test_relative_errors_and_the_loss_against_a_hand_computation():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 5)
    bump = np.sin(np.pi * x)[:, None] * np.sin(np.pi * x)[None, :]
    target = (1 + rng.random((3, 1, 1, 1))) * bump  # smooth targets, rough errors
    pred = target + 0.1 * rng.standard_normal((3, 1, 5, 5))
    l2 = [np.sqrt(((pred[k] - target[k]) ** 2).sum() / (target[k] ** 2).sum()) for k in range(3)]
    h1 = [np.sqrt(_h1_by_hand((pred - target)[k, 0]) / _h1_by_hand(target[k, 0])) for k in range(3)]
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    np.testing.assert_allclose(relative_l2(p, t).numpy(), l2, rtol=1e-12)
    np.testing.assert_allclose(relative_h1(p, t).numpy(), h1, rtol=1e-12)
    # the gradients of a rough error weigh more than those of a smooth target: H1 > L2
    assert all(b > a for a, b in zip(l2, h1))
    # the loss is the batch mean of the per-sample error, on float32 outputs
    batch = OperatorTask().prepare(p.float(), t.float(), 0, 0, 0)
    assert OperatorTask().loss(p.float(), batch).item() == pytest.approx(np.mean(l2), rel=1e-5)
    assert OperatorTask("rel_h1").loss(p.float(), batch).item() == pytest.approx(
        np.mean(h1), rel=1e-5
    )
    sums = OperatorTask().step_sums(p.float(), batch, OperatorTask().loss(p.float(), batch))
    np.testing.assert_allclose(sums.numpy(), [3 * np.mean(l2), sum(l2), sum(h1)], rtol=1e-5)


def test_evaluation_weighs_every_sample_the_same():
    """Batches of 3, 3 and 1 samples: the mean over the 7 samples, not over the batches."""
    y = torch.rand(7, 1, 9, 9) + 0.5
    scale = torch.tensor([1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 3.0]).view(7, 1, 1, 1)
    x = y * scale  # the "model" divides by the scale of sample 0: errors |s_k / 1.1 - 1|
    model = torch.nn.Identity()
    loader = [(x[i : i + 3] / 1.1, y[i : i + 3]) for i in range(0, 7, 3)]
    m = evaluate_operator(model, loader, torch.device("cpu"))
    expected = (scale.flatten() / 1.1 - 1).abs().mean().item()
    assert m["count"] == 7 and m["rel_l2"] == pytest.approx(expected, rel=1e-6)
    assert m["rel_h1"] == pytest.approx(expected, rel=1e-6)  # a scaled target: same ratio
    task = OperatorTask()
    assert task.improves(0.1, None) and task.improves(0.1, 0.1) and not task.improves(0.2, 0.1)


# ----------------------------------------------------------------- normalisation
def test_pointwise_normalisation_round_trip_and_statistics():
    torch.manual_seed(0)
    a = 3 + 9 * (torch.rand(50, 1, 9, 9) > 0.5).float()
    u = torch.rand(50, 1, 9, 9)
    model = NormalizedOperator(torch.nn.Identity())
    model.fit(a, u)
    enc = model.x_norm.encode(a)
    assert enc.mean(0).abs().max() < 1e-5  # mean 0 at every point
    assert (enc.std(0) - 1).abs().max() < 1e-4  # std 1 at every point (eps = 1e-5)
    assert torch.allclose(model.x_norm.decode(enc), a, atol=1e-5)
    assert torch.allclose(model.y_norm.decode(model.y_norm.encode(u)), u, atol=1e-6)
    # the stored statistics come back into a fresh model of the same operator
    fresh = NormalizedOperator(torch.nn.Identity())
    assert fresh.resolution is None
    fresh.load_state_dict(model.state_dict())
    assert fresh.resolution == 9
    x = torch.rand(2, 1, 9, 9)
    assert torch.equal(fresh(x), model(x))
    # the identity operator maps encoded a to decoded "u": decode_u(encode_a(x))
    expected = (x - model.x_norm.mean) / (model.x_norm.std + 1e-5)
    expected = expected * (model.y_norm.std + 1e-5) + model.y_norm.mean
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_statistics_are_interpolated_to_another_grid_and_the_input_std_is_floored():
    ramp = torch.linspace(0, 1, 5)
    samples = torch.stack([ramp[:, None] + 2 * ramp[None, :] + k for k in (-1.0, 0.0, 1.0)])
    norm = PointwiseNormalizer().fit(samples)  # mean: the linear field x + 2y
    fine = torch.zeros(1, 1, 9, 9)
    mean, _ = norm._stats(fine)
    grid = torch.linspace(0, 1, 9)
    assert torch.allclose(mean[0], grid[:, None] + 2 * grid[None, :], atol=1e-6)  # exact
    assert torch.allclose(mean[0, ::2, ::2], norm.mean[0])  # the shared nodes keep their value
    same = torch.ones(4, 1, 3, 3)
    same[:, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1)
    floored = PointwiseNormalizer(floor=INPUT_STD_FLOOR).fit(same)
    top = same[:, 0, 0, 0].std().item()
    assert floored.std[0, 0, 0].item() == pytest.approx(top)
    assert floored.std[0, 1, 1].item() == pytest.approx(INPUT_STD_FLOOR * top / 9)


# ------------------------------------------------------------------------- resume
def test_interrupted_run_resumes_bit_for_bit(data, tmp_path):
    small = {"model": "mgno", "model_args": {"width": 6, "layers": 2}, "epochs": 3}
    straight = tmp_path / "straight"
    train(config(data, straight, **small))

    def interrupt(epoch, step, loss):
        if (epoch, step) == (2, 1):
            raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config(data, run, **small), step_hook=interrupt)
    assert load_checkpoint(run / "checkpoint.pt")["partial"]["step"] == 1
    train(resume_config(run), resume=True)
    a, b = (load_checkpoint(r / "checkpoint.pt") for r in (straight, run))
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:  # weights and the normalisers' statistics
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    for ra, rb in zip(rows(straight), rows(run)):
        for key in ("train_rel_l2", "val_rel_l2", "test_rel_l2", "test_rel_h1", "lr"):
            assert ra[key] == rb[key], key
    # the model is chosen on val; the per-epoch test figures play no part
    val = [r["val_rel_l2"] for r in rows(run)]
    best = json.loads((run / "results.json").read_text())["best_epoch"]
    assert best == len(val) - val[::-1].index(min(val))


# ---------------------------------------------------------------- eval and export
@pytest.fixture(scope="module")
def mgno_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mgno") / "run"
    argv = ["train", "--data", "darcy", "--data-dir", str(data), "--data-kwargs",
            "test_resolution=33", "--model-kwargs", "width=6", "layers=2", "--epochs", "1",
            "-b", "4", "--threads", "1", "--no-progress", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out


def test_eval_of_an_operator_run(mgno_run, capsys):
    results = json.loads((mgno_run / "results.json").read_text())
    assert main(["eval", "--checkpoint", str(mgno_run / "best.pt")]) == 0
    out = capsys.readouterr().out
    assert "mgno on darcy test (4 samples, 33x33): relative L2" in out
    written = json.loads((mgno_run / "eval-darcy-test-33.json").read_text())
    # the run's own test split and model: the figures of results.json
    assert written["rel_l2"] == pytest.approx(results["test_rel_l2"], rel=1e-6)
    assert written["rel_h1"] == pytest.approx(results["test_rel_h1"], rel=1e-6)
    # mgnet train --resume RUN --test-only: the same figures
    from mgnet.train import test_checkpoint

    again = test_checkpoint(resume_config(mgno_run))
    assert again["test_rel_l2"] == pytest.approx(results["test_rel_l2"], rel=1e-6)
    assert again["test_count"] == 4 and again["parameters"] == results["parameters"]
    # resolution transfer: the same solves at 65^2, the statistics interpolated
    argv = ["eval", "--checkpoint", str(mgno_run / "best.pt"), "--data-kwargs",
            "test_resolution=65", "--json"]  # fmt: skip
    assert main(argv) == 0
    fine = json.loads(capsys.readouterr().out)
    assert (fine["resolution"], fine["trained_resolution"], fine["count"]) == (65, 33, 4)
    assert 0 < fine["rel_l2"] < 1


def test_export_of_an_operator_run(mgno_run, tmp_path, capsys):
    from mgnet.export import model_from_checkpoint, run_exported

    model, shape, _ = model_from_checkpoint(mgno_run / "best.pt")
    assert shape == (1, 1, 33, 33)
    x = 3 + 9 * (torch.rand(3, *shape[1:]) > 0.5).float()  # raw coefficients
    with torch.no_grad():
        expected = model(x)
    out = tmp_path / "m.pt"
    argv = ["export", "--checkpoint", str(mgno_run / "best.pt"), "--format", "torchscript"]
    assert main([*argv, "-o", str(out)]) == 0
    assert "max |output difference|" in capsys.readouterr().out
    assert torch.allclose(run_exported(out, x), expected, atol=1e-5)  # normalisers inside


@pytest.mark.slow  # torch's ONNX exporter takes about 20 s here
def test_onnx_export_of_an_operator_run(mgno_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from mgnet.export import model_from_checkpoint, run_exported

    model, shape, _ = model_from_checkpoint(mgno_run / "best.pt")
    x = 3 + 9 * (torch.rand(3, *shape[1:]) > 0.5).float()
    with torch.no_grad():
        expected = model(x)
    onnx = tmp_path / "m.onnx"
    argv = ["export", "--checkpoint", str(mgno_run / "best.pt"), "--format", "onnx"]
    assert main([*argv, "-o", str(onnx)]) == 0
    assert (run_exported(onnx, x) - expected).abs().max() < 1e-4


def test_inspect_refuses_an_operator_in_one_line(mgno_run, capsys):
    err = _one_line_error(["inspect", "--checkpoint", str(mgno_run / "best.pt")], capsys)
    assert err.endswith("--checkpoint: 'mgno' is a neural operator (a field to a field); "
                        "inspect shows a classifier's cycle on an image; evaluate an operator "
                        "with mgnet eval")  # fmt: skip
    assert "--model: 'fno' is a neural operator" in _one_line_error(
        ["inspect", "--model", "fno"], capsys
    )


def test_fno_is_refused_for_onnx_in_one_line_and_exports_to_torchscript(tmp_path, capsys):
    from mgnet.export import ExportError, export_model
    from mgnet.models import create_model

    fno = NormalizedOperator(create_model("fno", width=4, modes=3, layers=1)).eval()
    with pytest.raises(ExportError, match=r"^format: 'onnx' cannot hold FNO's spectral"):
        export_model(fno, tmp_path / "f.onnx", "onnx", input_shape=(1, 1, 17, 17))
    assert not (tmp_path / "f.onnx").exists()
    result = export_model(fno, tmp_path / "f.pt", "torchscript", input_shape=(1, 1, 17, 17))
    assert result.max_abs_diff == 0.0


# ------------------------------------------------------------- Li et al.'s files
def test_published_layout_with_a_stride(tmp_path):
    """Files named and shaped as Li et al.'s (float64, MATLAB v5, s = 4 * 10 + 1 here, 421
    there), read with a stride, the first n_train / n_test samples, val carved from train."""
    rng = np.random.default_rng(0)
    files = {}
    for name, n in (("smooth1", 7), ("smooth2", 4)):
        coeff = np.where(rng.standard_normal((n, 41, 41)) >= 0, 12.0, 3.0)
        sol = rng.random((n, 41, 41))
        files[name] = (coeff, sol)
        scipy.io.savemat(tmp_path / f"piececonst_r421_N1024_{name}.mat",
                         {"coeff": coeff, "sol": sol})  # fmt: skip
    train_set, val_set, test_set = darcy_splits(tmp_path, stride=2, n_train=6, n_test=3, val=2)
    coeff, sol = files["smooth1"]
    assert (len(train_set), len(val_set), len(test_set)) == (4, 2, 3)
    assert train_set.resolution == test_set.resolution == 21
    np.testing.assert_array_equal(train_set.coeff.numpy(), coeff[:4, ::2, ::2].astype(np.float32))
    np.testing.assert_array_equal(val_set.sol.numpy(), sol[4:6, ::2, ::2].astype(np.float32))
    test_sol = files["smooth2"][1][:3, ::2, ::2].astype(np.float32)
    np.testing.assert_array_equal(test_set.sol.numpy(), test_sol)
    # trained through the registry: mgno with 3 grids takes 21 = 5 * 4 + 1
    results = train(
        TrainConfig(**{**load_recipe("darcy_operator"), "data_dir": str(tmp_path),
                       "data_args": {"stride": 2, "n_train": 6, "n_test": 3, "val": 2},
                       "model_args": {"width": 4, "layers": 1, "levels": 3}, "epochs": 1,
                       "batch_size": 2, "progress": False, "output_dir": str(tmp_path / "run")})
    )  # fmt: skip
    assert results["test_count"] == 3 and math.isfinite(results["test_rel_l2"])


def test_splits_default_validation_and_test_resolution(data):
    splits = get_dataset("darcy", root=str(data))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (11, 1, 4)  # 12 // 10
    assert splits.train.resolution == 33 and splits.test.resolution == 65
    paper = get_dataset("darcy", root=str(data), holdout=False, options={"test_resolution": 33})
    assert (len(paper.train), len(paper.val), paper.test.resolution) == (12, 0, 33)
    # test_33.mat is the 65^2 solves subsampled: the same as asking test.mat for 33
    own = paper.test.sol
    sub = get_dataset("darcy", root=str(data), options={"resolution": 33}).test.sol
    assert torch.equal(own, sub)


# --------------------------------------------------------------- the command line
def test_darcy_commands_start_from_the_operator_recipe(tmp_path):
    def cfg(*argv):
        return train_config(build_parser().parse_args(["train", *argv]))

    plain = cfg("--data", "darcy", "--data-dir", "d")
    recipe = load_recipe("darcy_operator")
    for key in ("model", "optimizer", "lr", "weight_decay", "lr_scheduler", "loss"):
        assert getattr(plain, key) == recipe[key], key
    assert (plain.model, plain.optimizer, plain.label_smoothing) == ("mgno", "adamw", 0.0)
    assert cfg("--data", "darcy", "--opt", "adam", "--model", "fno").optimizer == "adam"
    (tmp_path / "r.json").write_text(json.dumps({"data": "darcy", "lr": 0.01}))
    assert cfg("-c", str(tmp_path / "r.json")).lr == 0.01  # a recipe over the defaults
    assert cfg().optimizer == "sgd"  # the classifiers' defaults are untouched


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_are_refused_in_one_line(data, tmp_path, capsys):
    base = ["train", "--epochs", "1", "--threads", "1", "--no-progress"]
    darcy = [*base, "--data", "darcy", "--data-dir", str(data)]
    run = tmp_path / "classifier"
    err = _one_line_error([*darcy, "--model", "mgnet_digits", "-o", str(run)], capsys)
    assert "'mgnet_digits' is a classifier" in err and "mgno" in err
    assert not (run / "config.json").exists()  # refused before anything was built
    err = _one_line_error([*base, "--model", "mgno", "-o", str(tmp_path / "op")], capsys)
    assert "'mgno' is a neural operator" in err and "'digits'" in err
    stride = ["--data-kwargs", "stride=2", "-o", str(tmp_path / "s")]
    err = _one_line_error([*darcy, *stride], capsys)
    assert "cannot take the 17x17 grid of the train split" in err and "m * 16 + 1" in err
    for extra, message in (
        (["--data-kwargs", "strde=2"], "does not accept strde; accepted: stride"),
        (["--data-kwargs", "n_train=99"], "n_train: 99 samples asked for"),
        (["--data-kwargs", "val=12"], "val: 12 validation samples leave none"),
        (["--mixup", "0.2"], "mixup: mixes labelled images"),
        (["--loss", "cross_entropy"], "loss: 'cross_entropy' is a classification loss"),
    ):
        assert message in _one_line_error([*darcy, *extra, "-o", str(tmp_path / "x")], capsys)
    assert "loss: 'rel_l2' is an operator loss" in _one_line_error(
        [*base, "--loss", "rel_l2", "-o", str(tmp_path / "y")], capsys
    )
    with pytest.raises(ValueError, match="^mean, std: data 'darcy' is normalised pointwise"):
        get_dataset("darcy", root=str(data), mean=[0.0], std=[1.0])

    bad = tmp_path / "bad"
    bad.mkdir()
    rng = np.random.default_rng(0)
    cases = {
        "keys": ({"a": rng.random((2, 9, 9))}, "needs the keys 'coeff' and 'sol'"),
        "shapes": ({"coeff": rng.random((2, 9, 9)), "sol": rng.random((2, 5, 5))}, "one shape"),
        "nan": ({"coeff": rng.random((2, 9, 9)), "sol": np.full((2, 9, 9), np.nan)}, "NaN"),
    }
    for name, (arrays, message) in cases.items():
        scipy.io.savemat(bad / "train.mat", arrays)
        argv = [*base, "--data", "darcy", "--data-dir", str(bad), "-o", str(tmp_path / name)]
        err = _one_line_error(argv, capsys)
        assert message in err and "train.mat" in err, err


def test_benchmark_quick_mode_prints_the_table(tmp_path, capsys):
    """benchmarks/darcy_operators.py --quick: the four models, one recipe, one table."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "darcy_operators.py"
    spec = importlib.util.spec_from_file_location("darcy_operators_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        rows = bench.main(["--quick", "--data", str(tmp_path / "data"), "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    assert [r["model"] for r in rows] == list(OPERATORS)
    for r in rows:
        assert r["parameters"] == count_parameters_of(r["model"])
        assert all(0 < r[k] < 10 for k in ("rel_l2", "rel_h1", "fine_rel_l2", "fine_rel_h1"))
        assert r["train_s_per_epoch"] > 0
    printed = capsys.readouterr().out
    assert "L2/fno" in printed and "L2@65" in printed and "--device cuda" in printed


def test_docs_darcy_commands_parse():
    """The `mgnet` lines of docs/darcy.md parse with the real parser."""
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "darcy.md").read_text()
    lines = [line.split("  #")[0].strip() for line in doc.splitlines() if line.startswith("mgnet ")]
    assert sum(line.startswith("mgnet train") for line in lines) >= 1
    for line in lines:
        build_parser().parse_args(shlex.split(line)[1:])
