"""Training: a plain-data config, a loop in named phases, atomic checkpoints, one loader
from a checkpoint back to its model, data parallel.

The names below are imported on first use (``mgnet.train.config`` needs no torch, and the
command line reads its defaults and choices for ``--help``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mgnet._lazy import lazy_attributes

if TYPE_CHECKING:
    from mgnet.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from mgnet.train.config import TrainConfig, load_recipe
    from mgnet.train.ema import ModelEma
    from mgnet.train.evaluation import EvalResult, evaluate_checkpoint
    from mgnet.train.loading import (
        TrainedModel,
        build_model,
        evaluated_weights,
        load_trained_model,
    )
    from mgnet.train.loop import (
        Trainer,
        TrainingDiverged,
        lr_multiplier,
        resolve_device,
        resume_config,
        test_checkpoint,
        train,
    )
    from mgnet.train.task import ClassificationTask, evaluate

__all__ = [
    "CheckpointError",
    "ClassificationTask",
    "EvalResult",
    "ModelEma",
    "TrainConfig",
    "TrainedModel",
    "Trainer",
    "TrainingDiverged",
    "build_model",
    "evaluate",
    "evaluate_checkpoint",
    "evaluated_weights",
    "load_trained_model",
    "load_checkpoint",
    "load_recipe",
    "lr_multiplier",
    "resolve_device",
    "resume_config",
    "save_checkpoint",
    "test_checkpoint",
    "train",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "CheckpointError": "mgnet.train.checkpoint",
        "load_checkpoint": "mgnet.train.checkpoint",
        "save_checkpoint": "mgnet.train.checkpoint",
        "TrainConfig": "mgnet.train.config",
        "load_recipe": "mgnet.train.config",
        "ModelEma": "mgnet.train.ema",
        "EvalResult": "mgnet.train.evaluation",
        "evaluate_checkpoint": "mgnet.train.evaluation",
        **dict.fromkeys(
            ["TrainedModel", "build_model", "evaluated_weights", "load_trained_model"],
            "mgnet.train.loading",
        ),
        **dict.fromkeys(
            [
                "Trainer",
                "TrainingDiverged",
                "lr_multiplier",
                "resolve_device",
                "resume_config",
                "test_checkpoint",
                "train",
            ],
            "mgnet.train.loop",
        ),
        "ClassificationTask": "mgnet.train.task",
        "evaluate": "mgnet.train.task",
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
