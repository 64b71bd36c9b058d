"""The paper's notation as a string: ``mgnet[2,2,2,2]-256-Bl`` and friends.

Grammar (case-insensitive, no spaces)::

    spec     := "mgnet[" NU "]-" CHANNELS ("-" TOKEN)*
    NU       := n ("," n)*                 nu_l, smoothing steps on level l; J = len(NU)
    CHANNELS := C | "[" C ("," C)* "]"     one C for all levels, or one per level
    C        := N | N ":" N                c_u = c_f = N, or c_u : c_f
    TOKEN    := "Bl" | "Bli"               one B^l per level (default) | one B^{l,i} per step
              | "Al" | "Ali"               one A^l per level (default) | one A^{l,i} per step
              | "stem3" | "stem7"          3x3 stem (default) | 7x7 stride-2 + max-pool stem
              | "linear"                   sigma = identity, no BatchNorm (default: BN + ReLU)
              | "proj"                     ReLU only as the projection onto u >= 0 (BN kept)
              | "1d" | "2d" | "3d"         spatial dimension (default 2d)

Examples: ``mgnet[2,2,2,2]-256-Bl`` (MgNet[2,2,2,2]-256-B^l, the CIFAR model),
``mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7`` (the ImageNet model),
``mgnet[2,2]-[16:32,32:64]`` (c_u differs from c_f).
:func:`format_spec` writes the canonical string back, so parse and format round-trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mgnet.models.common import MAX_CHANNELS
from mgnet.models.common import brief as _brief

__all__ = ["MgNetConfig", "parse_spec", "format_spec", "SpecError"]


MAX_LEVELS = 16  # J: 2^15 pixels per side at the coarsest grid's minimum
MAX_STEPS = 1024  # sum of nu_l


class SpecError(ValueError):
    """A model spec string that does not follow the grammar."""


@dataclass(frozen=True)
class MgNetConfig:
    """Architecture of an MgNet classifier.

    nu: smoothing steps nu_l per level (J = len(nu)).
    channels_u, channels_f: c_u^l and c_f^l per level.
    share_B: ``"level"`` (B^l) or ``"step"`` (B^{l,i}).
    share_A: ``"level"`` (A^l, MgNet) or ``"step"`` (one A^{l,i} per step; note that only the
        residual form with unshared A^{l,i} is exactly pre-activation ResNet, see docs/theory.md).
    stem: ``"conv3"`` or ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool).
    sigma: ``"bn-relu"``, ``"linear"`` (identity, no BatchNorm) or ``"project"`` (BN as
        before, ReLU only where u >= 0 needs it: the constrained data-feature model).
    dim: spatial dimension, 1, 2 or 3.
    """

    nu: tuple[int, ...]
    channels_u: tuple[int, ...]
    channels_f: tuple[int, ...]
    share_B: str = "level"
    share_A: str = "level"
    stem: str = "conv3"
    sigma: str = "bn-relu"
    dim: int = 2

    def __post_init__(self) -> None:
        J = len(self.nu)
        for name in ("nu", "channels_u", "channels_f"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise TypeError(f"{name}: expected a tuple of integers, got {_brief(value)}")
        if J == 0 or any(n < 1 for n in self.nu):
            raise SpecError(
                f"nu: need at least one level and nu_l >= 1, got {_brief(list(self.nu))}"
            )
        if J > MAX_LEVELS or sum(self.nu) > MAX_STEPS:
            raise SpecError(
                f"nu: at most {MAX_LEVELS} levels and {MAX_STEPS} smoothing steps in all, "
                f"got {J} levels and {sum(self.nu)} steps"
            )
        for name in ("channels_u", "channels_f"):
            value = getattr(self, name)
            if len(value) != J or any(c < 1 for c in value):
                raise SpecError(
                    f"{name}: need {J} positive values (one per level), got {_brief(list(value))}"
                )
            if max(value) > MAX_CHANNELS:
                raise SpecError(
                    f"{name}: at most {MAX_CHANNELS} channels per level, got {_brief(max(value))}"
                )
        choices = {
            "share_B": ("level", "step"),
            "share_A": ("level", "step"),
            "stem": ("conv3", "imagenet"),
            "sigma": ("bn-relu", "linear", "project"),
            "dim": (1, 2, 3),
        }
        for name, accepted in choices.items():
            if getattr(self, name) not in accepted:
                got = _brief(getattr(self, name))
                raise SpecError(f"{name}: {got} is not one of {', '.join(map(str, accepted))}")

    @property
    def depth(self) -> int:
        return len(self.nu)


_SPEC = re.compile(r"^mgnet\[([0-9,]+)\]-(\[[0-9:,]+\]|[0-9:]+)((?:-[a-z0-9]+)*)$")
_TOKENS = {
    "bl": ("share_B", "level"),
    "bli": ("share_B", "step"),
    "al": ("share_A", "level"),
    "ali": ("share_A", "step"),
    "stem3": ("stem", "conv3"),
    "stem7": ("stem", "imagenet"),
    "linear": ("sigma", "linear"),
    "proj": ("sigma", "project"),
    "1d": ("dim", 1),
    "2d": ("dim", 2),
    "3d": ("dim", 3),
}


def is_spec(name: str) -> bool:
    return name.strip().lower().startswith("mgnet[")


def _int(text: str, what: str, spec: str) -> int:
    if not text.isdigit():
        raise SpecError(
            f"model: bad {what} {_brief(text)} in {_brief(spec)}; see `mgnet models --help`"
        )
    if len(text) > 9:
        raise SpecError(f"model: {what} {_brief(text)} in {_brief(spec)} is absurdly large")
    return int(text)


def parse_spec(spec: str) -> MgNetConfig:
    """Parse ``mgnet[nu_1,...,nu_J]-channels[-tokens]`` into an :class:`MgNetConfig`."""
    text = spec.strip().lower()
    m = _SPEC.match(text)
    if m is None:
        raise SpecError(
            f"model: {_brief(spec)} is not a spec like 'mgnet[2,2,2,2]-256-Bl' or "
            "'mgnet[3,4,6,3]-[128,256,512,1024]-Bli-stem7'"
        )
    nu = tuple(_int(n, "nu", spec) for n in m.group(1).split(","))
    chan = m.group(2)
    items = chan[1:-1].split(",") if chan.startswith("[") else [chan] * len(nu)
    if len(items) != len(nu):
        raise SpecError(
            f"model: {_brief(spec)} gives {len(items)} channel counts for {len(nu)} levels"
        )
    cu, cf = [], []
    for item in items:
        parts = item.split(":")
        if len(parts) > 2:
            raise SpecError(f"model: bad channels {_brief(item)} in {_brief(spec)}; use N or U:F")
        cu.append(_int(parts[0], "channel count", spec))
        cf.append(_int(parts[-1], "channel count", spec))
    options: dict = {}
    for token in filter(None, m.group(3).split("-")):
        if token not in _TOKENS:
            accepted = ", ".join(
                ["Bl", "Bli", "Al", "Ali", "stem3", "stem7", "linear", "proj", "1d", "2d", "3d"]
            )
            raise SpecError(
                f"model: unknown option {_brief(token)} in {_brief(spec)}; accepted: {accepted}"
            )
        key, value = _TOKENS[token]
        options[key] = value
    return MgNetConfig(nu=nu, channels_u=tuple(cu), channels_f=tuple(cf), **options)


def format_spec(cfg: MgNetConfig) -> str:
    """The canonical spec string of ``cfg`` (``parse_spec(format_spec(c)) == c``)."""
    chans = [str(u) if u == f else f"{u}:{f}" for u, f in zip(cfg.channels_u, cfg.channels_f)]
    channels = chans[0] if len(set(chans)) == 1 else "[" + ",".join(chans) + "]"
    out = f"mgnet[{','.join(map(str, cfg.nu))}]-{channels}"
    out += "-Bli" if cfg.share_B == "step" else "-Bl"
    if cfg.share_A == "step":
        out += "-Ali"
    if cfg.stem == "imagenet":
        out += "-stem7"
    if cfg.sigma == "linear":
        out += "-linear"
    elif cfg.sigma == "project":
        out += "-proj"
    if cfg.dim != 2:
        out += f"-{cfg.dim}d"
    return out
