"""Model registry, with timm's interface: ``create_model(name, pretrained=False, num_classes=...,
in_chans=..., **overrides)`` and ``list_models("mgnet_*")``.

Every registered model's entry, keyword-built, lives in one place: :data:`_ENTRIES` at the end
of this module. A name may also be an MgNet spec string (see :mod:`mgnet.models.spec`), e.g.
``create_model("mgnet[2,2]-32")``. Two kinds of model are registered:

* ``"classifier"``: (batch, in_channels, size, size) images to (batch, num_classes) logits;
  each has timm's ``forward_features``, ``forward_head``, ``reset_classifier`` and
  ``num_features`` (:class:`mgnet.models.common.Classifier`);
* ``"operator"``: neural operators from a (batch, in_channels, s, s) field to a
  (batch, out_channels, s, s) field (:mod:`mgnet.models.operators`); they have no classes.

Before a model is allocated, it is built on the meta device (no memory) and its parameters
plus a rough estimate of one sample's activations are checked against the memory available,
so that a spec string with a huge channel count fails at once, in one line.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from mgnet.models.baselines import PlainCNN, PreActResNet, torchvision_resnet18
from mgnet.models.common import available_memory, brief, check_int
from mgnet.models.mgnet import MgNet
from mgnet.models.operators import FNO2d, MgNO, UNet
from mgnet.models.spec import MgNetConfig, is_spec, parse_spec

__all__ = [
    "CLASSIFIER",
    "MODEL_KINDS",
    "OPERATOR",
    "ModelInfo",
    "ModelTooLargeError",
    "count_parameters",
    "count_parameters_of",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]

CLASSIFIER, OPERATOR = "classifier", "operator"
MODEL_KINDS = (CLASSIFIER, OPERATOR)


class ModelTooLargeError(ValueError):
    """A model whose parameters and activations cannot fit in the memory available."""


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """A registered model: its builder, what it takes and gives, its defaults, a description.

    ``build`` is called with ``num_classes`` and ``in_channels`` (classifiers) or
    ``in_channels`` and ``out_channels`` (operators), plus ``defaults`` and the caller's
    overrides. ``input_size`` is the side of the input the model is made for. ``spec`` is
    the MgNet spec string of an MgNet entry (None otherwise).
    """

    name: str
    build: Callable[..., nn.Module]
    description: str
    kind: str = CLASSIFIER
    in_channels: int = 3
    num_classes: int | None = 10
    out_channels: int | None = None
    input_size: int = 32
    defaults: dict = field(default_factory=dict)
    spec: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {', '.join(MODEL_KINDS)}")
        if (self.kind == CLASSIFIER) != (self.num_classes is not None):
            raise ValueError(
                f"num_classes: a {self.kind} entry ({self.name}) gets "
                + ("a number of classes" if self.kind == CLASSIFIER else "None")
            )
        if (self.kind == OPERATOR) != (self.out_channels is not None):
            raise ValueError(
                f"out_channels: a {self.kind} entry ({self.name}) gets "
                + ("a number of output channels" if self.kind == OPERATOR else "None")
            )

    @property
    def is_operator(self) -> bool:
        return self.kind == OPERATOR


_MODELS: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    """Add ``info`` to the registry (a name can be registered once)."""
    if info.name in _MODELS:
        raise ValueError(f"name: model {info.name!r} is already registered")
    _MODELS[info.name] = info
    return info


def list_models(
    filter: str | Sequence[str] = "",
    kind: str | None = None,
    exclude_filters: str | Sequence[str] = "",
) -> list[str]:
    """Names of the registered models, sorted, as timm's ``list_models``: ``filter`` and
    ``exclude_filters`` are shell wildcards (``"mgnet_*"``, ``["*cifar*", "*digits"]``);
    ``kind`` keeps only ``"classifier"`` or ``"operator"`` entries."""
    if kind is not None and kind not in MODEL_KINDS:
        raise ValueError(f"kind: {brief(kind)} is not one of {', '.join(MODEL_KINDS)}")

    def patterns(value: str | Sequence[str], what: str) -> list[str]:
        items = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(p, str) for p in items):
            raise TypeError(f"{what}: expected a string or a list of strings, got {brief(value)}")
        return [p.lower() for p in items if p]

    include, exclude = patterns(filter, "filter"), patterns(exclude_filters, "exclude_filters")
    return [
        name
        for name in sorted(_MODELS)
        if (kind is None or _MODELS[name].kind == kind)
        and (not include or any(fnmatch.fnmatchcase(name, p) for p in include))
        and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    ]


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"model: expected a model name or an MgNet spec string, got {type(name).__name__} "
            f"({brief(name)})"
        )
    return name


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; a spec string gets an ad-hoc classifier entry."""
    name = _check_name(name)
    if name in _MODELS:
        return _MODELS[name]
    if is_spec(name):
        cfg = parse_spec(name)
        size = (4 if cfg.stem == "imagenet" else 1) * 2 ** (cfg.depth - 1)
        return ModelInfo(
            name=name,
            build=_mgnet_builder(name),
            description="MgNet from a spec string",
            input_size=max(size, 8),
            spec=name,
        )
    raise ValueError(
        f"model: unknown model {brief(name)}; accepted: {', '.join(list_models())}, "
        "or a spec string like 'mgnet[2,2,2,2]-256-Bl'"
    )


