"""An exponential moving average (EMA) of a model's weights.

After every optimizer step the averaged parameters follow the trained ones,

    theta_ema <- d * theta_ema + (1 - d) * theta,    d = min(decay, (1 + n) / (10 + n)),

where ``n`` counts the updates so far: the warm-up ``(1 + n) / (10 + n)`` lets the
average forget the random initial weights within the first steps of a short run, and
``decay`` rules afterwards (0.999 averages over roughly the last 1,000 steps). Buffers
(BatchNorm running statistics and counters) are copied, not averaged: they describe the
activations of the trained weights, which the averaged weights track.

The average is a full copy of the model in evaluation mode, used for validation, model
selection and test when a run asks for it (``model_ema``). Its state (weights and the
update count) goes into the checkpoint, so a resumed run continues the same average.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma:
    """The EMA of ``model``'s parameters (``decay`` in (0, 1)); see the module notes."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay: {decay!r} is not accepted; expected a number in (0, 1)")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The factor ``d`` the next :meth:`update` uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model`` (the same architecture, not a DDP wrapper):
        a few multi-tensor (``foreach``) kernels for the whole model, not one per tensor."""
        d = self.current_decay()
        avg_float, new_float, avg_rest, new_rest = [], [], [], []
        pairs = zip(self.module.parameters(), model.parameters(), strict=True)
        for avg, p in pairs:
            if avg.dtype.is_floating_point:
                avg_float.append(avg)
                new_float.append(p.detach())
            else:
                avg_rest.append(avg)
                new_rest.append(p.detach())
        for avg, b in zip(self.module.buffers(), model.buffers(), strict=True):
            avg_rest.append(avg)
            new_rest.append(b)
        if avg_float:
            torch._foreach_lerp_(avg_float, new_float, 1.0 - d)
        if avg_rest:
            torch._foreach_copy_(avg_rest, new_rest)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``model`` (the averaged weights and buffers), ``updates`` and ``decay``."""
        return {"model": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
