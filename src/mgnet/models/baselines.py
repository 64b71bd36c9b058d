"""Baselines for fair comparison, written independently of `mgnet.core`.

* :class:`PreActResNet`: pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep
  Residual Networks"), CIFAR layout: 3x3 stem, four stages, BN-ReLU-conv-BN-ReLU-conv
  blocks with identity shortcuts (a 1x1 projection where the shape changes).
* :class:`PlainCNN`: conv-BN-ReLU blocks with max-pooling, no shortcuts.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PreActBlock", "PreActResNet", "PlainCNN"]


class PreActBlock(nn.Module):
    """x + conv(ReLU(BN(conv(ReLU(BN(x)))))), with a projection shortcut when shapes change."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet; ``blocks=(2, 2, 2, 2)`` and ``width=64`` is PreAct-ResNet-18."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        stages, c_in = [], width
        for s, n in enumerate(blocks):
            c_out = width * 2**s
            layers = [PreActBlock(c_in, c_out, stride=1 if s == 0 else 2)]
            layers += [PreActBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        self.min_input_size = 2 ** (len(blocks) - 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.stages(self.conv1(x))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class PlainCNN(nn.Module):
    """``depth`` stages of two conv3x3-BN-ReLU layers, a 2x2 max-pool between stages."""

    def __init__(
        self, width: int = 32, depth: int = 3, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        layers, c_in = [], in_channels
        for s in range(depth):
            c_out = width * 2**s
            if s > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)
        self.min_input_size = 2 ** (depth - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))
