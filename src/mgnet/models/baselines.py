"""Baselines for fair comparison, written independently of `mgnet.core`.

* :class:`PreActResNet`: pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep
  Residual Networks"), CIFAR layout: 3x3 stem, four stages, BN-ReLU-conv-BN-ReLU-conv
  blocks with identity shortcuts (a 1x1 projection where the shape changes).
* :class:`PlainCNN`: conv-BN-ReLU blocks with max-pooling, no shortcuts.
* :func:`torchvision_resnet18`: torchvision's resnet18 (ImageNet stem) with the head
  interface of :class:`~mgnet.models.common.Classifier`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from mgnet.models.common import MAX_CHANNELS, Classifier, check_int, init_weights, linear_head

__all__ = ["PreActBlock", "PreActResNet", "PlainCNN", "torchvision_resnet18"]


class PreActBlock(nn.Module):
    """x + conv(ReLU(BN(conv(ReLU(BN(x)))))), with a projection shortcut when shapes change.

    The projection (a 1x1 convolution) is applied to the pre-activated ReLU(BN(x)), as in
    He et al. (2016); the identity shortcut is x itself."""

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


def _check_width_depth(width: int, stages: int, what: str) -> None:
    check_int("width", width, 1, MAX_CHANNELS >> max(stages - 1, 0))
    check_int(what, stages, 1, 16)


class PreActResNet(Classifier):
    """Pre-activation ResNet; ``blocks=(2, 2, 2, 2)`` and ``width=64`` is PreAct-ResNet-18.

    Stage s has ``blocks[s]`` blocks of ``width * 2**s`` channels (stride 2 from stage 2 on).
    ``init``: ``"default"`` (PyTorch's) or ``"kaiming"`` (see :func:`init_weights`)."""

    def __init__(
        self,
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: int = 64,
        num_classes: int = 10,
        in_channels: int = 3,
        init: str = "default",
    ) -> None:
        super().__init__()
        if isinstance(blocks, str) or not isinstance(blocks, Sequence):
            raise TypeError(f"blocks: expected a sequence of integers, got {blocks!r:.80}")
        _check_width_depth(width, len(blocks), "blocks: number of stages")
        for n in blocks:
            check_int("blocks: blocks per stage", n, 1, 1024)
        self.in_channels = check_int("in_channels", in_channels, 1, MAX_CHANNELS)
        self.blocks = tuple(blocks)
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
        self.num_features = c_in
        self.num_classes = num_classes
        self.fc = linear_head(c_in, num_classes)
        self.min_input_size = 2 ** (len(blocks) - 1)
        init_weights(self, init)

    def forward_features(self, x: Tensor) -> Tensor:
        out = self.stages(self.conv1(x))
        return F.relu(self.bn(out))

    def activation_numel(self, size: int) -> int:
        """Rough count of the activations one sample of side ``size`` keeps for backward."""
        width = self.conv1.out_channels
        total = width * size * size
        for s, n in enumerate(self.blocks):
            side = max(size // 2**s, 1)
            total += 7 * n * width * 2**s * side * side
        return total


class PlainCNN(Classifier):
    """``depth`` stages of two conv3x3-BN-ReLU layers, a 2x2 max-pool between stages."""

    def __init__(
        self,
        width: int = 32,
        depth: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
        init: str = "default",
    ) -> None:
        super().__init__()
        _check_width_depth(width, depth, "depth")
        self.in_channels = check_int("in_channels", in_channels, 1, MAX_CHANNELS)
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
        self.width, self.depth = width, depth
        self.num_features = c_in
        self.num_classes = num_classes
        self.fc = linear_head(c_in, num_classes)
        self.min_input_size = 2 ** (depth - 1)
        init_weights(self, init)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)

    def activation_numel(self, size: int) -> int:
        """Rough count of the activations one sample of side ``size`` keeps for backward."""
        return sum(6 * self.width * 2**s * max(size // 2**s, 1) ** 2 for s in range(self.depth))


@functools.cache
def _torchvision_resnet_class() -> type:
    from torchvision.models.resnet import BasicBlock, ResNet

    class TorchvisionResNet18(Classifier, ResNet):
        """torchvision's ``resnet18`` (same layers, state-dict keys and initialisation)."""

        def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
            check_int("in_channels", in_channels, 1, MAX_CHANNELS)
            check_int("num_classes", num_classes, low=0)
            ResNet.__init__(self, BasicBlock, [2, 2, 2, 2], num_classes=max(num_classes, 1))
            if in_channels != 3:
                self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.in_channels = in_channels
            self.num_features = self.fc.in_features
            self.num_classes = num_classes
            if num_classes == 0:
                self.fc = linear_head(self.num_features, 0)

        def forward_features(self, x: Tensor) -> Tensor:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    TorchvisionResNet18.__module__ = __name__
    TorchvisionResNet18.__qualname__ = "TorchvisionResNet18"
    return TorchvisionResNet18


def __getattr__(name: str) -> type:
    # ``TorchvisionResNet18`` is made on first use, so importing this module never imports
    # torchvision; this hook lets pickle and users find it under its module-level name.
    if name == "TorchvisionResNet18":
        return _torchvision_resnet_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def torchvision_resnet18(num_classes: int = 1000, in_channels: int = 3) -> nn.Module:
    """torchvision's resnet18 with ``forward_features``/``forward_head``/``reset_classifier``
    (torchvision is imported only when this is called)."""
    return _torchvision_resnet_class()(num_classes=num_classes, in_channels=in_channels)
