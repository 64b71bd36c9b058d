"""Evaluate a trained checkpoint on a dataset split: top-1 and top-5 accuracy, mean
cross-entropy, and the confusion matrix (as JSON, and as a PNG when matplotlib is there);
for a neural operator (a run on operator data such as ``darcy``), the mean relative L2 and
H1 errors (:class:`OperatorEvalResult`, as JSON).

The model is rebuilt from the checkpoint's own config (model name, overrides, the data it
was trained on, the number of classes it was built for) and checked against the data it
is asked to evaluate: the channels and the number of classes must agree, and the images
must be large enough for the model's levels; anything else is a one-line ``ValueError``.
Weights: ``best.pt`` holds the validated ones (the weight average when the run kept one);
from a ``checkpoint.pt`` the weight average is taken when there is one, as the run itself
evaluates it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mgnet.constants import SPLITS
from mgnet.errors import MissingDependency, quote
from mgnet.plotting import figure, save_png
from mgnet.train.loading import load_trained_model
from mgnet.train.rundir import check_output

__all__ = [
    "EvalResult",
    "OperatorEvalResult",
    "evaluate_checkpoint",
    "load_trained_model",
    "plot_confusion",
    "SPLITS",
]


@dataclass
class EvalResult:
    """What :func:`evaluate_checkpoint` measured (accuracies in percent).

    ``top5`` is the top-k accuracy with ``k = min(5, classes)`` (``topk`` says which k);
    ``confusion[i][j]`` counts images of class i predicted as class j.
    """

    checkpoint: str
    model: str
    data: str
    split: str
    count: int
    top1: float
    top5: float
    topk: int
    loss: float
    classes: list[str]
    confusion: list[list[int]] = field(repr=False)
    json_path: str | None = None
    png_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OperatorEvalResult:
    """What :func:`evaluate_checkpoint` measured for a neural operator: the mean relative
    L2 and H1 errors over ``count`` samples of a split whose grids have ``resolution``
    points per side (the model's normalisers were fitted at ``trained_resolution``)."""

    checkpoint: str
    model: str
    data: str
    split: str
    count: int
    rel_l2: float
    rel_h1: float
    resolution: int
    trained_resolution: int | None
    data_args: dict[str, Any]
    json_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    device: str = "auto",
    batch_size: int = 256,
    out: str | Path | None = None,
    plot: bool = True,
    force: bool = False,
    data_args: dict[str, Any] | None = None,
) -> EvalResult | OperatorEvalResult:
    """Top-1/top-5 accuracy, loss and confusion matrix of a ``mgnet train`` checkpoint;
    for an operator run, its relative L2 and H1 errors (:class:`OperatorEvalResult`).

    The model runs as in its run: the run's mixed precision (``amp``) and memory format
    (``channels_last``), batches copied asynchronously from pinned memory on CUDA.

    Args:
        checkpoint: ``best.pt`` or ``checkpoint.pt`` of a run.
        data: registered dataset (default: the one the model was trained on).
        data_dir: its folder (default: the run's ``data_dir``).
        split: ``test`` or ``val``.
        device: auto | cpu | cuda | cuda:N.
        batch_size: images per forward pass.
        out: the JSON file to write (default: ``eval-<data>-<split>.json`` next to the
            checkpoint); the PNG goes next to it with the suffix ``.png``. A file of a
            run folder (``results.json``, ...) is refused unless ``force``.
        plot: also draw the confusion matrix as a PNG (needs matplotlib).
        force: overwrite ``out`` even when it is a file of a run folder.
        data_args: the dataset's options over the run's own (``cfg.data_args``), e.g.
            ``{"test_resolution": 129}`` to test a Darcy model at another resolution.
    """
    from mgnet.data import get_dataset
    from mgnet.device import resolve_device
    from mgnet.train.task import evaluate

    if split not in SPLITS:
        raise ValueError(f"split: {quote(split)} is not accepted; expected {', '.join(SPLITS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size}")
    path = Path(checkpoint)
    json_path = Path(out) if out is not None else None
    if json_path is not None:  # before any work: a bad output path fails at once
        if json_path.suffix.lower() != ".json":
            raise ValueError(f"out: expected a .json file name, got {quote(str(json_path))}")
        check_output(json_path, force, flag="out")
        check_output(json_path.with_suffix(".png"), force, flag="out")
    dev = resolve_device(device)
    trained = load_trained_model(path)
    model, cfg, trained_on = trained.model, trained.config, trained.info
    name = data or cfg.data
    same_data = name == cfg.data
    options = {**(cfg.data_args if same_data else {}), **(data_args or {})}
    if trained_on.is_operator:
        return _evaluate_operator(trained, name, data_dir, split, dev, batch_size, options,
                                  json_path, force)  # fmt: skip
    splits = get_dataset(
        name,
        root=data_dir or cfg.data_dir,
        augment=False,
        mean=cfg.mean if same_data else None,
        std=cfg.std if same_data else None,
        options=options,
    )
    info = splits.info
    dataset = splits.test if split == "test" else splits.val
    num_classes = (
        model.fc.out_features if isinstance(getattr(model, "fc", None), nn.Linear) else None
    )
    data_classes = getattr(dataset, "num_classes", None) or info.num_classes
    if info.in_channels != trained_on.in_channels:
        raise ValueError(
            f"data: {name!r} has {info.in_channels} channel(s), the model of "
            f"{quote(str(path))} (trained on {cfg.data!r}) takes {trained_on.in_channels}"
        )
    if num_classes is not None and data_classes != num_classes:
        raise ValueError(
            f"data: {name!r} has {data_classes} classes, the model of {quote(str(path))} "
            f"(trained on {cfg.data!r}) predicts {num_classes}"
        )
    need = getattr(model, "min_input_size", 1)
    if info.input_size < need:
        raise ValueError(
            f"data: {name!r} has {info.input_size}x{info.input_size} images, the model of "
            f"{quote(str(path))} needs at least {need}x{need}"
        )
    if len(dataset) == 0:
        raise ValueError(f"split: the {split!r} split of {name!r} holds no images")
    classes = [str(c) for c in getattr(dataset, "classes", None) or range(data_classes)]

    model = model.to(dev).eval()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    k = min(5, data_classes)
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, pin_memory=dev.type == "cuda"
    )
    with torch.no_grad():
        m = evaluate(
            model,
            loader,
            dev,
            cfg.amp,
            cfg.channels_last,
            topk=k,
            num_classes=data_classes,
        )
    result = EvalResult(
        checkpoint=str(path),
        model=cfg.model,
        data=name,
        split=split,
        count=m["count"],
        top1=m["accuracy"],
        top5=m["topk_accuracy"] if k > 1 else m["accuracy"],
        topk=k,
        loss=m["loss"],
        classes=classes,
        confusion=m["confusion"].tolist(),
    )
    if json_path is None:
        json_path = check_output(path.with_name(f"eval-{name}-{split}.json"), force, "out")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    result.json_path = str(json_path)
    if plot:
        png_path = json_path.with_suffix(".png")
        if plot_confusion(m["confusion"], classes, png_path, title=_title(result)):
            result.png_path = str(png_path)
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _evaluate_operator(
    trained: Any,
    name: str,
    data_dir: str | None,
    split: str,
    dev: torch.device,
    batch_size: int,
    options: dict[str, Any],
    json_path: Path | None,
    force: bool,
) -> OperatorEvalResult:
    """The relative L2 and H1 errors of an operator run's model on ``split`` of ``name``."""
    from mgnet.data import get_dataset
    from mgnet.train.task import check_model_for_data, evaluate_operator

    cfg, path = trained.config, trained.path
    check_model_for_data(cfg.model, name)  # operator data only
    splits = get_dataset(name, root=data_dir or cfg.data_dir, augment=False, options=options)
    dataset = splits.test if split == "test" else splits.val
    if len(dataset) == 0:
        raise ValueError(f"split: the {split!r} split of {name!r} holds no samples")
    side = int(dataset[0][0].shape[-1])
    if not trained.model.accepts(side):
        raise ValueError(
            f"data: the {split!r} split of {name!r} is {side}x{side}; the model of "
            f"{quote(str(path))} takes sides {trained.model.sides_accepted()}"
        )
    model = trained.model.to(dev).eval()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    pin = dev.type == "cuda"
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, pin_memory=pin)
    m = evaluate_operator(model, loader, dev, cfg.amp, cfg.channels_last)
    result = OperatorEvalResult(
        checkpoint=str(path),
        model=cfg.model,
        data=name,
        split=split,
        count=m["count"],
        rel_l2=m["rel_l2"],
        rel_h1=m["rel_h1"],
        resolution=side,
        trained_resolution=trained.model.resolution,
        data_args=options,
    )
    if json_path is None:
        json_path = check_output(path.with_name(f"eval-{name}-{split}-{side}.json"), force, "out")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    result.json_path = str(json_path)
    json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _title(r: EvalResult) -> str:
    return (
        f"{r.model} on {r.data} {r.split} ({r.count} images): top-1 {r.top1:.2f} %, "
        f"top-{r.topk} {r.top5:.2f} %"
    )


def plot_confusion(
    confusion: torch.Tensor, classes: list[str], path: str | Path, title: str = ""
) -> bool:
    """Draw ``confusion`` (rows: true class, columns: predicted; colour: share of the row)
    to ``path``; counts are written in the cells up to 20 classes. Returns False without
    matplotlib."""
    try:
        fig = figure(1, 1)
    except MissingDependency:
        return False
    c = confusion.double()
    share = c / c.sum(1, keepdim=True).clamp_min(1)
    n = len(classes)
    size = min(max(4.0, 0.45 * n + 2), 14.0)
    fig.set_size_inches(size + 1, size)
    ax = fig.subplots()
    im = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    if n <= 20:
        ticks = list(range(n))
        ax.set_xticks(ticks, classes, rotation=90 if n > 10 else 0)
        ax.set_yticks(ticks, classes)
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", color=color,
                            fontsize=8)  # fmt: skip
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
    return True
