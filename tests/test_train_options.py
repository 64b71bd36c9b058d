"""Run options and how a run uses the device: the paper protocol, the normalization
constants, --deterministic, --tensorboard, torch.compile without recompiles, no host
synchronization per step, and evaluation from a checkpoint as the run evaluated. Tests
that need a GPU carry the ``cuda`` marker and are skipped without one."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mgnet.cli import main
from mgnet.data.vision import VISION_DATASETS, load_vision
from mgnet.train import (
    TrainConfig,
    evaluate_checkpoint,
    load_checkpoint,
    load_recipe,
    resume_config,
    train,
)
from test_data_vision import write_cifar  # tests/ is on sys.path

TINY = "mgnet[1,1]-8"
CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mgnet" / "configs"
SRC = str(Path(__import__("mgnet").__file__).parent)


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = {"model": TINY, "epochs": 2, "batch_size": 128, "progress": False, "threads": 1,
              "output_dir": str(tmp_path / name)}  # fmt: skip
    return TrainConfig(**{**values, **kw})


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------- paper protocol
def test_paper_protocol_trains_on_every_image_and_reports_both_test_figures(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mgnet")
    results = train(tiny(tmp_path, epochs=3, protocol="paper"))
    run = tmp_path / "run"
    history = rows(run)
    assert all("test_accuracy" in r and "val_accuracy" not in r for r in history)
    assert "(1437 train / 360 test)" in caplog.text  # the 180 validation images train too
    test = [r["test_accuracy"] for r in history]
    assert results["protocol"] == "paper"
    assert results["test_accuracy"] == results["last_test_accuracy"] == test[-1]
    assert results["best_test_accuracy"] == max(test)
    assert results["best_epoch"] == len(test) - test[::-1].index(max(test))
    assert "authors' selection rule" in results["selection"]
    assert "the authors' selection rule" in caplog.text
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == results["best_epoch"] and best["selected_on"] == "test"
    report = evaluate_checkpoint(run / "best.pt", plot=False)
    assert report.top1 == pytest.approx(results["best_test_accuracy"])


def test_the_default_protocol_selects_on_validation(tmp_path):
    results = train(tiny(tmp_path, epochs=1))
    assert results["protocol"] == "val" and "best_val_accuracy" in results
    assert "selection" not in results and "val_accuracy" in rows(tmp_path / "run")[0]


# --------------------------------------------------------------- normalization constants
def test_dataset_statistics_are_the_published_numbers():
    """Per-channel mean and std of the official training splits on the [0, 1] scale, as
    published (CIFAR: R, G, B in this order); a swapped channel fails here."""
    expected = {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        "mnist": ((0.1307,), (0.3081,)),
        "fashion_mnist": ((0.2860,), (0.3530,)),
        "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    }
    for name, (mean, std) in expected.items():
        assert VISION_DATASETS[name].mean == mean, name
        assert VISION_DATASETS[name].std == std, name


def test_paper_recipes_normalize_with_the_authors_constants():
    """The MgNet authors' training script normalizes CIFAR-10 with std (0.2023, 0.1994,
    0.2010), not the per-pixel std of the table, and CIFAR-100 with the table's numbers;
    the paper recipes say so in numbers."""
    authors = {
        "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),
        "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    }
    for data, (mean, std) in authors.items():
        recipe = load_recipe(CONFIGS / f"{data}_mgnet_paper.yaml")
        assert (recipe["mean"], recipe["std"]) == (mean, std), data
        cfg = TrainConfig.from_dict(recipe)
        assert (cfg.mean, cfg.std) == (mean, std)


def test_images_are_normalized_channel_by_channel(tmp_path):
    """Constant-colour images (R, G, B) = (10, 100, 200) come out as (v/255 - mean) / std
    with the published numbers, channel by channel, from the dataset and the device
    loader alike."""
    from mgnet.data.device_loader import DeviceLoader

    write_cifar(tmp_path, "cifar10", n_train=2, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    colour = np.repeat(np.array([10, 100, 200], np.uint8), 1024)[None].repeat(2, 0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        import pickle

        entry = pickle.loads((folder / name).read_bytes(), encoding="latin1")
        entry["data"] = colour
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    expected = [
        (10 / 255 - 0.4914) / 0.2470,
        (100 / 255 - 0.4822) / 0.2435,
        (200 / 255 - 0.4465) / 0.2616,
    ]
    train_set, _, test = load_vision("cifar10", tmp_path, augment=False)
    x = test[0][0]
    for c in range(3):
        assert torch.allclose(x[c], torch.full((32, 32), expected[c]), atol=1e-5), c
    batch, _ = next(iter(DeviceLoader.from_dataset(train_set, 2, shuffle=False, device="cpu")))
    for c in range(3):
        assert torch.allclose(batch[0, c], torch.full((32, 32), expected[c]), atol=1e-5), c
    # a run's own constants replace the table's
    authors = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])
    _, _, test = load_vision("cifar10", tmp_path, augment=False, stats=authors)
    assert test[0][0][2, 0, 0].item() == pytest.approx((200 / 255 - 0.4465) / 0.2010, abs=1e-5)


def test_a_run_uses_its_configured_constants(tmp_path):
    from mgnet.train.distributed import DistInfo
    from mgnet.train.loop import _loaders

    write_cifar(tmp_path / "data", "cifar10", n_train=4, n_test=4)
    cfg = tiny(tmp_path, data="cifar10", data_dir=str(tmp_path / "data"), batch_size=8,
               mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])  # fmt: skip
    splits, *_ = _loaders(cfg, DistInfo(), torch.device("cpu"))
    assert splits.train.mean == splits.test.mean == (0.5, 0.5, 0.5)
    assert splits.test.std == (0.25, 0.25, 0.25)
    with pytest.raises(ValueError, match="^mean: 2 value"):
        _loaders(tiny(tmp_path, mean=[0.5, 0.1], std=[0.2, 0.3]), DistInfo(), torch.device("cpu"))
    with pytest.raises(ValueError, match="^mean: "):
        TrainConfig(mean=[0.5])  # std missing


# ------------------------------------------------------------------ determinism
def test_deterministic_mode_holds_during_the_run_and_is_restored_after(tmp_path):
    seen = set()

    def hook(epoch, step, loss):
        seen.add(
            (
                torch.are_deterministic_algorithms_enabled(),
                torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark,
            )
        )

    a = train(tiny(tmp_path, "a", epochs=1, deterministic=True), step_hook=hook)
    assert seen == {(True, True, False)}
    assert not torch.are_deterministic_algorithms_enabled()
    b = train(tiny(tmp_path, "b", epochs=1, deterministic=True))
    assert a["test_loss"] == b["test_loss"]  # on the CPU every run is bit-reproducible
    for k, v in load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"].items():
        assert torch.equal(v, load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"][k])


# -------------------------------------------------------------------- tensorboard
class _FakeWriter:
    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = Path(log_dir), [], False

    def add_scalar(self, name, value, step):
        self.scalars.append((name, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_gets_the_epoch_metrics(tmp_path, monkeypatch):
    import mgnet.train.writers as writers

    made = []
    monkeypatch.setattr(writers, "tensorboard_writer", lambda d: made.append(_FakeWriter(d))
                        or made[-1])  # fmt: skip
    results = train(tiny(tmp_path, epochs=2, tensorboard=True))
    (writer,) = made
    assert writer.log_dir == tmp_path / "run" / "tensorboard" and writer.closed
    logged = {(name, step): value for name, value, step in writer.scalars}
    history = rows(tmp_path / "run")
    for epoch in (1, 2):
        for key in ("train_loss", "train_accuracy", "val_accuracy", "val_loss", "lr"):
            assert logged[(key, epoch)] == pytest.approx(history[epoch - 1][key]), key
    assert logged[("test_accuracy", 2)] == pytest.approx(results["test_accuracy"])


def test_tensorboard_without_the_package_is_one_line_before_the_data(tmp_path, capsys, monkeypatch):
    import mgnet.train.loop as loop

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    monkeypatch.setattr(loop, "get_dataset", lambda *a, **k: pytest.fail("data loaded"))
    argv = ["train", "--model", TINY, "--tensorboard", "--threads", "1", "-o",
            str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorboard" in err[0]


def test_the_real_tensorboard_writer_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    train(tiny(tmp_path, epochs=1, tensorboard=True))
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


# ------------------------------------------------------------- host synchronization
class _HostReads:
    """Counts reads of tensor values into Python (item, tolist, float, int, bool) made
    by the package's own code."""

    def __init__(self, monkeypatch):
        self.count = 0
        for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(original))

    def _wrap(self, original):
        @functools.wraps(original)
        def read(tensor, *args, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(SRC):
                self.count += 1
            return original(tensor, *args, **kwargs)

        return read


def test_a_step_never_reads_a_value_from_the_device(tmp_path, monkeypatch):
    """The reads of one epoch do not grow with its number of steps (10 vs 40 steps):
    statistics and the divergence check stay on the device between check points."""
    reads = _HostReads(monkeypatch)
    counts = {}
    for batch in (128, 32):
        reads.count = 0
        cfg = tiny(tmp_path, f"b{batch}", epochs=1, batch_size=batch, augment=False)
        steps: list[int] = []
        train(cfg, step_hook=lambda e, s, loss, steps=steps: steps.append(s))
        counts[len(steps)] = reads.count
    assert sorted(counts) == [10, 40]
    assert counts[10] == counts[40], counts


def test_divergence_is_still_caught_with_epoch_and_step(tmp_path):
    from mgnet.train import TrainingDiverged

    cfg = tiny(tmp_path, epochs=2, lr=1e30, batch_size=32)  # 40 steps per epoch
    with pytest.raises(TrainingDiverged) as e:
        train(cfg)
    message = str(e.value)
    assert message.startswith("loss is nan at epoch 1, step ") and "\n" not in message
    assert 2 <= int(message.split("step ")[1].split()[0]) <= 40
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # no diverged state is saved


# --------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_compile_never_recompiles_for_evaluation_or_a_partial_batch(tmp_path, monkeypatch):
    """The training model and its evaluation copy are compiled once each: full training
    batches only, evaluation batches padded to one size (dynamo's eager backend, so no C
    compiler is needed)."""
    from torch._dynamo.utils import counters

    real = torch.compile
    monkeypatch.setattr(torch, "compile", functools.partial(real, backend="eager"))
    torch._dynamo.reset()
    counters.clear()
    graphs = []
    # 1257 training images in batches of 128: a partial batch of 105 at every epoch's end;
    # 180 validation and 360 test images in batches of 256: partial batches as well
    cfg = tiny(tmp_path, epochs=3, compile=True)
    train(cfg, step_hook=lambda e, s, loss: graphs.append(counters["stats"]["unique_graphs"]))
    assert graphs[0] == 1 and graphs[-1] == 2, graphs  # training, then evaluation
    assert counters["stats"]["unique_graphs"] == 2  # the final test added none
    torch._dynamo.reset()


# ------------------------------------------------------ evaluation from a checkpoint
def test_evaluation_from_a_checkpoint_runs_as_the_run_did(tmp_path, monkeypatch):
    import mgnet.train.task as task

    train(tiny(tmp_path, epochs=1, amp="bf16", channels_last=True))
    calls = []
    original = task.evaluate

    def spy(model, loader, device, amp="none", channels_last=False, *args, **kwargs):
        weight = next(p for p in model.parameters() if p.dim() == 4)
        calls.append((amp, channels_last, weight.is_contiguous(memory_format=torch.channels_last)))
        return original(model, loader, device, amp, channels_last, *args, **kwargs)

    monkeypatch.setattr(task, "evaluate", spy)
    report = evaluate_checkpoint(tmp_path / "run" / "best.pt", plot=False)
    assert calls == [("bf16", True, True)] and report.count == 360


# ---------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
def test_cuda_resume_is_exact_and_deterministic_runs_repeat(tmp_path):
    def run(name, **kw):
        return train(tiny(tmp_path, name, device="cuda", deterministic=True, **kw))

    a = run("a", epochs=2)
    b = run("b", epochs=2)
    assert a["test_loss"] == b["test_loss"]

    def interrupt(epoch, step, loss):
        if (epoch, step) == (2, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, "c", device="cuda", deterministic=True, epochs=2),
              step_hook=interrupt)  # fmt: skip
    c = train(resume_config(tmp_path / "c"), resume=True)
    assert c["test_loss"] == a["test_loss"]


@pytest.mark.cuda
def test_cuda_amp_channels_last_compile_and_evaluation(tmp_path):
    results = train(tiny(tmp_path, device="cuda", amp="bf16", channels_last=True, compile=True,
                         model_ema=True, mixup=0.2))  # fmt: skip
    report = evaluate_checkpoint(tmp_path / "run" / "best.pt", device="cuda", plot=False)
    assert report.top1 == pytest.approx(results["test_accuracy"], abs=0.3)
