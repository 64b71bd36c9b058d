"""Training: a plain-data config, one readable loop, atomic checkpoints, data parallel."""

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
