"""Classifiers and neural operators built on `mgnet.core`, baselines, and the model registry."""

from mgnet.models.baselines import PlainCNN, PreActBlock, PreActResNet
from mgnet.models.common import Classifier
from mgnet.models.mgnet import MgNet
from mgnet.models.registry import (
    CLASSIFIER,
    MODEL_KINDS,
    OPERATOR,
    ModelInfo,
    ModelTooLargeError,
    count_parameters,
    count_parameters_of,
    create_model,
    list_models,
    model_info,
    register_model,
)
from mgnet.models.spec import MgNetConfig, SpecError, format_spec, parse_spec

__all__ = [
    "CLASSIFIER",
    "MODEL_KINDS",
    "OPERATOR",
    "Classifier",
    "MgNet",
    "MgNetConfig",
    "ModelInfo",
    "ModelTooLargeError",
    "PlainCNN",
    "PreActBlock",
    "PreActResNet",
    "SpecError",
    "count_parameters",
    "count_parameters_of",
    "create_model",
    "format_spec",
    "list_models",
    "model_info",
    "parse_spec",
    "register_model",
]
