"""MgNet classifiers: the cycle of `mgnet.core` with learned convolutions, BN and ReLU.

The forward pass is the authors' network:

* f_in (stem):  f^1 = ReLU(BN(conv3x3(x))), u^{1,0} = 0;
* smoothing:    u <- u + ReLU(BN(B^{l,i} * ReLU(BN(f - A^l * u))));
* restriction:  u' = ReLU(BN(Pi * u)), f' = ReLU(BN(R * (f - A^l u))) + A^{l+1} * u';
* head:         global average pool of u^J, then a linear layer.

Convolutions have no bias. BatchNorm is per step even where A or B is shared.
Initialisation (``init``): ``"default"`` is PyTorch's own initialisation of every layer,
which is what the authors' code uses (it sets no init of its own); ``"kaiming"``
(He-normal fan-out convolutions, about 2.45x the default's scale) is available by keyword.

``sigma="project"`` (spec token ``proj``) is the constrained data-feature model (He, Chen,
Xu 2019): BN stays, ReLU stays only where it keeps a feature nonnegative, i.e. after Pi and
as the projection u <- ReLU(u + BN(B * BN(f - A u))); f is unconstrained data.
"""

from __future__ import annotations

from torch import Tensor, nn

from mgnet.core import CycleRecord, Level, MgCycle, Step, Transfer
from mgnet.models.common import (
    MAX_CHANNELS,
    Classifier,
    check_int,
    check_layout,
    init_weights,
    linear_head,
)
from mgnet.models.spec import MgNetConfig, format_spec

__all__ = ["MgNet"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}


class MgNet(Classifier):
    """An MgNet classifier: ``f_in`` stem, the down-sweep of :class:`MgCycle`, a linear head.

    Args:
        cfg: the architecture (see :class:`mgnet.models.spec.MgNetConfig`).
        num_classes: outputs of the linear head (0: no head, the model returns the
            average-pooled u^J).
        in_channels: channels of the input image.
        init: ``"default"`` (PyTorch's, as the authors) or ``"kaiming"``.
    """

    def __init__(
        self,
        cfg: MgNetConfig,
        num_classes: int = 10,
        in_channels: int = 3,
        init: str = "default",
    ) -> None:
        super().__init__()
        if not isinstance(cfg, MgNetConfig):
            raise TypeError(f"cfg: expected an MgNetConfig, got {type(cfg).__name__}")
        check_int("num_classes", num_classes, low=0)
        check_int("in_channels", in_channels, 1, MAX_CHANNELS)
        self.cfg = cfg
        self.num_classes = num_classes
        self.in_channels = in_channels
        d, cu, cf = cfg.dim, cfg.channels_u, cfg.channels_f
        conv, bn = _CONV[d], _BN[d]
        linear = cfg.sigma == "linear"
        project = cfg.sigma == "project"  # constrained model: ReLU only where u >= 0 needs it

        def sigma(c: int, projects_u: bool = True) -> nn.Module | None:
            if linear:
                return None
            if project and not projects_u:
                return bn(c)
            return nn.Sequential(bn(c), nn.ReLU(inplace=True))

        stem_sigma = [] if linear else [bn(cf[0])] + ([] if project else [nn.ReLU(inplace=True)])

        def conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
            return conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)

        if cfg.stem == "imagenet":
            stem = [conv(in_channels, cf[0], 7, stride=2, padding=3, bias=False)]
            stem += stem_sigma
            stem.append(_MAXPOOL[d](3, stride=2, padding=1))
            self.reduction = 4
        else:
            stem = [conv3(in_channels, cf[0])]
            stem += stem_sigma
            self.reduction = 1
        levels = []
        for l, nu in enumerate(cfg.nu):
            A_level = conv3(cu[l], cf[l])
            B_level = conv3(cf[l], cu[l])
            steps = []
            for i in range(nu):
                A = A_level if cfg.share_A == "level" or i == 0 else conv3(cu[l], cf[l])
                B = B_level if cfg.share_B == "level" or i == 0 else conv3(cf[l], cu[l])
                steps.append(
                    Step(
                        A,
                        B,
                        sigma_in=sigma(cf[l], projects_u=False),
                        sigma_out=sigma(cu[l], projects_u=False),
                        project=nn.ReLU() if project else None,
                    )
                )
            levels.append(Level(A_level, steps))
        transfers = [
            Transfer(
                R=conv3(cf[l], cf[l + 1], stride=2),
                Pi=conv3(cu[l], cu[l + 1], stride=2),
                sigma_Pi=sigma(cu[l + 1]),
                sigma_R=sigma(cf[l + 1], projects_u=False),
            )
            for l in range(cfg.depth - 1)
        ]
        self.cycle = MgCycle(levels, transfers, f_in=nn.Sequential(*stem), shape="down")
        self.num_features = cu[-1]
        self.fc = linear_head(cu[-1], num_classes)
        init_weights(self, init)

    @property
    def spec(self) -> str:
        """The model in the paper's notation, e.g. ``mgnet[2,2,2,2]-256-Bl``."""
        return format_spec(self.cfg)

    @property
    def min_input_size(self) -> int:
        """Smallest spatial side that keeps at least one pixel on the coarsest of J levels."""
        return self.reduction * 2 ** (self.cfg.depth - 1)

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line ValueError if ``x`` cannot go through this network."""
        check_layout(x, self.in_channels, ["size"] * self.cfg.dim)
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError(
                f"input: spatial size {tuple(x.shape[2:])} is too small for "
                f"{self.cfg.depth} levels; need at least {self.min_input_size} "
                "per side"
            )

    def features(self, x: Tensor, record: CycleRecord | None = None) -> Tensor:
        """u^J, the coarsest feature of the down-sweep (``record``: a CycleRecord)."""
        self.check_input(x)
        return self.cycle(x, record=record)

    def forward_features(self, x: Tensor) -> Tensor:
        """u^J (the head average-pools it and applies ``fc``)."""
        return self.features(x)

    def activation_numel(self, size: int) -> int:
        """Rough count of the activations one sample of side ``size`` keeps for backward:
        about 4 (c_u + c_f) values per grid point for each smoothing step and transfer."""
        cfg, d = self.cfg, self.cfg.dim
        side = max(size // self.reduction, 1)
        total = 3 * cfg.channels_f[0] * max(size // (self.reduction // 2 or 1), 1) ** d  # stem
        for l, nu in enumerate(cfg.nu):
            n = max(side // 2**l, 1)
            total += 4 * (nu + 1) * (cfg.channels_u[l] + cfg.channels_f[l]) * n**d
        return total
