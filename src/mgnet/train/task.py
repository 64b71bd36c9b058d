"""What a run optimizes and measures: the task, kept apart from the loop.

The training loop (:mod:`mgnet.train.loop`) knows nothing about labels or accuracies. It
asks its task to

* ``prepare`` a batch (here: mixup/CutMix) and compute its ``loss``;
* add a step's statistics to a tensor of sums on the device (``step_sums``), which the
  loop reads once per epoch, and turn the epoch's sums into metrics (``train_metrics``);
* ``evaluate`` a model on a loader (validation, test);
* say whether a score ``improves`` on the best so far (which model is "best").

Two tasks, chosen by the data (:func:`make_task`):

* :class:`ClassificationTask`: cross-entropy with label smoothing, top-1 accuracy; the
  highest accuracy is best and a tie goes to the later epoch.
* :class:`OperatorTask`: operator learning (a field to a field, e.g. Darcy flow): the
  relative L2 loss (or relative H1), the relative L2 and H1 errors as metrics, the lowest
  validation relative L2 is best. The model is wrapped by :func:`wrap_model` in the
  pointwise normalisers of :mod:`mgnet.train.normalizer`, fitted on the training split.

:func:`evaluate` is the one evaluation of a classifier and :func:`evaluate_operator` the
one of an operator: the loop's validation and test, ``mgnet train --test-only`` and
``mgnet eval`` all run them. They accumulate on the device and read the result once,
after the last batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mgnet.train.config import LOSSES
from mgnet.train.distributed import DistInfo, all_reduce_sum
from mgnet.train.mixing import MixedBatch, mix_batch

__all__ = [
    "LOSSES",
    "ClassificationTask",
    "FieldBatch",
    "OperatorTask",
    "autocast",
    "check_model_for_data",
    "evaluate",
    "evaluate_operator",
    "make_task",
    "relative_h1",
    "relative_l2",
    "task_defaults",
    "to_device",
    "wrap_model",
]


def autocast(device: torch.device, amp: str):
    """The autocast context of ``amp`` (none | bf16 | fp16) on ``device``."""
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def to_device(
    x: Tensor, y: Tensor, device: torch.device, channels_last: bool = False
) -> tuple[Tensor, Tensor]:
    """A batch on ``device`` (asynchronous copies from pinned memory), images in
    channels-last format when asked."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _pad(x: Tensor, size: int, channels_last: bool) -> Tensor:
    """``x`` with zero images appended up to ``size`` (one shape for a compiled model)."""
    if x.shape[0] >= size:
        return x
    x = torch.cat([x, x.new_zeros((size - x.shape[0], *x.shape[1:]))])
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _outputs(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp: str,
    channels_last: bool,
    pad_to: int | None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """(float32 output, target) of every batch of ``loader``, the model in evaluation mode
    (a batch padded to ``pad_to`` gives the outputs of its own samples only)."""
    model.eval()
    for x, y in loader:
        n = y.shape[0]
        x, y = to_device(x, y, device, channels_last)
        if pad_to:
            x = _pad(x, pad_to, channels_last)
        with autocast(device, amp):
            out = model(x)
        yield out[:n].float(), y


def _reduce(sums: Tensor, count: int, dist_info: DistInfo) -> list[float]:
    """``sums`` and ``count`` summed over the processes: the one host read of an
    evaluation."""
    total = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64).to(sums.device)])
    return all_reduce_sum(total, dist_info).tolist()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
    *,
    topk: int = 1,
    num_classes: int | None = None,
    pad_to: int | None = None,
) -> dict[str, Any]:
    """Mean cross-entropy ``loss``, top-1 ``accuracy`` (percent) and ``count`` over
    ``loader`` (summed over the processes of a data-parallel run).

    ``topk > 1`` adds ``topk_accuracy``; ``num_classes`` adds the ``confusion`` matrix
    (rows: true class, columns: prediction; a CPU tensor). ``pad_to`` pads a smaller last
    batch with zero images to that size, so a compiled model sees one batch shape; the
    padding is not counted.
    """
    dist_info = dist_info or DistInfo()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1, top-k
    confusion = (
        torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        if num_classes
        else None
    )
    count = 0
    for logits, y in _outputs(model, loader, device, amp, channels_last, pad_to):
        best = logits.topk(min(topk, logits.shape[1]), dim=1).indices
        hits = best == y[:, None]
        sums += torch.stack(
            [
                nn.functional.cross_entropy(logits, y, reduction="sum").double(),
                hits[:, 0].sum().double(),
                hits.any(1).sum().double(),
            ]
        )
        if confusion is not None:
            confusion += torch.bincount(y * num_classes + best[:, 0], minlength=num_classes**2)
        count += y.shape[0]
    loss_sum, top1, topk_hits, count_all = _reduce(sums, count, dist_info)
    seen = max(count_all, 1.0)
    out: dict[str, Any] = {
        "loss": loss_sum / seen,
        "accuracy": 100.0 * top1 / seen,
        "count": int(count_all),
    }
    if topk > 1:
        out["topk_accuracy"] = 100.0 * topk_hits / seen
    if confusion is not None:
        confusion = all_reduce_sum(confusion, dist_info)
        out["confusion"] = confusion.view(num_classes, num_classes).cpu()
    return out