def _default_device() -> torch.device:
    """Where new tensors go now (honours ``with torch.device(...)``)."""
    return torch.empty(()).device


def create_model(
    name: str,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    *,
    in_channels: int | None = None,
    out_channels: int | None = None,
    **overrides,
) -> nn.Module:
    """Build a registered model (or an MgNet spec string) with its defaults overridden.

    As timm's ``create_model``: ``pretrained=True`` is refused (no weights are published),
    ``in_chans`` is the number of input channels (``in_channels`` is the same argument).
    Classifiers take ``num_classes`` (0: no head); operators take ``out_channels`` instead.
    Inside ``with torch.device("meta"):`` nothing is allocated (use it to count
    parameters, see :func:`count_parameters_of`); elsewhere a model that cannot fit in the
    memory available is refused before allocation (:class:`ModelTooLargeError`).
    """
    info = model_info(name)
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained: expected True or False, got {brief(pretrained)}")
    if pretrained:
        raise ValueError(
            f"pretrained: no pretrained weights are published for {brief(name)}; use "
            "pretrained=False and train it (mgnet train) or load a checkpoint"
        )
    if in_chans is not None and in_channels is not None and in_chans != in_channels:
        raise ValueError(
            f"in_chans: {brief(in_chans)} and in_channels: {brief(in_channels)} are the "
            "same argument; give one"
        )
    chans = in_channels if in_chans is None else in_chans
    args = {"in_channels": info.in_channels if chans is None else chans}
    check_int("in_channels", args["in_channels"])
    if info.kind == CLASSIFIER:
        if out_channels is not None:
            raise ValueError(
                f"out_channels: {brief(name)} is a classifier; it takes num_classes, not "
                "out_channels"
            )
        args["num_classes"] = info.num_classes if num_classes is None else num_classes
        check_int("num_classes", args["num_classes"], low=0)
    else:
        if num_classes is not None:
            raise ValueError(
                f"num_classes: {brief(name)} is a neural operator (a field to a field); it has no "
                "classes; accepted: in_channels, out_channels"
            )
        args["out_channels"] = info.out_channels if out_channels is None else out_channels
        check_int("out_channels", args["out_channels"])
    kwargs = {**info.defaults, **overrides}
    _check_overrides(info, kwargs)
    if _default_device().type != "meta":
        with torch.device("meta"):
            probe = info.build(**args, **kwargs)
        _check_memory(name, probe, info.input_size)
        del probe
    return info.build(**args, **kwargs)


def _check_overrides(info: ModelInfo, kwargs: dict) -> None:
    params = inspect.signature(info.build).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # the builder checks its own keywords
    accepted = sorted(set(params) - {"num_classes", "in_channels", "out_channels"})
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"overrides: {info.name!r} does not accept {', '.join(k[:40] for k in unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )


def _check_memory(name: str, probe: nn.Module, input_size: int) -> None:
    """Refuse (one line) a model whose parameters, buffers and one sample's activations at
    ``input_size`` exceed the memory available where it would be allocated."""
    params = sum(t.numel() for t in [*probe.parameters(), *probe.buffers()])
    estimate = getattr(probe, "activation_numel", None)
    activations = estimate(input_size) if callable(estimate) else 0
    device = _default_device()
    need = (params + activations) * torch.empty((), device="meta").element_size()
    available = available_memory(device)
    if available is not None and need > available:
        raise ModelTooLargeError(
            f"model: {brief(name)} needs about {need / 2**30:.1f} GiB on {device.type} "
            f"({params:,} parameters and the activations of one {input_size}x{input_size} "
            f"input), more than the {available / 2**30:.1f} GiB available; accepted: a model "
            "with fewer channels or levels"
        )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Parameters of ``model``, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters_of(name: str, **kwargs) -> int:
    """Parameters of ``create_model(name, **kwargs)``, counted on the meta device: nothing is
    allocated, so even the 71M-parameter ImageNet model is counted in milliseconds."""
    with torch.device("meta"):
        return count_parameters(create_model(name, **kwargs))


# ----------------------------------------------------------------------------- builders
def _mgnet_builder(spec: str) -> Callable[..., nn.Module]:
    base = parse_spec(spec)

    def build(num_classes: int, in_channels: int, init: str = "default", **overrides) -> MgNet:
        cfg = base
        if "spec" in overrides:
            cfg = parse_spec(overrides.pop("spec"))
        if overrides:
            fields = set(MgNetConfig.__dataclass_fields__)
            unknown = sorted(set(overrides) - fields)
            if unknown:
                raise ValueError(
                    f"overrides: unknown option(s) {', '.join(k[:40] for k in unknown)}; "
                    f"accepted: {', '.join(sorted(fields | {'init', 'spec'}))}"
                )
            cfg = replace(
                cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
            )
        return MgNet(cfg, num_classes=num_classes, in_channels=in_channels, init=init)

    return build


