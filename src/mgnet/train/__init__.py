"""Training: a plain-data config, a loop in named phases, atomic checkpoints, one loader
from a checkpoint back to its model, data parallel."""

from mgnet.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mgnet.train.config import TrainConfig, load_recipe
from mgnet.train.ema import ModelEma
from mgnet.train.evaluation import EvalResult, evaluate_checkpoint
from mgnet.train.loading import TrainedModel, build_model, evaluated_weights, load_trained_model
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
