"""Export a trained classifier to ONNX or TorchScript, and prove the export computes the
same logits.

:func:`export_model` works on a copy of the model in evaluation mode on the CPU (BatchNorm
uses its running statistics), so the model passed in is left as it was. The batch
dimension stays dynamic. After writing the file it runs the exported program on a fresh
random batch of another size -- with onnxruntime for ONNX (when installed), with
``torch.jit.load`` for TorchScript -- and compares with PyTorch's logits; a difference
above ``atol`` is an error, never a silently wrong file.

ONNX uses torch's ``torch.export``-based exporter (it needs the ``onnxscript`` package;
without it the older TorchScript-based exporter is used). A model with FNO's spectral
convolution is refused for ONNX in one line, before any export is tried: ONNX has no
complex tensors, the older exporter has no FFT operators and the ``torch.export``-based
one fails to decompose torch.fft's complex graph (torch 2.14); TorchScript exports it.
A trained neural operator is exported with its pointwise normalisers
(:class:`~mgnet.train.normalizer.NormalizedOperator`): the file maps the raw coefficient
to the solution, at the grid size it was exported for. TorchScript uses tracing: the
MgNet cycle's control flow depends only on the architecture, never on the data, so the
trace is exact. (torch marks TorchScript as deprecated in favour of ``torch.export``; it
is offered for runtimes that still load it, such as LibTorch in C++.)
"""

from __future__ import annotations

import copy
import importlib.util
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mgnet.constants import EXPORT_FORMATS
from mgnet.errors import MgNetError, first_line

__all__ = [
    "EXPORT_FORMATS",
    "ExportError",
    "ExportResult",
    "export_model",
    "model_from_checkpoint",
    "run_exported",
]

_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportError(MgNetError, RuntimeError):
    """The exported file could not be written, or does not compute PyTorch's logits."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how closely it reproduces PyTorch.

    ``max_abs_diff`` is the largest absolute difference of the logits on the check batch,
    ``None`` when the check was skipped (``check=False``, or no onnxruntime for ONNX).
    """

    path: Path
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float | None

    def __fspath__(self) -> str:
        return str(self.path)


def _check_args(
    model: nn.Module, path: str | os.PathLike, format: str, input_shape: Sequence[int] | None
) -> tuple[Path, tuple[int, ...]]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: need a torch.nn.Module, got {type(model).__name__}")
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"format: {format!r} is not accepted; expected {', '.join(EXPORT_FORMATS)}"
        )
    if input_shape is None:
        raise ValueError(
            "input_shape: give the shape of one input batch, (batch, channels, *space), "
            "e.g. (1, 3, 32, 32)"
        )
    shape = tuple(input_shape)
    if len(shape) < 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(
            f"input_shape: {input_shape!r} is not accepted; expected positive integers "
            "(batch, channels, *space), e.g. (1, 3, 32, 32)"
        )
    in_channels = getattr(model, "in_channels", None)
    if isinstance(in_channels, int) and in_channels != shape[1]:
        raise ValueError(
            f"input_shape: {shape[1]} channels given, the model takes {in_channels}; "
            f"accepted: (batch, {in_channels}, ...)"
        )
    return Path(path), shape


def _check_onnx_ops(model: nn.Module) -> None:
    """Refuse, in one line and before any export, a model ONNX cannot express."""
    from mgnet.models.operators import SpectralConv2d

    if any(isinstance(m, SpectralConv2d) for m in model.modules()):
        raise ExportError(
            "format: 'onnx' cannot hold FNO's spectral convolution (torch.fft on complex "
            "tensors: ONNX has no complex type, and torch's ONNX exporters cannot decompose "
            "it); accepted for this model: torchscript"
        )


def _export_onnx(model: nn.Module, example: Tensor, path: Path, opset: int | None) -> None:
    kwargs = {"input_names": ["images"], "output_names": ["logits"]}
    if opset is not None:
        kwargs["opset_version"] = opset
    if importlib.util.find_spec("onnxscript") is not None:
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            verbose=False,
            external_data=False,
            **kwargs,
        )
    else:  # the older exporter needs no extra package
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            **kwargs,
        )


def run_exported(path: str | os.PathLike, x: Tensor, format: str | None = None) -> Tensor | None:
    """Run an exported model on ``x`` (CPU): onnxruntime for ``.onnx`` files, ``torch.jit``
    for TorchScript. Returns ``None`` for ONNX when onnxruntime is not installed."""
    path = Path(path)
    format = format or ("onnx" if path.suffix == ".onnx" else "torchscript")
    x = x.detach().cpu().float()
    if format == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(x)


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    format: str = "onnx",
    input_shape: Sequence[int] | None = None,
    check: bool = True,
    atol: float = 1e-4,
    opset: int | None = None,
) -> ExportResult:
    """Write ``model`` to ``path`` as ONNX or TorchScript, with a dynamic batch dimension.

    Args:
        model: a classifier (any ``nn.Module`` taking one image batch); not modified.
        path: the output file (its folder is created); ``.onnx`` / ``.pt`` is the custom.
        format: ``"onnx"`` or ``"torchscript"``.
        input_shape: ``(batch, channels, *space)`` of an example input, e.g. (1, 3, 32, 32);
            the spatial size is fixed in the export, the batch size is not.
        check: run the exported file on a random batch of another size and compare with
            PyTorch; a largest absolute difference above ``atol`` raises RuntimeError.
        opset: ONNX opset version (default: the exporter's).
    """
    path, shape = _check_args(model, path, format, input_shape)
    if format == "onnx":
        _check_onnx_ops(model)
    net = copy.deepcopy(model).to("cpu").float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(shape, generator=gen)
    try:
        with torch.no_grad():
            net(example)
    except (RuntimeError, ValueError) as e:
        raise ValueError(
            f"input_shape: the model cannot take a {shape} input ({first_line(e, 240)})"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and exporter chatter, not errors
            if format == "onnx":
                _export_onnx(net, example, path, opset)
            else:
                with torch.no_grad():
                    traced = torch.jit.trace(net, (example,), check_trace=False)
                traced.save(str(path))
    except Exception as e:
        raise ExportError(
            f"export: writing {format} to {str(path)!r} failed ({first_line(e, 240)})"
        ) from None

    diff = None
    if check:
        x = torch.randn((shape[0] + 2, *shape[1:]), generator=gen)  # another batch size
        with torch.no_grad():
            expected = net(x)
        got = run_exported(path, x, format)
        if got is not None:
            if got.shape != expected.shape:
                raise ExportError(
                    f"export: {str(path)!r} returns shape {tuple(got.shape)}, PyTorch "
                    f"{tuple(expected.shape)}"
                )
            diff = float((got - expected).abs().max())
            if not diff <= atol:
                raise ExportError(
                    f"export: {str(path)!r} differs from PyTorch by {diff:.3g} > atol={atol}"
                )
    return ExportResult(path, format, shape, diff)


def model_from_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, tuple[int, ...], dict]:
    """The trained model of a ``mgnet train`` checkpoint (``best.pt`` or ``checkpoint.pt``),
    in evaluation mode on the CPU, with the input shape of its dataset, (1, C, S, S), and
    the run's config as a dict (see :func:`mgnet.train.load_trained_model`)."""
    from mgnet.train import load_trained_model

    trained = load_trained_model(path)
    if trained.input_shape is None:
        from mgnet.train import CheckpointError

        raise CheckpointError(
            f"checkpoint: {str(path)[:200]!r} is not a checkpoint of this package (written "
            "by mgnet train); export needs the run's config"
        )
    return trained.model, trained.input_shape, trained.config_dict