def _mgnet(name: str, spec: str, description: str, *, init: str = "default", **info) -> ModelInfo:
    """An MgNet entry: the spec string is the architecture, ``init`` its initialisation."""
    defaults = {} if init == "default" else {"init": init}
    return ModelInfo(
        name=name,
        build=_mgnet_builder(spec),
        description=description,
        spec=spec,
        defaults=defaults,
        **info,
    )


def _operator(
    name: str, build: Callable[..., nn.Module], description: str, **defaults
) -> ModelInfo:
    """A neural-operator entry: one input and one output field on 65 x 65 grids."""
    return ModelInfo(
        name=name,
        build=build,
        description=description,
        kind=OPERATOR,
        num_classes=None,
        in_channels=1,
        out_channels=1,
        input_size=65,
        defaults=defaults,
    )


# ------------------------------------------------------------------ the registered models
# Every registered model, in one place. The paper's models (He & Xu 2019) start from the
# authors' initialisation, PyTorch's default; the small digits/MNIST models keep the
# He-normal init their measured results (README) were obtained with.
_ENTRIES: list[ModelInfo] = [
    _mgnet(
        "mgnet_cifar",
        "mgnet[2,2,2,2]-256-Bl",
        "MgNet[2,2,2,2]-256-B^l, the paper's CIFAR model",
    ),
    _mgnet(
        "mgnet_cifar_wise_b",
        "mgnet[2,2,2,2]-256-Bli",
        "MgNet[2,2,2,2]-256-B^{l,i}, one B per smoothing step (paper)",
    ),
    _mgnet(
        "mgnet_imagenet",
        "mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7",
        "MgNet[3,4,6,3]-[128,256,512,1024]-B^{l,i} (paper); its stem, 7x7/2 conv + 3x3/2 "
        "max-pool, is an assumption (ResNet's), not given in the paper",
        num_classes=1000,
        input_size=224,
    ),
    _mgnet(
        "mgnet_cifar_constrained",
        "mgnet[2,2,2,2]-256-Bl-proj",
        "MgNet[2,2,2,2]-256-B^l, ReLU only as the projection onto u >= 0",
    ),
    _mgnet(
        "mgnet_digits",
        "mgnet[2,2,2]-[32,64,128]-Bl",
        "small MgNet for 8x8 digits: 3 levels (8, 4, 2); He-normal init",
        init="kaiming",
        in_channels=1,
        input_size=8,
    ),
    _mgnet(
        "mgnet_digits_constrained",
        "mgnet[2,2,2]-[32,64,128]-Bl-proj",
        "mgnet_digits with ReLU only as the projection onto u >= 0; He-normal init",
        init="kaiming",
        in_channels=1,
        input_size=8,
    ),
    _mgnet(
        "mgnet_mnist",
        "mgnet[2,2,2]-[32,64,128]-Bl",
        "small MgNet for 28x28 MNIST-like images: 3 levels (28, 14, 7); He-normal init",
        init="kaiming",
        in_channels=1,
        input_size=28,
    ),
    ModelInfo(
        name="preact_resnet18",
        build=PreActResNet,
        description="pre-activation ResNet-18 (He et al. 2016), CIFAR stem",
    ),
    ModelInfo(
        name="preact_resnet_digits",
        build=PreActResNet,
        description="pre-activation ResNet [2,2,2] width 16, for 8x8 digits",
        in_channels=1,
        input_size=8,
        defaults={"blocks": (2, 2, 2), "width": 16},
    ),
    ModelInfo(
        name="plain_cnn",
        build=PlainCNN,
        description="plain CNN: 3 stages of 2 conv-BN-ReLU, width 32",
        defaults={"width": 32, "depth": 3},
    ),
    ModelInfo(
        name="resnet18",
        build=torchvision_resnet18,
        description="torchvision's resnet18 (ImageNet stem)",
        num_classes=1000,
        input_size=224,
    ),
    # neural operators: (batch, 1, s, s) coefficient -> (batch, 1, s, s) solution, s = 2^k + 1
    _operator(
        "mgno",
        MgNO,
        "MgNO-style operator: 4 linear V-cycles (5 grids, width 24, nu = (1, 1)) with GELU between",
    ),
    _operator(
        "fno",
        FNO2d,
        "FNO-2D as published (Li et al. 2020): width 32, 12 modes, 4 Fourier layers, grid "
        "coordinates (written here, not neuraloperator's)",
    ),
    _operator(
        "fno_small",
        FNO2d,
        "FNO-2D with width 24 and 7 modes: mgno's parameter budget",
        width=24,
        modes=7,
    ),
    _operator(
        "unet",
        UNet,
        "U-Net (Ronneberger et al. 2015) with BatchNorm: width 16, 3 poolings",
    ),
]

for _info in _ENTRIES:
    register_model(_info)
