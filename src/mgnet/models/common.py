"""What the registry's models share: timm's classifier interface, the weight init, checks.

* :class:`Classifier`: the head interface timm users expect. A classifier defines
  ``forward_features(x)`` (the last feature map, before pooling) and a linear head ``fc``;
  this base adds ``forward_head(x, pre_logits=False)`` (global *average* pooling, then
  ``fc``), ``forward``, ``get_classifier``, ``reset_classifier(num_classes)`` and
  ``num_features``. ``num_classes=0`` leaves the head out (``fc`` is the identity), so
  the model returns pooled features, as in timm.
* :func:`init_weights`: ``init="default"`` keeps PyTorch's own initialisation of every
  layer (what the MgNet authors' code uses: no custom init); ``init="kaiming"`` is
  He-normal fan-out for convolutions and BatchNorm at (1, 0), as torchvision's ResNet.
* :func:`check_int`: one-line TypeError/ValueError for counts (channels, levels, steps).
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "INITS",
    "MAX_CHANNELS",
    "Classifier",
    "available_memory",
    "brief",
    "check_int",
    "check_layout",
    "init_weights",
    "linear_head",
]

INITS = ("default", "kaiming")

# Beyond these a model is absurd on any machine (and a channel count past 2^20 makes one
# 3x3 convolution's size overflow before any memory check could run).
MAX_CHANNELS = 2**20


def brief(value: object, limit: int = 80) -> str:
    """repr(value), cut to ``limit`` characters: an error never echoes a whole huge input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in [low, high]; a one-line TypeError/ValueError naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got a bool ({value!r})")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}") from None
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name}: must be an integer {bound}, got {v}")
    return v


def check_layout(x: Tensor, in_channels: int, axes: Sequence[str]) -> None:
    """One-line ValueError unless ``x`` is (batch, in_channels, *axes): the right rank and
    the model's number of input channels."""
    if x.dim() != len(axes) + 2:
        raise ValueError(
            f"input: expected a (batch, {in_channels}, {', '.join(axes)}) tensor, got shape "
            f"{tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"in_channels: the model takes {in_channels} input channels, the input has "
            f"{x.shape[1]} (shape {tuple(x.shape)})"
        )


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (None where it cannot be told):
    free CUDA memory, or the operating system's available RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def init_weights(model: nn.Module, init: str = "default") -> None:
    """Initialise ``model`` in place: ``"default"`` leaves PyTorch's initialisation as built
    (convolutions and linear layers U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BatchNorm (1, 0));
    ``"kaiming"`` draws convolution weights from N(0, 2 / fan_out), about sqrt(6) = 2.45
    times the default's scale for a square 3x3 convolution."""
    if init not in INITS:
        raise ValueError(f"init: {init!r} is not one of {', '.join(INITS)}")
    if init == "default":
        return
    for m in model.modules():
        if getattr(getattr(m, "weight", None), "is_meta", False):
            continue  # no values to draw (a count on the meta device, which torch serves
            # with Python reference kernels whose first call imports torch._dynamo: ~1 s)
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def linear_head(num_features: int, num_classes: int) -> nn.Module:
    """The classifier ``fc``: a linear layer, or the identity for ``num_classes=0``."""
    check_int("num_classes", num_classes, low=0)
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()


class Classifier(nn.Module):
    """Base of the registry's classifiers: the interface of timm's models.

    Subclasses set ``num_features`` (channels of the last feature map), ``num_classes``,
    ``in_channels`` and ``fc`` (via :func:`linear_head`), and define ``forward_features``.
    """

    num_features: int
    num_classes: int
    in_channels: int
    fc: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map, (batch, num_features, *space), before pooling."""
        raise NotImplementedError

    def pool(self, x: Tensor) -> Tensor:
        """Global average pooling: (batch, C, *space) -> (batch, C)."""
        return x.flatten(2).mean(2)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pooling of the feature map, then ``fc`` (unless ``pre_logits``)."""
        x = self.pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised head for ``num_classes`` (0: no head)."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"global_pool: only 'avg' is supported, got {global_pool!r}")
        fc = linear_head(self.num_features, num_classes)
        ref = next(self.parameters(), None)
        if ref is not None:
            fc = fc.to(device=ref.device, dtype=ref.dtype)
        self.fc = fc
        self.num_classes = num_classes
