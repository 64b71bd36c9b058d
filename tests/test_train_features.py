"""Recipe features of the training loop: EMA of the weights, mixup/CutMix, sync-bn in one
process, torch.compile, junk checkpoints, and the classes of an image folder."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch
from torch import nn

from mgnet.train import CheckpointError, TrainConfig, load_checkpoint, resume_config, train
from mgnet.train.distributed import CpuSyncBatchNorm, convert_sync_batchnorm
from mgnet.train.ema import ModelEma
from mgnet.train.mixing import mix_batch

TINY = "mgnet[1,1]-8"


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = {"model": TINY, "epochs": 3, "batch_size": 128, "progress": False, "threads": 1,
              "output_dir": str(tmp_path / name)}  # fmt: skip
    return TrainConfig(**{**values, **kw})


# ------------------------------------------------------------------------- checkpoints
def test_random_bytes_are_a_one_line_checkpoint_error(tmp_path):
    """Junk fails inside torch.load in many ways (UnpicklingError, struct.error,
    IndexError, KeyError, UnicodeDecodeError, ...): each must be a CheckpointError."""
    path = tmp_path / "junk.pt"
    for seed in range(40):  # seeds 0, 4, 17 and 35 hit IndexError, struct.error, ...
        r = random.Random(seed)
        n = r.choice([1, 2, 3, 7, 16, 100, 5000])
        path.write_bytes(bytes(r.getrandbits(8) for _ in range(n)))
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value), seed
    path.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_random_bytes_through_the_cli_are_one_line(tmp_path, capsys):
    from mgnet.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(bytes(range(256)) * 7)
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a checkpoint of this package" in err[0]


# ---------------------------------------------------------------------------------- EMA
def test_ema_update_is_the_documented_average():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    start = [p.clone() for p in ema.module.parameters()]
    assert ema.current_decay() == pytest.approx(0.1)  # warm-up (1 + 0) / (10 + 0)
    for p in model.parameters():
        p.data.add_(1.0)
    model[1].running_mean.fill_(3.0)
    ema.update(model)
    for avg, p, p0 in zip(ema.module.parameters(), model.parameters(), start):
        assert torch.allclose(avg, 0.1 * p0 + 0.9 * p)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # copied
    ema.updates = 1000
    assert ema.current_decay() == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="decay"):
        ModelEma(model, decay=1.0)


def test_ema_run_selects_and_stores_the_average(tmp_path):
    # batch 32: enough steps in one epoch that the average has learned (36 % measured;
    # at batch 128 the ten steps left the tiny model at chance, 10 %)
    results = train(tiny(tmp_path, epochs=1, batch_size=32, model_ema=True, model_ema_decay=0.9))
    run = tmp_path / "run"
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["model_ema"]["updates"] == 40  # 1257 images / 32: 40 steps per epoch
    best = load_checkpoint(run / "best.pt")
    assert best["ema"] is True and results["model_ema"] is True
    # one epoch, so best.pt is that epoch's: the averaged weights, not the trained ones
    assert best["epoch"] == 1
    for k, v in best["model"].items():
        assert torch.equal(v, state["model_ema"]["model"][k]), k
    assert any(
        not torch.equal(v, state["model"][k])
        for k, v in best["model"].items()
        if v.dtype.is_floating_point
    )
    assert results["test_accuracy"] > 20.0


@pytest.fixture(scope="module")
def straight_ema_mix(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    cfg = tiny(out, model_ema=True, model_ema_decay=0.95, mixup=0.4, cutmix=1.0)
    return out / "run", train(cfg)


def test_resume_with_ema_mixup_and_cutmix_is_bit_exact(straight_ema_mix, tmp_path):
    straight, _ = straight_ema_mix
    cfg = tiny(tmp_path, model_ema=True, model_ema_decay=0.95, mixup=0.4, cutmix=1.0)

    def interrupt(epoch, step, loss):
        if (epoch, step) == (2, 4):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, step_hook=interrupt)
    train(resume_config(tmp_path / "run"), resume=True)
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for part in (a["model"], a["model_ema"]["model"]):
        other = b["model"] if part is a["model"] else b["model_ema"]["model"]
        for k in part:
            assert torch.equal(part[k], other[k]), k
    assert a["model_ema"]["updates"] == b["model_ema"]["updates"] == 30
    ra = json.loads((straight / "results.json").read_text())
    rb = json.loads((tmp_path / "run" / "results.json").read_text())
    assert ra["test_accuracy"] == rb["test_accuracy"]


# ------------------------------------------------------------------------ mixup, cutmix
def _batch(n=16, classes=5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 2, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_mixup_mixes_pairs_with_one_weight_and_is_a_function_of_the_step():
    x, y = _batch()
    m = mix_batch(x, y, mixup=0.4, cutmix=0.0, seed=0, epoch=1, step=3, rank=0)
    assert m.kind == "mixup" and 0 < m.lam < 1
    # recover the partner of each image from its labels and check the mix
    partner = [int((torch.isclose(m.x[i], x[i] * m.lam + x * (1 - m.lam))).flatten(1).all(1)
                   .nonzero()[0]) for i in range(len(x))]  # fmt: skip
    assert torch.equal(m.y_b, y[partner]) and torch.equal(m.y_a, y)
    again = mix_batch(x, y, mixup=0.4, cutmix=0.0, seed=0, epoch=1, step=3, rank=0)
    assert torch.equal(again.x, m.x) and again.lam == m.lam
    other = mix_batch(x, y, mixup=0.4, cutmix=0.0, seed=0, epoch=1, step=4, rank=0)
    other_rank = mix_batch(x, y, mixup=0.4, cutmix=0.0, seed=0, epoch=1, step=3, rank=1)
    assert other.lam != m.lam and other_rank.lam != m.lam
    off = mix_batch(x, y, 0.0, 0.0, 0, 1, 3, 0)
    assert off.x is x and off.lam == 1.0 and off.kind == "none"


def test_cutmix_lam_is_the_share_of_pixels_kept():
    x, y = _batch()
    kinds = set()
    for step in range(20):
        m = mix_batch(x, y, mixup=0.0, cutmix=1.0, seed=0, epoch=0, step=step, rank=0)
        kinds.add(m.kind)
        moved = [i for i in range(len(x)) if not torch.equal(m.y_b[i], m.y_a[i])]
        for i in moved[:3]:
            kept = (m.x[i] == x[i]).all(0).float().mean().item()  # per pixel, all channels
            assert kept == pytest.approx(m.lam, abs=1e-6), step
    assert kinds == {"cutmix"}
    both = {mix_batch(x, y, 0.2, 1.0, 0, 0, s, 0).kind for s in range(20)}
    assert both == {"mixup", "cutmix"}


def test_mixed_loss_is_cross_entropy_with_the_smoothed_soft_target():
    x, y = _batch(classes=5)
    m = mix_batch(x, y, mixup=1.0, cutmix=0.0, seed=3, epoch=0, step=0, rank=0)
    logits = torch.randn(len(y), 5, generator=torch.Generator().manual_seed(2))
    eps = 0.1
    soft = m.lam * nn.functional.one_hot(m.y_a, 5) + (1 - m.lam) * nn.functional.one_hot(m.y_b, 5)
    target = (1 - eps) * soft + eps / 5
    expected = -(target * logits.log_softmax(1)).sum(1).mean()
    got = m.loss(nn.CrossEntropyLoss(label_smoothing=eps), logits)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    assert got.item() == pytest.approx(nn.functional.cross_entropy(
        logits, soft.float(), label_smoothing=eps).item(), rel=1e-6)  # fmt: skip


def test_bad_recipe_values_name_the_field():
    for field, value in (("mixup", -1.0), ("cutmix", -0.5), ("model_ema_decay", 1.0)):
        with pytest.raises(ValueError) as e:
            TrainConfig(**{field: value})
        assert str(e.value).startswith(f"{field}: ")


# -------------------------------------------------------------------- sync-bn, compile
def test_sync_bn_in_one_process_is_a_no_op_with_a_note(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mgnet")
    a = train(tiny(tmp_path, "plain", epochs=1))
    b = train(tiny(tmp_path, "sync", epochs=1, sync_bn=True))
    assert "sync_bn: one process" in caplog.text
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]


def test_cpu_sync_batchnorm_outside_a_process_group_is_batchnorm():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    synced = convert_sync_batchnorm(
        nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)), torch.device("cpu")
    )
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced[1], CpuSyncBatchNorm)
    x = torch.randn(4, 2, 6, 6)
    assert torch.equal(plain(x), synced(x))
    assert torch.equal(plain[1].running_var, synced[1].running_var)


@pytest.mark.slow
def test_compile_trains_on_cpu(tmp_path):
    """torch.compile on the CPU path (inductor needs a C compiler; takes ~1 min)."""
    results = train(tiny(tmp_path, epochs=1, compile=True))
    assert results["test_accuracy"] > 0 and "_orig_mod" not in "".join(
        load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    )


# ------------------------------------------------------------------------ image folder
def test_imagefolder_model_has_the_folders_classes(tmp_path, capsys):
    from mgnet.cli import main
    from test_data_vision import write_image_folder  # tests/ is on sys.path

    write_image_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=4)
    run = tmp_path / "run"
    argv = ["train", "--data", "imagefolder", "--data-dir", str(tmp_path / "data"),
            "--epochs", "1", "--model", TINY, "-b", "4", "-o", str(run), "--threads", "1",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["num_classes"] == 3 and state["model"]["fc.weight"].shape[0] == 3
    assert load_checkpoint(run / "best.pt")["num_classes"] == 3
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--test-only"]) == 0
    assert "(6 images)" in capsys.readouterr().out
    # export rebuilds the model with the folder's classes too
    from mgnet.export import model_from_checkpoint

    model, shape, _ = model_from_checkpoint(run / "best.pt")
    assert model.fc.out_features == 3 and shape == (1, 3, 224, 224)
