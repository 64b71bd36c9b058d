"""What a run optimizes and measures: the task, kept apart from the loop.

The training loop (:mod:`mgnet.train.loop`) knows nothing about labels or accuracies. It
asks its task to

* ``prepare`` a batch (here: mixup/CutMix) and compute its ``loss``;
* add a step's statistics to a tensor of sums on the device (``step_sums``), which the
  loop reads once per epoch, and turn the epoch's sums into metrics (``train_metrics``);
* ``evaluate`` a model on a loader (validation, test);
* say whether a score ``improves`` on the best so far (which model is "best").

:class:`ClassificationTask` is the one task now: cross-entropy with label smoothing, top-1
accuracy, the highest accuracy is best and a tie goes to the later epoch. Another task
(regression, operator learning) supplies the same few members.

:func:`evaluate` is the one evaluation of a classifier: the loop's validation and test,
``mgnet train --test-only`` and ``mgnet eval`` all run it. It accumulates on the device
and reads the result once, after the last batch.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from mgnet.train.distributed import DistInfo, all_reduce_sum
from mgnet.train.mixing import MixedBatch, mix_batch

__all__ = ["ClassificationTask", "autocast", "evaluate", "make_task", "to_device"]


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
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1, top-k
    confusion = (
        torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        if num_classes
        else None
    )
    count = 0
    for x, y in loader:
        n = y.shape[0]
        x, y = to_device(x, y, device, channels_last)
        if pad_to:
            x = _pad(x, pad_to, channels_last)
        with autocast(device, amp):
            logits = model(x)
        logits = logits[:n].float()
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
        count += n
    total = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64).to(device)])
    loss_sum, top1, topk_hits, count_all = all_reduce_sum(total, dist_info).tolist()
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


def make_task(cfg: Any) -> ClassificationTask:
    """The task of a run's config (:class:`~mgnet.train.config.TrainConfig`): image
    classification for every dataset registered now."""
    return ClassificationTask(cfg.label_smoothing, cfg.mixup, cfg.cutmix, cfg.seed)
