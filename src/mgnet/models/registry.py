"""Model registry: ``create_model(name, num_classes=..., in_channels=..., **overrides)``.

Every registered model's defaults live in one place, ``_MODELS``. A name may also be an
MgNet spec string (see :mod:`mgnet.models.spec`), e.g. ``create_model("mgnet[2,2]-32")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from mgnet.models.baselines import PlainCNN, PreActResNet
from mgnet.models.mgnet import MgNet
from mgnet.models.spec import MgNetConfig, SpecError, is_spec, parse_spec

__all__ = [
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "count_parameters",
]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: builder, defaults and a one-line description."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    num_classes: int = 10
    in_channels: int = 3
    input_size: int = 32
    defaults: dict = field(default_factory=dict)


_MODELS: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    if info.name in _MODELS:
        raise ValueError(f"name: model {info.name!r} is already registered")
    _MODELS[info.name] = info
    return info


def _mgnet_builder(spec: str) -> Callable[..., nn.Module]:
    base = parse_spec(spec)

    def build(num_classes: int, in_channels: int, **overrides) -> nn.Module:
        cfg = base
        if "spec" in overrides:
            cfg = parse_spec(overrides.pop("spec"))
        if overrides:
            fields = set(MgNetConfig.__dataclass_fields__)
            unknown = sorted(set(overrides) - fields)
            if unknown:
                raise ValueError(
                    f"overrides: unknown option(s) {', '.join(unknown)}; "
                    f"accepted: {', '.join(sorted(fields))}"
                )
            cfg = replace(
                cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
            )
        return MgNet(cfg, num_classes=num_classes, in_channels=in_channels)

    return build


def _preact(num_classes: int, in_channels: int, **kw) -> nn.Module:
    return PreActResNet(num_classes=num_classes, in_channels=in_channels, **kw)


def _plain(num_classes: int, in_channels: int, **kw) -> nn.Module:
    return PlainCNN(num_classes=num_classes, in_channels=in_channels, **kw)


def _tv_resnet18(num_classes: int, in_channels: int, **kw) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes, **kw)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    model.in_channels = in_channels
    return model


for _name, _spec, _desc, _nc, _ic, _size in [
    (
        "mgnet_cifar",
        "mgnet[2,2,2,2]-256-Bl",
        "MgNet[2,2,2,2]-256-B^l, the paper's CIFAR model",
        10,
        3,
        32,
    ),
    (
        "mgnet_cifar_wise_b",
        "mgnet[2,2,2,2]-256-Bli",
        "MgNet[2,2,2,2]-256-B^{l,i}, one B per smoothing step",
        10,
        3,
        32,
    ),
    (
        "mgnet_imagenet",
        "mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7",
        "MgNet[3,4,6,3]-[128,256,512,1024]-B^{l,i}, ImageNet stem",
        1000,
        3,
        224,
    ),
    (
        "mgnet_digits",
        "mgnet[2,2,2]-[32,64,128]-Bl",
        "small MgNet for 8x8 digits: 3 levels (8, 4, 2)",
        10,
        1,
        8,
    ),
    (
        "mgnet_mnist",
        "mgnet[2,2,2]-[32,64,128]-Bl",
        "small MgNet for 28x28 MNIST-like images: 3 levels (28, 14, 7)",
        10,
        1,
        28,
    ),
]:
    register_model(ModelInfo(_name, _mgnet_builder(_spec), _desc, _nc, _ic, _size, {"spec": _spec}))

register_model(
    ModelInfo(
        "preact_resnet18",
        _preact,
        "pre-activation ResNet-18 (He et al. 2016), CIFAR stem",
        10,
        3,
        32,
    )
)
register_model(
    ModelInfo(
        "preact_resnet_digits",
        _preact,
        "pre-activation ResNet [2,2,2] width 16, for 8x8 digits",
        10,
        1,
        8,
        {"blocks": (2, 2, 2), "width": 16},
    )
)
register_model(
    ModelInfo(
        "plain_cnn",
        _plain,
        "plain CNN: 3 stages of 2 conv-BN-ReLU, width 32",
        10,
        3,
        32,
        {"width": 32, "depth": 3},
    )
)
register_model(
    ModelInfo("resnet18", _tv_resnet18, "torchvision's resnet18 (ImageNet stem)", 1000, 3, 224)
)


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a spec string gets an ad-hoc entry."""
    if name in _MODELS:
        return _MODELS[name]
    if is_spec(name):
        cfg = parse_spec(name)
        size = (4 if cfg.stem == "imagenet" else 1) * 2 ** (cfg.depth - 1)
        return ModelInfo(
            name,
            _mgnet_builder(name),
            "MgNet from a spec string",
            10,
            3,
            max(size, 8),
            {"spec": name},
        )
    raise ValueError(
        f"model: unknown model {name!r}; accepted: {', '.join(list_models())}, "
        "or a spec string like 'mgnet[2,2,2,2]-256-Bl'"
    )


def create_model(
    name: str, num_classes: int | None = None, in_channels: int | None = None, **overrides
) -> nn.Module:
    """Build a registered model (or an MgNet spec string) with its defaults overridden."""
    info = model_info(name)
    kwargs = {**info.defaults, **overrides}
    try:
        return info.build(
            num_classes=info.num_classes if num_classes is None else num_classes,
            in_channels=info.in_channels if in_channels is None else in_channels,
            **kwargs,
        )
    except SpecError:
        raise
    except TypeError as e:
        raise ValueError(f"overrides: {name!r} does not accept {sorted(overrides)} ({e})") from None


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Parameters of ``model``, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# Constrained linear data-feature model (He, Chen, Xu 2019): sigma only as u >= 0 projection.
for _name, _spec, _desc, _nc, _ic, _size in [
    (
        "mgnet_cifar_constrained",
        "mgnet[2,2,2,2]-256-Bl-proj",
        "MgNet[2,2,2,2]-256-B^l, ReLU only as the projection onto u >= 0",
        10,
        3,
        32,
    ),
    (
        "mgnet_digits_constrained",
        "mgnet[2,2,2]-[32,64,128]-Bl-proj",
        "mgnet_digits with ReLU only as the projection onto u >= 0",
        10,
        1,
        8,
    ),
]:
    register_model(ModelInfo(_name, _mgnet_builder(_spec), _desc, _nc, _ic, _size, {"spec": _spec}))
