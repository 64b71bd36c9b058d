"""Training: a plain-data config, one readable loop, atomic checkpoints, data parallel."""

from mgnet.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mgnet.train.config import TrainConfig, load_recipe
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
    "TrainConfig",
    "TrainingDiverged",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_recipe",
    "lr_multiplier",
    "resolve_device",
    "resume_config",
    "save_checkpoint",
    "test_checkpoint",
    "train",
]
