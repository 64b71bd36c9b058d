"""The training loop: output files, model selection on val, exact resume, failure handling."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch

from mgnet.train import (
    CheckpointError,
    TrainConfig,
    TrainingDiverged,
    load_checkpoint,
    load_recipe,
    lr_multiplier,
    resume_config,
    save_checkpoint,
    train,
)

TINY = "mgnet[1,1]-8"  # 3,730 parameters: an epoch of the digits takes a fraction of a second


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = {
        "model": TINY,
        "epochs": 4,
        "batch_size": 128,
        "progress": False,
        "threads": 1,
        "output_dir": str(tmp_path / name),
    }
    return TrainConfig(**{**values, **kw})


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 4-epoch run, shared by the resume tests."""
    out = tmp_path_factory.mktemp("straight")
    results = train(tiny(out))
    return out / "run", results


def test_output_files_and_model_selection_on_val(straight):
    run, results = straight
    cfg = json.loads((run / "config.json").read_text())
    assert cfg == tiny(run.parent).to_dict()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert {
            "train_loss",
            "train_accuracy",
            "val_accuracy",
            "val_loss",
            "lr",
            "images_per_s",
        } <= r.keys()
        assert 0 <= r["val_accuracy"] <= 100 and r["images_per_s"] > 0
    assert rows[0]["lr"] < 0.1 and rows[-1]["lr"] < 1e-3  # cosine, per step, ends near zero
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    on_disk = json.loads((run / "results.json").read_text())
    assert on_disk == pytest.approx(results)
    # the best epoch has the highest validation accuracy (the last such epoch on ties);
    # the test split plays no part in the choice
    val = [r["val_accuracy"] for r in rows]
    assert results["best_epoch"] == len(val) - val[::-1].index(max(val))
    assert results["best_val_accuracy"] == pytest.approx(max(val))
    assert results["parameters"] == 3730 and results["test_count"] == 360
    assert results["wall_time_s"] > 0
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == results["best_epoch"]
    assert not list(run.glob(".*tmp*"))  # atomic writes leave no temporary file behind


def test_checkpoint_holds_everything_and_loads_with_weights_only(straight):
    run, _ = straight
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config", "best"} <= state.keys()
    assert state["epoch"] == 4 and state["partial"] is None
    assert {"python", "numpy", "torch", "cuda"} <= state["rng"].keys()
    assert state["config"]["model"] == TINY
    assert state["optimizer"]["state"]  # momentum buffers are saved


def test_two_epochs_then_resume_gives_identical_weights(straight, tmp_path):
    """A crash after epoch 2 (checkpoint.pt then holds epoch 2), resume, two more epochs:
    bit-for-bit the weights of the uninterrupted run."""
    cfg = tiny(tmp_path)

    class Crash(Exception):
        pass

    def crash_in_epoch_3(epoch, step, loss):
        if epoch == 3:
            raise Crash

    with pytest.raises(Crash):
        train(cfg, step_hook=crash_in_epoch_3)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 2
    # the crash after one step of epoch 3 must leave no trace in the resumed run
    train(resume_config(tmp_path / "run"), resume=True)
    assert_same_state(weights(straight[0]), weights(tmp_path / "run"))
    straight_state = load_checkpoint(straight[0] / "checkpoint.pt")
    resumed_state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for a, b in zip(
        straight_state["optimizer"]["state"].values(), resumed_state["optimizer"]["state"].values()
    ):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test_accuracy"] == (
        pytest.approx(straight[1]["test_accuracy"])
    )


