"""The training loop. It reads top to bottom: setup, data, model, optimizer, resume,
epochs (train, validate, log, checkpoint), then the test of the model chosen on the
validation split.

Files in ``cfg.output_dir`` (written by rank 0 only):

* ``config.json``: the resolved :class:`TrainConfig`;
* ``metrics.jsonl``: one JSON line per epoch (loss, accuracy, val accuracy, lr, images/s);
* ``checkpoint.pt``: the latest state, rewritten atomically after every epoch and on Ctrl-C;
* ``best.pt``: the weights with the best validation accuracy so far (ties: the later epoch;
  with ``model_ema`` these are the averaged weights, which are the ones validated);
* ``results.json``: test accuracy of the best-validation model, parameter count, wall time.

Accuracies are in percent. Data order is a function of (seed, epoch) and every random
generator is saved in the checkpoint, so on the CPU ``--resume`` reproduces an
uninterrupted run bit for bit (with ``workers=0``; with worker processes, a resume from
the middle of an interrupted epoch redraws that epoch's augmentation).
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mgnet.data import DatasetInfo, EpochSampler, get_dataset
from mgnet.data.device_loader import DeviceLoader, use_device_loader
from mgnet.device import resolve_device
from mgnet.errors import DivergenceError
from mgnet.models import count_parameters, create_model
from mgnet.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mgnet.train.config import RUNTIME_FIELDS, TrainConfig
from mgnet.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    close_distributed,
    convert_sync_batchnorm,
    dump_rank_state,
    init_distributed,
    replica_max_diff,
)
from mgnet.train.ema import ModelEma
from mgnet.train.mixing import mix_batch

__all__ = [
    "train",
    "evaluate",
    "test_checkpoint",
    "resume_config",
    "build_model",
    "resolve_device",
    "lr_multiplier",
    "TrainingDiverged",
]

StepHook = Callable[[int, int, float], None]


class TrainingDiverged(DivergenceError):
    """The loss became NaN or infinite; the message names the epoch and step."""


# ---------------------------------------------------------------------------- helpers
def build_model(cfg: TrainConfig, info: DatasetInfo, num_classes: int | None = None) -> nn.Module:
    """The model of ``cfg`` for dataset ``info`` (``num_classes``: the classes actually
    found, where they depend on the files); a mismatch is a one-line ValueError."""
    if cfg.in_channels is not None and cfg.in_channels != info.in_channels:
        raise ValueError(
            f"in_channels: {cfg.in_channels} does not match data {info.name!r}, "
            f"which has {info.in_channels} channel(s); accepted: "
            f"{info.in_channels} (or leave it out)"
        )
    model = create_model(
        cfg.model,
        num_classes=num_classes or info.num_classes,
        in_channels=info.in_channels,
        **cfg.model_args,
    )
    need = getattr(model, "min_input_size", 1)
    if need > info.input_size:
        levels = int(math.log2(info.input_size)) + 1
        raise ValueError(
            f"model: {cfg.model!r} needs inputs of at least {need}x{need} for its "
            f"levels, data {info.name!r} is {info.input_size}x{info.input_size}; "
            f"accepted: a model with at most {levels} levels (stages) for this data"
        )
    return model


def lr_multiplier(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Factor on ``cfg.lr`` after ``step`` optimizer steps (the schedule, per step).

    ``warmup_epochs`` of linear warm-up, then: ``cosine`` anneals to 0 at the last step;
    ``step`` multiplies by ``lr_gamma`` every ``lr_step_size`` epochs; ``onecycle`` rises
    linearly from 1/25 to 1 over the first 30 % of the steps and anneals (cosine) to
    1/25e4 (the learning-rate shape of OneCycleLR; momentum is not cycled); ``none`` is 1.
    """
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if cfg.lr_scheduler == "onecycle":
        peak = max(int(0.3 * total), 1)
        if step < peak:
            return 1 / 25 + (1 - 1 / 25) * step / peak
        t = (step - peak) / max(total - peak, 1)
        return 1 / 25e4 + (1 - 1 / 25e4) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if step < warm:
        return (step + 1) / warm
    if cfg.lr_scheduler == "cosine":
        t = (step - warm) / max(total - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if cfg.lr_scheduler == "step":
        return cfg.lr_gamma ** ((step // steps_per_epoch) // cfg.lr_step_size)
    return 1.0


def _autocast(device: torch.device, amp: str):
    if amp == "none":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _to_device(x: Tensor, y: Tensor, device: torch.device, channels_last: bool):
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    dist_info: DistInfo | None = None,
) -> dict:
    """Mean cross-entropy ``loss`` and top-1 ``accuracy`` (percent) over ``loader``."""
    dist_info = dist_info or DistInfo()
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for x, y in loader:
        x, y = _to_device(x, y, device, channels_last)
        with _autocast(device, amp):
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        sums += torch.stack(
            [
                loss.double(),
                (logits.argmax(1) == y).sum().double(),
                torch.tensor(float(y.numel()), dtype=torch.float64, device=device),
            ]
        )
    loss_sum, correct, count = all_reduce_sum(sums, dist_info).tolist()
    count = max(count, 1.0)
    return {"loss": loss_sum / count, "accuracy": 100.0 * correct / count, "count": int(count)}


class _StopFlag:
    """Turns the first Ctrl-C into a request honoured between two steps; a second one
    interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _log(info: DistInfo, message: str) -> None:
    if info.is_main:
        print(message, flush=True)


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config stored in ``run_dir/checkpoint.pt``, with runtime ``overrides``.

    Only fields that do not change the computed numbers (device, workers, threads,
    progress, data_dir) may differ from the stored run; anything else is a ValueError.
    """
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    stored = dict(state["config"])
    stored["output_dir"] = str(run_dir)
    for key, value in (overrides or {}).items():
        if key == "output_dir" and Path(value) != Path(run_dir):
            raise ValueError(
                f"output_dir: a resumed run writes to its own directory "
                f"{str(run_dir)!r}; leave --output-dir out"
            )
        if key in RUNTIME_FIELDS or key == "output_dir":
            stored[key] = value
        elif key not in stored or stored[key] != value:
            raise ValueError(
                f"resume: {key}={value!r} differs from the stored run "
                f"({stored.get(key)!r}); a resumed run keeps its config, only "
                f"{', '.join(RUNTIME_FIELDS)} may change"
            )
    return TrainConfig.from_dict(stored)


def _loaders(cfg: TrainConfig, dist_info: DistInfo, device: torch.device):
    """The splits and their loaders: ``DataLoader`` + :class:`EpochSampler`, or the
    device-resident :class:`DeviceLoader` for in-memory image sets (``cfg.loader``).
    Both follow the same (seed, epoch, skip) protocol."""
    splits = get_dataset(cfg.data, root=cfg.data_dir, download=cfg.download, augment=cfg.augment)
    world, rank = dist_info.world_size, dist_info.rank
    pin = device.type == "cuda"

    def make(ds, train: bool):
        batch = cfg.batch_size if train else 2 * cfg.batch_size
        if use_device_loader(cfg.loader, ds, device):
            return DeviceLoader.from_dataset(
                ds,
                batch,
                shuffle=train,
                seed=cfg.seed,
                num_replicas=world,
                rank=rank,
                device=device,
                channels_last=cfg.channels_last,
            )
        sampler = EpochSampler(
            len(ds), seed=cfg.seed, shuffle=train, num_replicas=world, rank=rank, drop_last=train
        )
        # its own generator: the loader never draws from the global one, whose state the
        # checkpoint restores for the augmentation done in this process
        return DataLoader(
            ds,
            batch_size=batch,
            sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=pin,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    return splits, make(splits.train, True), make(splits.val, False), make(splits.test, False)


def _set_epoch(loader, epoch: int, skip: int) -> None:
    """Select the data of ``epoch``: its order and (with worker processes) the workers'
    seeds are functions of (seed, epoch)."""
    if isinstance(loader, DeviceLoader):
        loader.set_epoch(epoch, skip)
        return
    loader.sampler.set_epoch(epoch, skip)
    loader.generator.manual_seed(1_000_003 * loader.sampler.seed + epoch + 1)


def _check_forward(model: nn.Module, loader: DataLoader, device: torch.device, name: str):
    """One eval-mode forward of a few samples, so a model/data mismatch fails now, in one
    line, and not inside the first training step."""
    x, _ = next(iter(loader))
    model.eval()
    try:
        with torch.no_grad():
            model(x[:2].to(device))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"model: {name!r} cannot take the data's {tuple(x.shape[1:])} inputs ({first[:200]})"
        ) from None


# ------------------------------------------------------------------------------ train
def train(cfg: TrainConfig, resume: bool = False, step_hook: StepHook | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns the dict written to ``results.json``.

    Args:
        cfg: the run (see :class:`TrainConfig`).
        resume: continue from ``cfg.output_dir/checkpoint.pt`` (see :func:`resume_config`).
        step_hook: called as ``hook(epoch, step, loss)`` after every optimizer step
            (1-based epoch and step); for tests and instrumentation.
    """
    t_start = time.perf_counter()
    cfg.validate()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    dist_info = init_distributed(cfg.device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    try:
        return _train(cfg, resume, step_hook, device, dist_info, t_start)
    finally:
        close_distributed(dist_info)
        torch.set_num_threads(threads)


def _train(
    cfg: TrainConfig,
    resume: bool,
    step_hook: StepHook | None,
    device: torch.device,
    dist_info: DistInfo,
    t_start: float,
) -> dict:
    out = Path(cfg.output_dir)
    main = dist_info.is_main
    if not resume and ((out / "checkpoint.pt").exists() or (out / "results.json").exists()):
        raise ValueError(
            f"output_dir: {str(out)!r} already holds a run; continue it with "
            f"--resume {out}, or choose another --output-dir"
        )

    # -- seeds: every rank draws the same stream, so rank 0's saved state restores all
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # -- data
    splits, train_loader, val_loader, test_loader = _loaders(cfg, dist_info, device)
    steps_per_epoch = len(train_loader)

    # -- model, loss, optimizer, schedule
    # the classes actually present (an image folder has its own), not only the table's
    num_classes = getattr(splits.train, "num_classes", None) or splits.info.num_classes
    model = build_model(cfg, splits.info, num_classes).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    _check_forward(model, val_loader, device, cfg.model)
    n_params = count_parameters(model)
    if cfg.sync_bn and dist_info.enabled:
        model = convert_sync_batchnorm(model, device)
    elif cfg.sync_bn:
        _log(dist_info, "sync_bn: one process, whose BatchNorm sees the whole batch already")
    ema = ModelEma(model, cfg.model_ema_decay) if cfg.model_ema else None
    net = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)
    # what is validated, selected and tested: the weight average when there is one
    eval_model = ema.module if ema is not None else model
    eval_net = ema.module if ema is not None else net
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, cfg, steps_per_epoch)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

    # -- resume: weights, optimizer, schedule, generators, where the last epoch stopped
    start_epoch, best, partial, elapsed = 0, {"val_accuracy": -1.0, "epoch": 0}, None, 0.0
    if resume:
        state = load_checkpoint(out / "checkpoint.pt", map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["model_ema"])
        set_rng_state(state["rng"])
        start_epoch, best, partial = state["epoch"], state["best"], state["partial"]
        elapsed = state["elapsed"]
        if start_epoch >= cfg.epochs:
            raise ValueError(
                f"resume: the run in {str(out)!r} already finished its "
                f"{cfg.epochs} epochs; nothing to continue"
            )
        _log(
            dist_info,
            f"resuming {str(out)!r} at epoch {start_epoch + 1}"
            + (f", step {partial['step'] + 1}" if partial else ""),
        )

    # -- output directory
    metrics_path = out / "metrics.jsonl"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "config.json", cfg.to_dict())
        kept = []
        if resume and metrics_path.exists():  # drop lines of epochs that will be redone
            kept = [
                line
                for line in metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["epoch"] <= start_epoch
            ]
        metrics_path.write_text("".join(line + "\n" for line in kept))

    def checkpoint(epoch_done: int, partial_state: dict | None) -> None:
        if main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "model_ema": ema.state_dict() if ema is not None else None,
                    "num_classes": num_classes,
                    "epoch": epoch_done,
                    "partial": partial_state,
                    "best": best,
                    "rng": rng_state(),
                    "config": cfg.to_dict(),
                    "elapsed": elapsed + time.perf_counter() - t_start,
                },
                out / "checkpoint.pt",
            )

    _log(
        dist_info,
        f"training {cfg.model} ({n_params:,} parameters) on {cfg.data} "
        f"({len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test) "
        f"for {cfg.epochs} epochs on {device.type}"
        + (f" x{dist_info.world_size}" if dist_info.enabled else ""),
    )

    # -- epochs
    show_bar = cfg.progress and main and sys.stderr.isatty()
    with _StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            step = partial["step"] if partial else 0
            sums = torch.tensor(
                partial["sums"] if partial else [0.0, 0.0, 0.0], dtype=torch.float64
            )  # loss sum, correct, seen (this rank)
            partial = None
            _set_epoch(train_loader, epoch, skip=step * cfg.batch_size)
            net.train()
            t_epoch = time.perf_counter()
            try:
                bar = tqdm(
                    train_loader,
                    disable=not show_bar,
                    leave=False,
                    dynamic_ncols=True,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    initial=step,
                    total=steps_per_epoch,
                )
                for x, y in bar:
                    x, y = _to_device(x, y, device, cfg.channels_last)
                    batch = mix_batch(
                        x, y, cfg.mixup, cfg.cutmix, cfg.seed, epoch, step, dist_info.rank
                    )
                    with _autocast(device, cfg.amp):
                        logits = net(batch.x)
                        loss = batch.loss(criterion, logits.float())
                    loss_value = all_reduce_sum(loss.detach(), dist_info).item()
                    if not math.isfinite(loss_value):
                        raise TrainingDiverged(
                            f"loss is {loss_value} at epoch {epoch + 1}, step {step + 1} "
                            f"(lr {optimizer.param_groups[0]['lr']:.3g}); lower --lr or check "
                            "the data"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    if ema is not None:
                        ema.update(model)
                    lr = optimizer.param_groups[0]["lr"]  # the lr this step used
                    scheduler.step()
                    step += 1
                    n = y.numel()
                    sums += torch.tensor(
                        [loss.item() * n, (logits.argmax(1) == batch.y_main).sum().item(), n],
                        dtype=torch.float64,
                    )
                    bar.set_postfix(loss=f"{loss_value / dist_info.world_size:.3f}", refresh=False)
                    if step_hook is not None:
                        step_hook(epoch + 1, step, loss_value / dist_info.world_size)
                    if stop.requested:
                        raise KeyboardInterrupt
                bar.close()
            except KeyboardInterrupt:
                checkpoint(epoch, {"step": step, "sums": sums.tolist()})
                _log(
                    dist_info,
                    f"interrupted at epoch {epoch + 1}, step {step}; checkpoint "
                    f"written to {str(out / 'checkpoint.pt')!r}; continue with: "
                    f"mgnet train --resume {out}",
                )
                raise
            train_time = time.perf_counter() - t_epoch

            # validate, log, keep the best model (chosen on the validation split only)
            loss_sum, correct, seen = all_reduce_sum(sums.to(device), dist_info).tolist()
            val = evaluate(eval_net, val_loader, device, cfg.amp, cfg.channels_last, dist_info)
            # ties go to the later epoch: as good on val, and trained longer at a lower lr
            is_best = val["accuracy"] >= best["val_accuracy"]
            if is_best:
                best = {"val_accuracy": val["accuracy"], "epoch": epoch + 1}
            row = {
                "epoch": epoch + 1,
                "train_loss": loss_sum / max(seen, 1),
                "train_accuracy": 100.0 * correct / max(seen, 1),
                "val_loss": val["loss"],
                "val_accuracy": val["accuracy"],
                "lr": lr,
                "images_per_s": seen / max(train_time, 1e-9),
                "epoch_time_s": time.perf_counter() - t_epoch,
                "best": is_best,
            }
            if main:
                with metrics_path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                if is_best:
                    save_checkpoint(
                        {
                            "model": eval_model.state_dict(),
                            "ema": ema is not None,
                            "num_classes": num_classes,
                            "epoch": epoch + 1,
                            "val_accuracy": val["accuracy"],
                            "config": cfg.to_dict(),
                        },
                        out / "best.pt",
                    )
            checkpoint(epoch + 1, None)
            _log(
                dist_info,
                f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                f"acc {row['train_accuracy']:6.2f}  val {val['accuracy']:6.2f}"
                f"{'*' if is_best else ' '}  lr {row['lr']:.2e}  "
                f"{row['images_per_s']:,.0f} img/s  {row['epoch_time_s']:.1f}s",
            )

    # -- replicas: every process must end with the same weights (buffers such as BatchNorm
    # running statistics are per process unless sync_bn)
    param_diff = replica_max_diff(list(model.parameters()), dist_info)
    buffer_diff = replica_max_diff(
        [b for b in model.buffers() if b.dtype.is_floating_point], dist_info
    )
    dump_rank_state(model, dist_info)

    # -- test: the last weights, then the weights chosen on the validation split
    last = evaluate(eval_net, test_loader, device, cfg.amp, cfg.channels_last, dist_info)
    barrier(dist_info)
    eval_model.load_state_dict(load_checkpoint(out / "best.pt", map_location=device)["model"])
    test = evaluate(eval_net, test_loader, device, cfg.amp, cfg.channels_last, dist_info)
    results = {
        "model": cfg.model,
        "data": cfg.data,
        "parameters": n_params,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "best_epoch": best["epoch"],
        "best_val_accuracy": best["val_accuracy"],
        "last_test_accuracy": last["accuracy"],
        "epochs": cfg.epochs,
        "wall_time_s": elapsed + time.perf_counter() - t_start,
        "device": device.type,
        "world_size": dist_info.world_size,
        "replica_max_param_diff": param_diff,
        "replica_max_buffer_diff": buffer_diff,
        "model_ema": cfg.model_ema,
        "seed": cfg.seed,
    }
    if main:
        _write_json(out / "results.json", results)
    _log(
        dist_info,
        f"test accuracy {test['accuracy']:.2f}% (model of epoch {best['epoch']}, "
        f"val {best['val_accuracy']:.2f}%), {n_params:,} parameters, "
        f"{results['wall_time_s']:.1f}s; results in {str(out / 'results.json')!r}",
    )
    return results


def test_checkpoint(cfg: TrainConfig) -> dict:
    """Test accuracy of the run in ``cfg.output_dir``: its ``best.pt`` (the model chosen on
    the validation split), or the latest ``checkpoint.pt`` when there is no best yet."""
    device = resolve_device(cfg.device)
    out = Path(cfg.output_dir)
    torch.manual_seed(cfg.seed)
    splits, _, _, test_loader = _loaders(cfg, DistInfo(), device)
    path = out / "best.pt" if (out / "best.pt").exists() else out / "checkpoint.pt"
    state = load_checkpoint(path, map_location=device)
    num_classes = state.get("num_classes") or getattr(splits.train, "num_classes", None)
    model = build_model(cfg, splits.info, num_classes).to(device)
    # best.pt holds the weights that were validated (the average with model_ema);
    # checkpoint.pt holds both, and the average is what the run evaluates
    ema_state = state.get("model_ema")
    model.load_state_dict(ema_state["model"] if ema_state else state["model"])
    test = evaluate(model, test_loader, device, cfg.amp, cfg.channels_last)
    result = {
        "model": cfg.model,
        "data": cfg.data,
        "checkpoint": str(path),
        "epoch": state["epoch"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_count": test["count"],
        "parameters": count_parameters(model),
    }
    print(
        f"test accuracy {test['accuracy']:.2f}% ({test['count']} images) of {str(path)!r} "
        f"(epoch {state['epoch']}), {result['parameters']:,} parameters"
    )
    return result
