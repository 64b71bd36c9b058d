"""Every flag of `mgnet train`, `mgnet eval` and `mgnet export`, through the real parser,
with its effect on the resolved config or on the call it makes. A flag added to one of
the three commands without a row here fails `test_every_flag_is_covered`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgnet.cli import build_parser, main
from mgnet.cli.train import train_config

TINY = "mgnet[1,1]-8"


def _options(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions if a.dest != "help" for s in a.option_strings}


def _covered(rows) -> set[str]:
    return {arg for row in rows for arg in row[0] if arg.startswith("-")}


# ------------------------------------------------------------------------------- train
# (argv, field of the resolved TrainConfig, value it must hold)
TRAIN = [
    (["--model", "mgnet[2,2]-16"], "model", "mgnet[2,2]-16"),
    (["--model-kwargs", "width=8", "blocks=[1,1]"], "model_args", {"width": 8, "blocks": [1, 1]}),
    (["--in-channels", "1"], "in_channels", 1),
    (["--data", "cifar10"], "data", "cifar10"),
    (["--data-dir", "/data/x"], "data_dir", "/data/x"),
    (["--data-kwargs", "stride=5", "n_train=1000"], "data_args", {"stride": 5, "n_train": 1000}),
    (["--download"], "download", True),
    (["--no-augment"], "augment", False),
    (["--epochs", "7"], "epochs", 7),
    (["-b", "96"], "batch_size", 96),
    (["--batch-size", "48"], "batch_size", 48),
    (["--lr", "0.05"], "lr", 0.05),
    (["--momentum", "0.8"], "momentum", 0.8),
    (["--wd", "1e-4"], "weight_decay", 1e-4),
    (["--weight-decay", "2e-4"], "weight_decay", 2e-4),
    (["--opt", "adamw"], "optimizer", "adamw"),
    (["--lr-scheduler", "step"], "lr_scheduler", "step"),
    (["--lr-step-size", "3"], "lr_step_size", 3),
    (["--lr-gamma", "0.5"], "lr_gamma", 0.5),
    (["--warmup-epochs", "2"], "warmup_epochs", 2),
    (["--label-smoothing", "0.2"], "label_smoothing", 0.2),
    (["--loss", "rel_h1"], "loss", "rel_h1"),
    (["--mixup", "0.4"], "mixup", 0.4),
    (["--cutmix", "1.0"], "cutmix", 1.0),
    (["--model-ema"], "model_ema", True),
    (["--model-ema-decay", "0.99"], "model_ema_decay", 0.99),
    (["--seed", "5"], "seed", 5),
    (["--device", "cpu"], "device", "cpu"),
    (["--amp", "bf16"], "amp", "bf16"),
    (["--channels-last"], "channels_last", True),
    (["-j", "3"], "workers", 3),
    (["--workers", "2"], "workers", 2),
    (["--loader", "torch"], "loader", "torch"),
    (["--threads", "2"], "threads", 2),
    (["--sync-bn"], "sync_bn", True),
    (["--compile"], "compile", True),
    (["--deterministic"], "deterministic", True),
    (["--protocol", "paper"], "protocol", "paper"),
    (["--tensorboard"], "tensorboard", True),
    (["-o", "runs/x"], "output_dir", "runs/x"),
    (["--output-dir", "runs/y"], "output_dir", "runs/y"),
    (["--no-progress"], "progress", False),
]


@pytest.mark.parametrize("argv, field, value", TRAIN, ids=lambda v: str(v))
def test_train_flag_sets_its_config_field(argv, field, value):
    args = build_parser().parse_args(["train", *argv])
    cfg = train_config(args)
    assert getattr(cfg, field) == value
    default = getattr(train_config(build_parser().parse_args(["train"])), field)
    assert default != value  # the flag changed something


def test_train_recipe_resume_and_test_only(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"epochs": 4, "lr": 0.3}))
    for flag in ("-c", "--config"):
        cfg = train_config(build_parser().parse_args(["train", flag, str(recipe)]))
        assert (cfg.epochs, cfg.lr) == (4, 0.3)
    run = tmp_path / "run"
    argv = ["train", "--model", TINY, "--epochs", "1", "-b", "128", "--threads", "1",
            "--no-progress", "-o", str(run)]  # fmt: skip
    assert main(argv) == 0
    cfg = train_config(build_parser().parse_args(["train", "--resume", str(run)]))
    assert cfg.output_dir == str(run) and cfg.model == TINY and cfg.epochs == 1
    import mgnet.train

    tested = []
    monkeypatch.setattr(mgnet.train, "test_checkpoint", lambda c: tested.append(c.output_dir))
    assert main(["train", "--resume", str(run), "--test-only"]) == 0
    assert tested == [str(run)]


# -------------------------------------------------------------------------------- eval
EVAL = [
    (["--data", "digits"], "data", "digits"),
    (["--data-dir", "/data/x"], "data_dir", "/data/x"),
    (["--data-kwargs", "test_resolution=129"], "data_args", {"test_resolution": 129}),
    (["--split", "val"], "split", "val"),
    (["--device", "cpu"], "device", "cpu"),
    (["-b", "64"], "batch_size", 64),
    (["--batch-size", "32"], "batch_size", 32),
    (["-o", "x.json"], "out", "x.json"),
    (["--out", "y.json"], "out", "y.json"),
    (["--no-plot"], "plot", False),
    (["--force"], "force", True),
]


def _fake_eval(calls):
    from mgnet.train.evaluation import EvalResult

    def fake(checkpoint, **kwargs):
        calls.append({"checkpoint": str(checkpoint), **kwargs})
        return EvalResult(str(checkpoint), TINY, "digits", "test", 3, 100.0, 100.0, 5, 0.1,
                          ["0", "1"], [[1, 0], [0, 2]], "e.json", None)  # fmt: skip

    return fake


@pytest.mark.parametrize("argv, key, value", EVAL, ids=lambda v: str(v))
def test_eval_flag_reaches_the_evaluation(argv, key, value, monkeypatch, capsys):
    import mgnet.train.evaluation as evaluation

    calls = []
    monkeypatch.setattr(evaluation, "evaluate_checkpoint", _fake_eval(calls))
    assert main(["eval", "--checkpoint", "c.pt", *argv]) == 0
    assert calls[0]["checkpoint"] == "c.pt" and calls[0][key] == value
    main(["eval", "--checkpoint", "c.pt"])
    assert calls[1][key] != value  # the default differs


def test_eval_json_prints_the_figures(monkeypatch, capsys):
    import mgnet.train.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", _fake_eval([]))
    assert main(["eval", "--checkpoint", "c.pt", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 3
    assert main(["eval", "--checkpoint", "c.pt"]) == 0
    assert "top-1 100.00%" in capsys.readouterr().out


# ------------------------------------------------------------------------------ export
EXPORT = [
    (["--format", "torchscript"], "format", "torchscript"),
    (["-o", "m.onnx"], "path", "m.onnx"),
    (["--out", "n.onnx"], "path", "n.onnx"),
    (["--input-size", "16"], "input_shape", (1, 1, 16, 16)),
    (["--atol", "0.01"], "atol", 0.01),
    (["--no-check"], "check", False),
]


def _fake_export(monkeypatch, calls):
    import torch

    import mgnet.export as export

    def model_from_checkpoint(path):
        calls.append({"checkpoint": str(path)})
        return torch.nn.Identity(), (1, 1, 8, 8), {"model": TINY, "data": "digits"}

    def export_model(model, path, format, input_shape, check, atol):
        calls[-1].update(path=str(path), format=format, input_shape=input_shape, check=check,
                         atol=atol)  # fmt: skip
        return export.ExportResult(Path(path), format, input_shape, None)

    monkeypatch.setattr(export, "model_from_checkpoint", model_from_checkpoint)
    monkeypatch.setattr(export, "export_model", export_model)


@pytest.mark.parametrize("argv, key, value", EXPORT, ids=lambda v: str(v))
def test_export_flag_reaches_the_export(argv, key, value, monkeypatch, capsys):
    calls = []
    _fake_export(monkeypatch, calls)
    assert main(["export", "--checkpoint", "c.pt", *argv]) == 0
    assert calls[0]["checkpoint"] == "c.pt" and calls[0][key] == value
    assert main(["export", "--checkpoint", "c.pt"]) == 0
    assert calls[1][key] != value


def test_export_force_overwrites_a_runs_file(tmp_path, monkeypatch, capsys):
    calls = []
    _fake_export(monkeypatch, calls)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    target = str(tmp_path / "best.pt")
    (tmp_path / "best.pt").write_bytes(b"y")
    assert main(["export", "--checkpoint", "c.pt", "-o", target]) == 2
    assert "--force" in capsys.readouterr().err and calls == []
    assert main(["export", "--checkpoint", "c.pt", "-o", target, "--force"]) == 0
    assert calls[0]["path"] == target


# ------------------------------------------------------------------------- coverage
def test_every_flag_is_covered():
    train_rows = [*TRAIN, (["-c", "--config", "--resume", "--test-only"],)]
    for command, rows in (
        ("train", train_rows),
        ("eval", [*EVAL, (["--checkpoint", "--json"],)]),
        ("export", [*EXPORT, (["--checkpoint", "--force"],)]),
    ):
        # --debug belongs to every subcommand; tests/test_cli.py exercises it
        missing = _options(command) - _covered(rows) - {"--debug"}
        assert not missing, f"mgnet {command}: flags without a test: {sorted(missing)}"