class ClassificationTask:
    """Image classification: cross-entropy with ``label_smoothing``, mixup/CutMix with
    alphas ``mixup``/``cutmix`` (0: off; draws from (``seed``, epoch, step, rank)), top-1
    accuracy. The best model has the highest accuracy; a tie goes to the later epoch (as
    good, and trained longer at a lower learning rate)."""

    #: the evaluation result the selection rule ranks (higher is better)
    score = "accuracy"
    #: the evaluation results recorded per epoch and in the results, as ``<split>_<name>``
    metrics = ("loss", "accuracy")
    #: names of the per-step sums :meth:`step_sums` returns (the loop adds the count)
    sums = ("loss_sum", "correct")

    def __init__(
        self, label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0, seed: int = 0
    ) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.mixup, self.cutmix, self.seed = mixup, cutmix, seed

    def prepare(self, x: Tensor, y: Tensor, epoch: int, step: int, rank: int) -> MixedBatch:
        """The batch the model trains on (mixed when mixup or CutMix is on)."""
        return mix_batch(x, y, self.mixup, self.cutmix, self.seed, epoch, step, rank)

    def loss(self, logits: Tensor, batch: MixedBatch) -> Tensor:
        """The training loss of one batch (the mixed, label-smoothed cross-entropy)."""
        return batch.loss(self.criterion, logits.float())

    def step_sums(self, logits: Tensor, batch: MixedBatch, loss: Tensor) -> Tensor:
        """``[loss * n, correct]`` of one step, on the device (never read per step)."""
        n = batch.y_main.shape[0]
        correct = (logits.detach().argmax(1) == batch.y_main).sum()
        return torch.stack([loss.detach().double() * n, correct.double()])

    def train_metrics(self, sums: list[float], count: float) -> dict[str, float]:
        """The epoch's training metrics from the summed :meth:`step_sums` and the count."""
        seen = max(count, 1.0)
        return {"train_loss": sums[0] / seen, "train_accuracy": 100.0 * sums[1] / seen}

    def evaluate(self, model: nn.Module, loader: Any, **kwargs: Any) -> dict[str, Any]:
        """``loss``, ``accuracy`` and ``count`` of ``model`` on ``loader`` (see
        :func:`evaluate` for the keyword arguments)."""
        return evaluate(model, loader, **kwargs)

    @staticmethod
    def improves(score: float, best: float | None) -> bool:
        """Whether ``score`` makes a new best: at least as high; a tie goes to the later
        epoch."""
        return best is None or score >= best

    @staticmethod
    def set_up_model(model: nn.Module, splits: Any, name: str) -> nn.Module:
        """The model a run trains, given its data (a classifier as built)."""
        return model

    @staticmethod
    def describe_result(result: dict[str, Any]) -> str:
        """One evaluation in words (``mgnet train --test-only``)."""
        return f"test accuracy {result['accuracy']:.2f}% ({result['count']} images)"

    @staticmethod
    def describe_epoch(row: dict[str, Any], split: str) -> str:
        """The middle of an epoch's log line: training loss and accuracy, the score on
        ``split`` (the loop appends ``*`` for a new best)."""
        return (
            f"loss {row['train_loss']:.4f}  acc {row['train_accuracy']:6.2f}  "
            f"{split} {row[f'{split}_accuracy']:6.2f}"
        )

    @staticmethod
    def describe_test(test: dict[str, Any], best: dict[str, Any], paper: bool) -> str:
        """The start of the final log line: the test result and the best epoch."""
        if paper:
            return (
                f"test accuracy {test['accuracy']:.2f}% (final epoch); best over the epochs "
                f"{best['test_accuracy']:.2f}% (epoch {best['epoch']}, the authors' "
                "selection rule)"
            )
        return (
            f"test accuracy {test['accuracy']:.2f}% (model of epoch {best['epoch']}, "
            f"val {best['val_accuracy']:.2f}%)"
        )


