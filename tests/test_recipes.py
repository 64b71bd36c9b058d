"""The recipes shipped in mgnet/configs/: every one is a valid `mgnet train` config, the
paper recipe holds the published hyper-parameters, and flags override a recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgnet.train import TrainConfig, load_recipe
from mgnet.train.config import list_recipes
from test_data_vision import write_cifar  # tests/ is on sys.path (pytest prepend mode)

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mgnet" / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))


def test_the_four_recipes_exist():
    assert (
        {p.stem for p in RECIPES}
        == set(list_recipes())
        >= {
            "cifar10_mgnet_paper",
            "cifar100_mgnet_paper",
            "imagenet_mgnet_paper",
            "cifar10_fast",
        }
    )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_a_valid_train_config(path):
    values = load_recipe(path)
    cfg = TrainConfig.from_dict(values)  # unknown keys or wrong types raise here
    for key, value in values.items():
        assert getattr(cfg, key) == value
    assert isinstance(cfg.weight_decay, float) and isinstance(cfg.lr, float)


def test_paper_recipes_hold_the_published_hyper_parameters():
    for name, data in (("cifar10_mgnet_paper", "cifar10"), ("cifar100_mgnet_paper", "cifar100")):
        cfg = TrainConfig.from_dict(load_recipe(CONFIGS / f"{name}.yaml"))
        assert (cfg.model, cfg.data, cfg.optimizer) == ("mgnet_cifar", data, "sgd")
        assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (0.1, 0.9, 5e-4)
        assert (cfg.lr_scheduler, cfg.lr_step_size, cfg.lr_gamma) == ("step", 50, 0.1)
        assert (cfg.epochs, cfg.batch_size, cfg.augment) == (300, 128, True)
    imagenet = (CONFIGS / "imagenet_mgnet_paper.yaml").read_text()
    assert "ASSUMED" in imagenet  # its origin is stated, not implied


def test_flags_override_a_recipe_and_the_resolved_config_is_saved(tmp_path):
    from mgnet.cli import main

    write_cifar(tmp_path / "data", "cifar10", n_train=4, n_test=4)
    run = tmp_path / "run"
    argv = ["train", "-c", str(CONFIGS / "cifar10_mgnet_paper.yaml"), "--data-dir",
            str(tmp_path / "data"), "--epochs", "1", "--model", "mgnet[1,1]-8", "-b", "8",
            "-o", str(run), "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((run / "config.json").read_text())
    assert (saved["epochs"], saved["model"], saved["batch_size"]) == (1, "mgnet[1,1]-8", 8)
    assert (saved["lr"], saved["weight_decay"], saved["lr_step_size"]) == (0.1, 5e-4, 50)


def test_fast_recipe_has_the_short_schedule_ingredients():
    cfg = TrainConfig.from_dict(load_recipe(CONFIGS / "cifar10_fast.yaml"))
    assert cfg.data == "cifar10" and cfg.lr_scheduler in ("onecycle", "cosine")
    assert cfg.label_smoothing > 0 and cfg.model_ema and 0.99 <= cfg.model_ema_decay < 1
    assert (cfg.amp, cfg.channels_last, cfg.loader) == ("bf16", True, "device")
    assert "compile" in (CONFIGS / "cifar10_fast.yaml").read_text()
