"""Classifiers built on `mgnet.core`, baselines, and the model registry."""

from mgnet.models.baselines import PlainCNN, PreActBlock, PreActResNet
from mgnet.models.mgnet import MgNet
from mgnet.models.registry import (
    ModelInfo,
    count_parameters,
    create_model,
    list_models,
    model_info,
    register_model,
)
from mgnet.models.spec import MgNetConfig, SpecError, format_spec, parse_spec

__all__ = [
    "MgNet",
    "MgNetConfig",
    "ModelInfo",
    "PlainCNN",
    "PreActBlock",
    "PreActResNet",
    "SpecError",
    "count_parameters",
    "create_model",
    "format_spec",
    "list_models",
    "model_info",
    "parse_spec",
    "register_model",
]