# ----------------------------------------------------------------- operator learning
def relative_l2(pred: Tensor, target: Tensor) -> Tensor:
    """Per sample ||pred - target|| / ||target||, the norms over every point and channel:
    shape (batch,). (Any quadrature weight cancels in the ratio.)"""
    diff = (pred - target).flatten(1).norm(dim=1)
    return diff / target.flatten(1).norm(dim=1)


def _h1_squared(v: Tensor) -> Tensor:
    """Per sample ||v||_{H1,h}^2 / h^2 on a grid of (H, W) nodes spanning the unit square:
    the sum of v^2 over the nodes plus the sum of the squared forward differences divided
    by the mesh widths (1/(H-1), 1/(W-1)) over the edges."""
    h, w = v.shape[-2:]
    dy = (v[..., 1:, :] - v[..., :-1, :]) * (h - 1)
    dx = (v[..., :, 1:] - v[..., :, :-1]) * (w - 1)
    return sum(t.flatten(1).square().sum(1) for t in (v, dy, dx))


def relative_h1(pred: Tensor, target: Tensor) -> Tensor:
    """Per sample ||pred - target||_H1 / ||target||_H1 on the unit square, shape (batch,):
    ||v||_H1^2 = ||v||^2 + ||grad v||^2 with the gradient by forward differences on the
    grid (mesh width 1/(s - 1)) and the integrals by the node and edge sums."""
    return (_h1_squared(pred - target) / _h1_squared(target)).sqrt()


@dataclass
class FieldBatch:
    """One batch of operator learning: inputs ``x`` and targets ``y``, (batch, C, s, s)."""

    x: Tensor
    y: Tensor


@torch.no_grad()
def evaluate_operator(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
    *,
    pad_to: int | None = None,
) -> dict[str, Any]:
    """Mean relative L2 ``rel_l2`` and H1 ``rel_h1`` errors of ``model`` over the samples
    of ``loader`` (each sample weighs the same), and ``count`` (summed over the processes
    of a data-parallel run). ``pad_to``: as :func:`evaluate`."""
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    count = 0
    for out, y in _outputs(model, loader, device, amp, channels_last, pad_to):
        sums += torch.stack([relative_l2(out, y).sum(), relative_h1(out, y).sum()]).double()
        count += y.shape[0]
    l2, h1, count_all = _reduce(sums, count, dist_info or DistInfo())
    seen = max(count_all, 1.0)
    return {"rel_l2": l2 / seen, "rel_h1": h1 / seen, "count": int(count_all)}


