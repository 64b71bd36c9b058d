"""Training checks that fail when a feature is off: a default-suite run that learns, label
smoothing in the loss, the EMA as what is validated and selected, and the tie rule of the
best epoch -- each against an independent computation or a forced case."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from mgnet.data import get_dataset
from mgnet.train import (
    ClassificationTask,
    TrainConfig,
    build_model,
    load_checkpoint,
    train,
)
from mgnet.train.mixing import mix_batch

TINY = "mgnet[1,1]-8"


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    values = {"model": TINY, "epochs": 2, "batch_size": 128, "progress": False, "threads": 1,
              "output_dir": str(tmp_path / name)}  # fmt: skip
    return TrainConfig(**{**values, **kw})


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def still(**kw) -> dict:
    """A recipe that holds the weights (all but) still: what the loss measures is then the
    loss of the initial weights on the epoch's batches, the same in every run."""
    return {"lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0, "lr_scheduler": "none",
            "augment": False, **kw}  # fmt: skip


# ---------------------------------------------------------------------------- learning
def test_a_small_mgnet_learns_the_digits(tmp_path):
    """MgNet[2,2]-16 (14,490 parameters), 6 epochs of the default recipe: 95.8 % test
    accuracy with seed 0 (94.7 / 96.1 % with seeds 1 / 2), about 8-11 s on one shared
    CPU core; chance is 10 %."""
    t0 = time.perf_counter()
    results = train(tiny(tmp_path, model="mgnet[2,2]-16", epochs=6, batch_size=64))
    assert results["parameters"] == 14_490
    assert results["test_accuracy"] >= 93.0, results["test_accuracy"]
    history = rows(tmp_path / "run")
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert time.perf_counter() - t0 < 60  # about 10 s; a wide margin for a busy machine


# ---------------------------------------------------------------------- label smoothing
def test_the_task_loss_is_the_label_smoothed_cross_entropy():
    """Against the formula: (1 - eps) * CE(target) + eps * mean over classes of -log p."""
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 10, generator=g), torch.randint(0, 10, (16,), generator=g)
    logp = logits.log_softmax(1)
    for eps in (0.0, 0.1, 0.3):
        task = ClassificationTask(label_smoothing=eps)
        batch = mix_batch(logits, y, 0.0, 0.0, 0, 0, 0, 0)
        expected = ((1 - eps) * -logp[torch.arange(16), y] - eps * logp.mean(1)).mean()
        assert task.loss(logits, batch).item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_uses_the_configured_label_smoothing(tmp_path):
    """With the weights held still, the epoch's training loss is (1 - eps) CE + eps U with
    the same CE and U for every eps: affine in eps, and not flat."""
    loss = {}
    for eps in (0.0, 0.2, 0.4):
        train(tiny(tmp_path, f"eps{eps}", epochs=1, label_smoothing=eps, **still()))
        loss[eps] = rows(tmp_path / f"eps{eps}")[0]["train_loss"]
    # at the initial weights p is near uniform, so U - CE is small: measured 7.3e-4 for
    # eps = 0.2, against rounding of about 1e-7 between runs
    step = loss[0.2] - loss[0.0]
    assert abs(step) > 2e-4, loss  # smoothing changes the loss
    assert loss[0.4] - loss[0.2] == pytest.approx(step, rel=1e-3), loss


# --------------------------------------------------------------------------------- EMA
def _val_loss(cfg: TrainConfig, weights: dict) -> float:
    """The validation loss of ``weights``, computed here from the images."""
    splits = get_dataset("digits", augment=False)
    model = build_model(cfg, splits.info)
    model.load_state_dict(weights)
    with torch.no_grad():
        logits = model.eval()(splits.val.images)
    return nn.functional.cross_entropy(logits, splits.val.labels).item()


def test_an_ema_run_validates_selects_and_stores_the_average(tmp_path):
    cfg = tiny(tmp_path, epochs=1, model_ema=True, model_ema_decay=0.9)
    results = train(cfg)
    run = tmp_path / "run"
    state, best = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(run / "best.pt")
    average, trained = state["model_ema"]["model"], state["model"]
    assert best["epoch"] == 1 and best["ema"] is True and results["model_ema"] is True
    for k, v in best["model"].items():  # best.pt holds the average ...
        assert torch.equal(v, average[k]), k
    assert any(  # ... which is not the trained weights
        not torch.equal(v, trained[k]) for k, v in average.items() if v.is_floating_point()
    )
    # what was validated: the average's validation loss, not the trained weights'
    logged = rows(run)[0]["val_loss"]  # 2.2978 for the average, 2.2970 for the weights
    assert logged == pytest.approx(_val_loss(cfg, average), rel=1e-6)
    assert abs(logged - _val_loss(cfg, trained)) > 2e-4


# ---------------------------------------------------------------------------- tie rule
def test_the_selection_rule_gives_a_tie_to_the_later_epoch():
    improves = ClassificationTask.improves
    assert improves(50.0, None) and improves(50.0, 50.0) and improves(50.1, 50.0)
    assert not improves(49.9, 50.0)


def test_a_run_whose_epochs_tie_keeps_the_last(tmp_path):
    """A linear MgNet (no BatchNorm) with its weights held still scores the same on the
    validation split after every epoch: the best epoch is the last one."""
    results = train(tiny(tmp_path, model="mgnet[1,1]-8-linear", epochs=3, **still()))
    val = [r["val_accuracy"] for r in rows(tmp_path / "run")]
    assert val[0] == val[1] == val[2]  # a real tie
    assert results["best_epoch"] == 3
    assert [r["best"] for r in rows(tmp_path / "run")] == [True, True, True]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 3
