"""From a file back to a model: the one path every command takes.

:func:`load_trained_model` is used by ``mgnet train --test-only``, ``mgnet eval``,
``mgnet export`` and ``mgnet inspect``; :func:`evaluated_weights` is the rule all of them
(and the final test of a run) follow for which weights of a checkpoint are "the model":

* ``best.pt`` holds the weights that were validated, which with ``model_ema`` are the
  weight average;
* ``checkpoint.pt`` holds both the trained weights and, with ``model_ema``, the average;
  the average is what the run evaluates, so it is what is loaded.

A checkpoint of this package carries its :class:`~mgnet.train.config.TrainConfig`, and the
model is rebuilt exactly as the run built it (model name, ``model_args``, the data's
channels, the classes the run was built for). For ``mgnet inspect`` a file that is not a
checkpoint of this package is accepted too, given the model's name: a bare state dict,
or a dict holding ``model`` (a state dict) and ``config`` (at least the model name); the
classes and input channels are then read from the weights.

Every unreadable, foreign or mismatched file is a one-line
:class:`~mgnet.train.checkpoint.CheckpointError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mgnet.data import DatasetInfo, dataset_info
from mgnet.errors import first_line, quote
from mgnet.models import create_model
from mgnet.train.checkpoint import CheckpointError, load_checkpoint
from mgnet.train.config import TrainConfig
from mgnet.train.task import check_model_for_data, wrap_model

__all__ = ["TrainedModel", "build_model", "evaluated_weights", "load_trained_model"]


def build_model(cfg: TrainConfig, info: DatasetInfo, num_classes: int | None = None) -> nn.Module:
    """The model of ``cfg`` for dataset ``info`` (``num_classes``: the classes actually
    found, where they depend on the files); a mismatch is a one-line ValueError.

    For operator data (``info.is_operator``) the operator comes between its pointwise
    normalisers (:func:`~mgnet.train.task.wrap_model`), not yet fitted; the trainer fits
    them on the training split, a checkpoint brings its own."""
    if cfg.in_channels is not None and cfg.in_channels != info.in_channels:
        raise ValueError(
            f"in_channels: {cfg.in_channels} does not match data {info.name!r}, "
            f"which has {info.in_channels} channel(s); accepted: "
            f"{info.in_channels} (or leave it out)"
        )
    if check_model_for_data(cfg.model, info.name):
        net = create_model(cfg.model, in_channels=info.in_channels, **cfg.model_args)
        return wrap_model(net, is_operator=True)
    model = create_model(
        cfg.model,
        num_classes=num_classes or info.num_classes,
        in_channels=info.in_channels,
        **cfg.model_args,
    )
    need = getattr(model, "min_input_size", 1)
    if need > info.input_size:
        levels = int(math.log2(info.input_size)) + 1
        raise ValueError(
            f"model: {quote(cfg.model)} needs inputs of at least {need}x{need} for its "
            f"levels, data {info.name!r} is {info.input_size}x{info.input_size}; "
            f"accepted: a model with at most {levels} levels (stages) for this data"
        )
    return model


def evaluated_weights(state: dict[str, Any]) -> dict[str, Tensor]:
    """The weights of a checkpoint that the run validates and tests: the weight average
    of a ``checkpoint.pt`` when the run kept one, its ``model`` entry otherwise."""
    ema = state.get("model_ema")
    if isinstance(ema, dict) and isinstance(ema.get("model"), dict):
        return ema["model"]
    return state["model"]


@dataclass
class TrainedModel:
    """A model rebuilt from a file, in evaluation mode on the CPU.

    ``config`` and ``info`` (the run's config and the data it was trained on) are None
    for a file that is not a checkpoint of this package; ``input_shape`` is then None
    too, and ``config_dict`` is whatever ``config`` mapping the file holds (or ``{}``).
    ``epoch`` is the epochs the weights had seen (None when the file does not say).
    """

    model: nn.Module
    path: Path
    config: TrainConfig | None
    info: DatasetInfo | None
    num_classes: int | None
    epoch: int | None
    config_dict: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """``(1, C, S, S)`` of the data the model was trained on (an operator: the grid
        of its normalisers' statistics)."""
        if self.info is None:
            return None
        side = getattr(self.model, "resolution", None) or self.info.input_size
        return (1, self.info.in_channels, side, side)


def _num_classes(state: dict, weights: dict) -> int | None:
    if isinstance(state.get("num_classes"), int):
        return state["num_classes"]
    head = weights.get("fc.weight")
    return int(head.shape[0]) if isinstance(head, Tensor) else None


def _input_channels(weights: dict) -> int | None:
    """The input channels of the first convolution of a state dict (MgNet's stem is
    ``cycle.f_in.0``; other models register their stem first)."""
    stem = weights.get("cycle.f_in.0.weight")
    if isinstance(stem, Tensor):
        return int(stem.shape[1])
    for value in weights.values():
        if isinstance(value, Tensor) and value.dim() >= 3 and value.is_floating_point():
            return int(value.shape[1])
    return None


def _fit(model: nn.Module, weights: dict, path: Path, name: str) -> nn.Module:
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint: weights of {quote(str(path))} do not fit model {quote(name)} "
            f"({first_line(e)})"
        ) from None
    return model.eval()


def _run_config(path: Path, state: dict) -> TrainConfig:
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} lacks the 'model' weights or the 'config' of a run"
        )
    try:
        return TrainConfig.from_dict(state["config"])
    except ValueError as e:
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} holds an invalid config ({str(e)[:200]})"
        ) from None


def load_trained_model(
    checkpoint: str | Path, model: str | None = None, map_location: str | torch.device = "cpu"
) -> TrainedModel:
    """The trained model of ``checkpoint`` (``best.pt`` or ``checkpoint.pt`` of ``mgnet
    train``), rebuilt as the run built it, in evaluation mode on the CPU.

    ``model`` (a registry name or spec string) overrides the checkpoint's model, built
    without the run's ``model_args``; it is required for a file that is not a checkpoint
    of this package (a bare state dict). ``map_location`` is where the file is read to.
    """
    path = Path(checkpoint)
    state = load_checkpoint(path, map_location=map_location, strict=False)
    if state.get("format") is not None:  # a checkpoint of this package
        cfg = _run_config(path, state)
        info = dataset_info(cfg.data)
        weights = evaluated_weights(state)
        num_classes = _num_classes(state, weights)
        if model is None:
            net = build_model(cfg, info, num_classes)
        else:
            net = create_model(model, num_classes=num_classes, in_channels=info.in_channels)
        epoch = state.get("epoch") if isinstance(state.get("epoch"), int) else None
        net = _fit(net, weights, path, model or cfg.model)
        return TrainedModel(net, path, cfg, info, num_classes, epoch, cfg.to_dict())
    # not written by `mgnet train`: a bare state dict, or {"model": ..., "config": ...}
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    weights = state["model"] if isinstance(state.get("model"), dict) else state
    name = model or config.get("model")
    if not isinstance(name, str):
        what = "names no model (no config)" if weights is not state else "is a bare state dict"
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} {what}; pass the model name to load it (it is "
            "not a checkpoint of this package)"
        )
    if not all(isinstance(v, Tensor) for v in weights.values()):
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} holds neither a state dict nor a checkpoint "
            "of this package"
        )
    num_classes = _num_classes(state, weights)
    kwargs = dict(config.get("model_args") or {}) if model is None else {}
    net = create_model(
        name, num_classes=num_classes, in_channels=_input_channels(weights), **kwargs
    )
    net = _fit(net, weights, path, name)
    return TrainedModel(net, path, None, None, num_classes, None, dict(config))