def test_ctrl_c_mid_epoch_writes_a_checkpoint_and_resume_is_exact(straight, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mgnet")
    cfg = tiny(tmp_path)

    def interrupt(epoch, step, loss):
        if (epoch, step) == (2, 7):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, step_hook=interrupt)
    assert "interrupted at epoch 2, step 7" in caplog.text  # logged (the CLI prints it)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 1 and state["partial"]["step"] == 7
    train(resume_config(tmp_path / "run"), resume=True)
    assert_same_state(weights(straight[0]), weights(tmp_path / "run"))
    straight_rows = (straight[0] / "metrics.jsonl").read_text().splitlines()
    resumed_rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    for a, b in zip(straight_rows, resumed_rows):
        a, b = json.loads(a), json.loads(b)
        for key in ("epoch", "train_loss", "train_accuracy", "val_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key]), key


def test_nan_loss_stops_with_epoch_and_step(tmp_path):
    with pytest.raises(TrainingDiverged) as e:
        train(tiny(tmp_path, lr=1e30))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("loss is nan at epoch 1, step ")
    assert int(msg.split("step ")[1].split()[0]) >= 2  # the first step's loss is finite


def test_resume_refuses_changed_recipe_and_finished_runs(straight):
    run, _ = straight
    with pytest.raises(ValueError, match=r"^resume: lr=0.5 differs"):
        resume_config(run, {"lr": 0.5})
    with pytest.raises(ValueError, match="output_dir"):
        resume_config(run, {"output_dir": "elsewhere"})
    cfg = resume_config(run, {"device": "cpu", "workers": 0})
    assert cfg.device == "cpu" and cfg.output_dir == str(run)
    with pytest.raises(ValueError, match="already finished its 4 epochs"):
        train(cfg, resume=True)


def test_a_fresh_run_never_overwrites_a_finished_one(straight):
    run, results = straight
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny(run.parent))
    assert json.loads((run / "results.json").read_text()) == pytest.approx(results)


def test_truncated_and_foreign_checkpoints_are_one_line_errors(straight, tmp_path):
    data = (straight[0] / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    for path in (truncated, foreign, pickled, text):
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint({"epoch": 2, "bad": lambda: 0}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_lr_schedules():
    def curve(**kw):
        cfg = TrainConfig(epochs=10, **kw)
        return [lr_multiplier(s, cfg, steps_per_epoch=10) for s in range(100)]

    cos = curve(lr_scheduler="cosine")
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5) and cos[99] < 1e-3
    assert all(a >= b for a, b in zip(cos, cos[1:]))
    step = curve(lr_scheduler="step", lr_step_size=3, lr_gamma=0.5)
    assert step[29] == 1.0 and step[30] == 0.5 and step[60] == 0.25 and step[90] == 0.125
    one = curve(lr_scheduler="onecycle")
    assert one[0] == pytest.approx(1 / 25) and max(one) == one[30] == 1.0
    assert one[99] < 1e-3
    warm = curve(lr_scheduler="cosine", warmup_epochs=2)
    assert warm[0] == pytest.approx(1 / 20) and warm[19] == 1.0 and warm[20] == 1.0
    assert curve(lr_scheduler="none") == [1.0] * 100


def test_adamw_step_schedule_and_label_smoothing_train(tmp_path):
    results = train(
        tiny(
            tmp_path,
            epochs=2,
            optimizer="adamw",
            lr=2e-2,
            weight_decay=0.05,
            lr_scheduler="step",
            lr_step_size=1,
            label_smoothing=0.1,
        )
    )
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == pytest.approx(2e-2) and rows[1]["lr"] == pytest.approx(2e-3)
    assert results["best_val_accuracy"] > 10.0  # better than chance after two epochs


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path):
    results = train(tiny(tmp_path, epochs=1, amp="bf16", channels_last=True))
    assert math.isfinite(results["test_loss"])


def test_config_validation_is_one_line_and_names_the_field():
    cases = {
        "epochs": 0,
        "optimizer": "rmsprop",  # adam and adamw are accepted
        "lr_scheduler": "linear",
        "amp": "fp8",
        "device": "gpu",
        "batch_size": "64",
        "label_smoothing": 1.0,
    }
    for field, value in cases.items():
        with pytest.raises(ValueError) as e:
            TrainConfig(**{field: value})
        assert str(e.value).startswith(f"{field}: ") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown key.*lr_schedule.*accepted"):
        TrainConfig.from_dict({"lr_schedule": "cosine"})


def test_recipes_in_json_and_yaml(tmp_path):
    (tmp_path / "r.json").write_text('{"epochs": 3, "lr": 0.05}')
    (tmp_path / "r.yaml").write_text("epochs: 3\nlr: 0.05\nmodel_args: {}\n")
    for name in ("r.json", "r.yaml"):
        cfg = TrainConfig.from_dict(load_recipe(tmp_path / name))
        assert (cfg.epochs, cfg.lr) == (3, 0.05)
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="^device: 'cuda' requested but no CUDA device"):
        train(tiny(tmp_path, device="cuda"))


@pytest.mark.slow
def test_default_recipe_reaches_98_percent_on_digits(tmp_path):
    """`mgnet train` with no arguments: the default model, data and recipe."""
    results = train(TrainConfig(output_dir=str(tmp_path / "default"), progress=False))
    assert results["model"] == "mgnet_digits" and results["data"] == "digits"
    assert results["test_accuracy"] >= 98.0
