"""The registry's classifiers in timm's registry: ``timm.create_model("mgnet_cifar")``.

timm has no plugin entry points; a model is known to it once a function of that name is
passed to ``timm.models.register_model``. :func:`register_with_timm` does that for every
classifier of :mod:`mgnet.models.registry` whose name timm does not already use (so
``resnet18`` stays timm's own). ``import mgnet`` arranges for it to run (this module
imports no torch, so that costs nothing):

* at once, if timm is already imported;
* otherwise right after timm's first import, through a one-shot import hook, so that
  ``import mgnet`` itself never pays timm's import time (about 1.5 s);
* never, if timm is not installed.

The function timm calls takes timm's arguments (``pretrained``, ``num_classes``,
``in_chans``, ``pretrained_cfg``, ...) and builds the model with
:func:`mgnet.models.create_model`, so ``pretrained=True`` gets the same one-line error.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module imports no torch: `import mgnet` installs its hook
    from torch import nn

__all__ = ["install_timm_hook", "register_with_timm"]

log = logging.getLogger(__name__)


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def build(pretrained: bool = False, **kwargs) -> nn.Module:
        from mgnet.models.registry import create_model

        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)  # timm's weight-loading options: no weights to load
        return create_model(name, pretrained=bool(pretrained), **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__module__ = __name__
    build.__doc__ = f"mgnet's {name!r} for timm.create_model (see mgnet.models.create_model)."
    return build


def register_with_timm() -> list[str]:
    """Register every mgnet classifier with timm (timm must be importable); returns the
    names registered now. Names timm already knows are left to timm."""
    from timm.models import is_model
    from timm.models import register_model as timm_register

    from mgnet.models.registry import CLASSIFIER, list_models

    added = []
    for name in list_models(kind=CLASSIFIER):
        if is_model(name):
            continue
        fn = _entrypoint(name)
        setattr(sys.modules[__name__], name, fn)
        timm_register(fn)
        added.append(name)
    return added


def _register_quietly() -> None:
    try:
        register_with_timm()
    except Exception as e:  # a timm without the registry API must not break `import timm`
        log.warning("mgnet: could not register its models with timm: %s", e)


class _AfterTimmImport(importlib.abc.MetaPathFinder):
    """Import hook, used once: finds timm's spec with the other finders and makes its
    loader call :func:`register_with_timm` after timm's module has run."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        loader = getattr(spec, "loader", None)
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module):
            run(module)
            _register_quietly()

        loader.exec_module = exec_module
        return spec


def install_timm_hook() -> None:
    """Register with timm now if it is imported, or after it is, if it is installed."""
    if "timm" in sys.modules:
        _register_quietly()
    elif importlib.util.find_spec("timm") is not None and not any(
        isinstance(f, _AfterTimmImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _AfterTimmImport())