def _fields(ds: Any) -> tuple[Tensor, Tensor]:
    """All inputs and targets of a dataset of pairs, (N, C, s, s) each."""
    coeff, sol = getattr(ds, "coeff", None), getattr(ds, "sol", None)
    if isinstance(coeff, Tensor) and isinstance(sol, Tensor):  # a DarcyDataset: (N, s, s)
        return coeff.unsqueeze(1), sol.unsqueeze(1)
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.stack(ys)


class OperatorTask:
    """Operator learning: the loss is the mean over a batch of the per-sample relative L2
    error (``loss="rel_h1"``: relative H1), measured on the decoded output (the model is a
    :class:`~mgnet.train.normalizer.NormalizedOperator`). The metrics are the relative L2
    and H1 errors; the lowest validation relative L2 is best, a tie goes to the later
    epoch. The test split is also evaluated after every epoch and logged as
    ``test_rel_l2``/``test_rel_h1`` (:attr:`test_every_epoch`); it never selects."""

    score = "rel_l2"
    metrics = ("rel_l2", "rel_h1")
    sums = ("loss_sum", "rel_l2_sum", "rel_h1_sum")
    #: the loop also evaluates the test split after every epoch (reported, not selected on)
    test_every_epoch = True

    def __init__(self, loss: str = "rel_l2") -> None:
        if loss not in ("rel_l2", "rel_h1"):
            raise ValueError(f"loss: {loss!r} is not an operator loss; accepted: rel_l2, rel_h1")
        self.loss_name = loss
        self._loss = relative_l2 if loss == "rel_l2" else relative_h1

    def prepare(self, x: Tensor, y: Tensor, epoch: int, step: int, rank: int) -> FieldBatch:
        return FieldBatch(x, y)

    def loss(self, output: Tensor, batch: FieldBatch) -> Tensor:
        return self._loss(output.float(), batch.y).mean()

    def step_sums(self, output: Tensor, batch: FieldBatch, loss: Tensor) -> Tensor:
        """``[loss * n, sum of relative L2, sum of relative H1]`` of one step, on the
        device (never read per step)."""
        out = output.detach().float()
        n = batch.y.shape[0]
        return torch.stack(
            [
                loss.detach().double() * n,
                relative_l2(out, batch.y).sum().double(),
                relative_h1(out, batch.y).sum().double(),
            ]
        )

    def train_metrics(self, sums: list[float], count: float) -> dict[str, float]:
        seen = max(count, 1.0)
        return {
            "train_loss": sums[0] / seen,
            "train_rel_l2": sums[1] / seen,
            "train_rel_h1": sums[2] / seen,
        }

    def evaluate(self, model: nn.Module, loader: Any, **kwargs: Any) -> dict[str, Any]:
        """``rel_l2``, ``rel_h1`` and ``count`` (see :func:`evaluate_operator`)."""
        return evaluate_operator(model, loader, **kwargs)

    @staticmethod
    def improves(score: float, best: float | None) -> bool:
        """Whether ``score`` (an error) makes a new best: at most the best so far."""
        return best is None or score <= best

    @staticmethod
    def set_up_model(model: nn.Module, splits: Any, name: str) -> nn.Module:
        """Check that every split's grid fits ``model`` (a
        :class:`~mgnet.train.normalizer.NormalizedOperator`), then fit its normalisers on
        the training split. A grid the operator cannot take is a one-line ValueError."""
        for split in ("train", "val", "test"):
            ds = getattr(splits, split)
            side = getattr(ds, "resolution", None)
            if len(ds) and side is not None and not model.accepts(side):
                raise ValueError(
                    f"model: {name!r} cannot take the {side}x{side} grid of the {split} "
                    f"split of {splits.info.name!r}; accepted sides: {model.sides_accepted()}"
                )
        x, y = _fields(splits.train)
        return model.fit(x, y)

    @staticmethod
    def describe_result(result: dict[str, Any]) -> str:
        return (
            f"test relative L2 {result['rel_l2']:.4g}, H1 {result['rel_h1']:.4g} "
            f"({result['count']} samples)"
        )

    @staticmethod
    def describe_epoch(row: dict[str, Any], split: str) -> str:
        text = (
            f"loss {row['train_loss']:.4f}  rel L2 {row['train_rel_l2']:.4f}  "
            f"{split} {row[f'{split}_rel_l2']:.4f}"
        )
        if split != "test" and "test_rel_l2" in row:
            text += f" (test {row['test_rel_l2']:.4f})"
        return text

    @staticmethod
    def describe_test(test: dict[str, Any], best: dict[str, Any], paper: bool) -> str:
        errors = f"relative L2 {test['rel_l2']:.4g}, H1 {test['rel_h1']:.4g}"
        if paper:
            return (
                f"test {errors} (final epoch); best over the epochs {best['test_rel_l2']:.4g}"
                f" (epoch {best['epoch']}, chosen on the test split)"
            )
        return f"test {errors} (model of epoch {best['epoch']}, val {best['val_rel_l2']:.4g})"


