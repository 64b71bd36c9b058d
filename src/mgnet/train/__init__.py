"""Training: a plain-data config, one readable loop, atomic checkpoints, data parallel.

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
    from mgnet.train.evaluation import EvalResult, evaluate_checkpoint, load_trained_model
    from mgnet.train.loop import (
        TrainingDiverged,
        build_model,
        evaluate,
        lr_multiplier,
        resolve_device,
        resume_config,
        test_checkpoint,
        train,
    )

__all__ = [
    "CheckpointError",
    "EvalResult",
    "ModelEma",
    "TrainConfig",
    "TrainingDiverged",
    "build_model",
    "evaluate",
    "evaluate_checkpoint",
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
        "load_trained_model": "mgnet.train.evaluation",
        **dict.fromkeys(
            [
                "TrainingDiverged",
                "build_model",
                "evaluate",
                "lr_multiplier",
                "resolve_device",
                "resume_config",
                "test_checkpoint",
                "train",
            ],
            "mgnet.train.loop",
        ),
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