# ------------------------------------------------------------------------ the choice
def check_model_for_data(model: str, data: str) -> bool:
    """Whether ``data`` is operator data; a one-line ValueError when ``model`` is of the
    other kind (a classifier on fields, or an operator on labelled images)."""
    from mgnet.data import dataset_info
    from mgnet.models import list_models, model_info

    info = dataset_info(data)
    operator = model_info(model).is_operator
    if operator and not info.is_operator:
        raise ValueError(
            f"model: {model!r} is a neural operator (a field to a field); data {data!r} is "
            f"a classification dataset; accepted: a classifier (mgnet models)"
        )
    if info.is_operator and not operator:
        raise ValueError(
            f"model: {model[:80]!r} is a classifier; data {data!r} holds pairs of fields "
            f"(operator learning); accepted: {', '.join(list_models(kind='operator'))}"
        )
    return info.is_operator


def make_task(cfg: Any) -> ClassificationTask | OperatorTask:
    """The task of a run's config (:class:`~mgnet.train.config.TrainConfig`), chosen by its
    data: :class:`OperatorTask` for operator data (``DatasetInfo.task``), else
    :class:`ClassificationTask`. A model of the wrong kind for the data, or options of the
    other task, are refused in one line, before anything is read or built."""
    if check_model_for_data(cfg.model, cfg.data):
        if cfg.loss == "cross_entropy":
            raise ValueError(
                f"loss: 'cross_entropy' is a classification loss; data {cfg.data!r} is "
                "operator data; accepted: rel_l2, rel_h1 (auto: rel_l2)"
            )
        for name in ("mixup", "cutmix"):
            if getattr(cfg, name):
                raise ValueError(
                    f"{name}: mixes labelled images; data {cfg.data!r} is operator data, "
                    f"whose pairs do not mix; accepted: 0"
                )
        return OperatorTask("rel_l2" if cfg.loss == "auto" else cfg.loss)
    if cfg.loss not in ("auto", "cross_entropy"):
        raise ValueError(
            f"loss: {cfg.loss!r} is an operator loss; data {cfg.data!r} is a classification "
            "dataset; accepted: cross_entropy (auto)"
        )
    return ClassificationTask(cfg.label_smoothing, cfg.mixup, cfg.cutmix, cfg.seed)


def wrap_model(model: nn.Module, is_operator: bool) -> nn.Module:
    """The model a run trains: an operator between its pointwise normalisers
    (:class:`~mgnet.train.normalizer.NormalizedOperator`, fitted later on the training
    split or loaded from a checkpoint), a classifier as it is."""
    if not is_operator:
        return model
    from mgnet.train.normalizer import NormalizedOperator

    return NormalizedOperator(model)


def task_defaults(data: str) -> dict[str, Any]:
    """The values a command line starts from for ``data``: its packaged recipe
    (``DatasetInfo.recipe``; ``darcy``: ``darcy_operator``), or nothing."""
    from mgnet.data import dataset_info
    from mgnet.train.config import load_recipe

    recipe = dataset_info(data).recipe
    return load_recipe(recipe) if recipe else {}
