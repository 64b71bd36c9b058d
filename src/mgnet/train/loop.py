"""The training loop, in phases that read top to bottom (the methods of :class:`Trainer`):

1. **set-up** (:meth:`Trainer.set_up`): seeds, data, model, optimizer, schedule;
2. **resume** (:meth:`Trainer.restore`): weights, optimizer, schedule, generators and where
   the last epoch stopped, from ``checkpoint.pt``;
3. **one epoch** (:meth:`Trainer.run_epoch`): the optimizer steps;
4. **end of epoch** (:meth:`Trainer.end_epoch`): validate, log, keep the best model,
   checkpoint;
5. **final test** (:meth:`Trainer.final_test`): test the chosen model, write the results.

:func:`train` runs them inside the run folder's lock (:mod:`mgnet.train.rundir`; how the
trainer, its task, the loader and the run folder fit together: docs/design.md). What the
run optimizes and measures -- the loss, the metrics, what "best" means -- is its task
(:class:`~mgnet.train.task.ClassificationTask`); the loop only calls it.

Files in ``cfg.output_dir`` (written by rank 0 only):

* ``config.json``: the resolved :class:`TrainConfig`;
* ``metrics.jsonl``: one JSON line per epoch (loss, accuracy, val accuracy, lr, images/s);
* ``checkpoint.pt``: the latest state, rewritten atomically after every epoch and on Ctrl-C;
* ``best.pt``: the weights with the best validation accuracy so far (ties: the later epoch;
  with ``model_ema`` these are the averaged weights, which are the ones validated);
* ``results.json``: test accuracy of the best-validation model, parameter count, wall time;
* ``tensorboard/``: the epoch metrics as TensorBoard scalars (``tensorboard``).

With ``protocol="paper"`` there is no validation split: every epoch is tested, ``best.pt``
holds the epoch with the best test accuracy (the authors' rule) and ``results.json`` gives
the final epoch's test accuracy next to that best one.

Accuracies are in percent. Data order is a function of (seed, epoch) and every random
generator is saved in the checkpoint, so on the CPU ``--resume`` reproduces an
uninterrupted run bit for bit (with ``workers=0``; with worker processes, a resume from
the middle of an interrupted epoch redraws that epoch's augmentation). A run interrupted
after its last epoch (during the final test) is completed by ``--resume``, which then
runs only the final test.

Host synchronization: a step never waits for the device. Its loss and accuracy are added
to a tensor of sums on the device, read once at the end of the epoch (with one all-reduce
under ``torchrun``). Whether the loss stayed finite is recorded on the device as well
(the first step whose loss was NaN or infinite, and that loss), and read every
:data:`CHECK_EVERY` steps, at the end of the epoch and on Ctrl-C; a diverged run stops
there with a :class:`TrainingDiverged` naming the epoch and the step where the loss first
went bad. (With ``amp="fp16"`` the gradient scaler still reads one value per step.) Under
``torchrun`` the same check points are where the processes agree, with one all-reduce,
on stopping after a Ctrl-C, so that every process stops after the same step and rank 0's
checkpoint holds the state they all share; in a single process a Ctrl-C is honoured after
the step in progress.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from mgnet.data import EpochSampler, get_dataset
from mgnet.data.device_loader import DeviceLoader, use_device_loader
from mgnet.device import resolve_device
from mgnet.errors import DivergenceError, first_line, quote
from mgnet.log import get_logger
from mgnet.models import count_parameters
from mgnet.train import writers
from mgnet.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mgnet.train.config import RUNTIME_FIELDS, TrainConfig
from mgnet.train.distributed import (
    DistInfo,
    agree,
    all_reduce_sum,
    barrier,
    close_distributed,
    convert_sync_batchnorm,
    dump_rank_state,
    init_distributed,
    replica_max_diff,
)
from mgnet.train.ema import ModelEma
from mgnet.train.loading import build_model, evaluated_weights, load_trained_model
from mgnet.train.rundir import holds_run, lock_run_folder, read_metrics, write_json, write_lines
from mgnet.train.task import autocast, evaluate, make_task, to_device

__all__ = [
    "CHECK_EVERY",
    "Trainer",
    "TrainingDiverged",
    "build_model",
    "evaluate",
    "lr_multiplier",
    "read_run_checkpoint",
    "resolve_device",
    "resume_config",
    "test_checkpoint",
    "train",
]

log = get_logger("train")

#: steps between two reads of the device-side divergence record (and, under torchrun,
#: between two agreements on a Ctrl-C)
CHECK_EVERY = 50

StepHook = Callable[[int, int, Tensor], None]
_RUN_KEYS = ("model", "optimizer", "scheduler", "epoch", "rng", "config", "best")
_NEVER = 2**62  # "no bad step" in the device-side record


class TrainingDiverged(DivergenceError):
    """The loss became NaN or infinite; the message names the epoch and step."""


# ---------------------------------------------------------------------------- helpers
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


@contextlib.contextmanager
def _torch_settings(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """The process-wide torch settings of the run (threads, determinism), restored after."""
    threads = torch.get_num_threads()
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        if device.type == "cuda":  # cuBLAS needs a fixed workspace to be deterministic
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def _run_folder_arg(run_dir: str | Path) -> Path:
    """``run_dir`` as the folder of a run; a file is refused, naming the folder to give."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise ValueError(
            f"resume: {quote(str(run_dir))} is a file; give the run folder that holds "
            f"checkpoint.pt (here {quote(str(run_dir.parent))})"
        )
    return run_dir


def read_run_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The ``checkpoint.pt`` of a run, checked to hold everything a resume needs (a
    ``best.pt``, which holds weights only, is refused in one line)."""
    path = Path(path)
    state = load_checkpoint(path, map_location=map_location)
    if state.get("kind") == "weights" or (
        "optimizer" not in state and isinstance(state.get("model"), dict)
    ):
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} holds a model's weights only (like best.pt), "
            "not the checkpoint of a run; resume the run folder: mgnet train --resume RUN"
        )
    missing = [key for key in _RUN_KEYS if key not in state]
    if missing or not isinstance(state.get("config"), dict):
        raise CheckpointError(
            f"checkpoint: {quote(str(path))} lacks {', '.join(missing) or 'a valid config'}, "
            "which the checkpoint of a run holds"
        )
    return state


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config stored in ``run_dir/checkpoint.pt``, with runtime ``overrides``.

    Only fields that do not change the computed numbers (device, workers, threads,
    progress, data_dir, tensorboard) may differ from the stored run; anything else is a
    ValueError.
    """
    run_dir = _run_folder_arg(run_dir)
    state = read_run_checkpoint(run_dir / "checkpoint.pt")
    stored = dict(state["config"])
    stored["output_dir"] = str(run_dir)
    defaults = TrainConfig().to_dict()  # for fields newer than the stored run
    for key, value in (overrides or {}).items():
        if key == "output_dir" and Path(value) != Path(run_dir):
            raise ValueError(
                f"output_dir: a resumed run writes to its own directory "
                f"{quote(str(run_dir))}; leave --output-dir out"
            )
        if key in RUNTIME_FIELDS or key == "output_dir":
            stored[key] = value
        elif stored.get(key, defaults.get(key)) != value:
            raise ValueError(
                f"resume: {key}={quote(value)} differs from the stored run "
                f"({quote(stored.get(key))}); a resumed run keeps its config, only "
                f"{', '.join(RUNTIME_FIELDS)} may change"
            )
    try:
        return TrainConfig.from_dict(stored)
    except ValueError as e:
        raise CheckpointError(
            f"checkpoint: {quote(str(run_dir / 'checkpoint.pt'))} holds an invalid config "
            f"({str(e)[:200]})"
        ) from None


def _loaders(cfg: TrainConfig, dist_info: DistInfo, device: torch.device):
    """The splits and their loaders: ``DataLoader`` + :class:`EpochSampler`, or the
    device-resident :class:`DeviceLoader` for in-memory image sets (``cfg.loader``).
    Both follow the same (seed, epoch, skip) protocol. ``val`` is None when the run keeps
    no validation split (``protocol="paper"``). With ``compile`` the training loader
    drops a last partial batch, so that the compiled model sees one batch shape."""
    splits = get_dataset(
        cfg.data,
        root=cfg.data_dir,
        download=cfg.download,
        augment=cfg.augment,
        holdout=cfg.protocol == "val",
        mean=cfg.mean,
        std=cfg.std,
        options=cfg.data_args,
    )
    world, rank = dist_info.world_size, dist_info.rank
    pin = device.type == "cuda"

    def make(ds, train: bool):
        batch = cfg.batch_size if train else 2 * cfg.batch_size
        drop_last = train and cfg.compile
        if use_device_loader(cfg.loader, ds, device):
            return DeviceLoader.from_dataset(
                ds,
                batch,
                shuffle=train,
                drop_last=drop_last,
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
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    train = make(splits.train, True)
    val = make(splits.val, False) if len(splits.val) else None
    return splits, train, val, make(splits.test, False)


def _set_epoch(loader, epoch: int, skip: int) -> None:
    """Select the data of ``epoch``: its order and (with worker processes) the workers'
    seeds are functions of (seed, epoch)."""
    if isinstance(loader, DeviceLoader):
        loader.set_epoch(epoch, skip)
        return
    loader.sampler.set_epoch(epoch, skip)
    loader.generator.manual_seed(1_000_003 * loader.sampler.seed + epoch + 1)


def _check_forward(model: nn.Module, loader, device: torch.device, name: str) -> None:
    """One eval-mode forward of a few samples, so a model/data mismatch fails now, in one
    line, and not inside the first training step."""
    x, _ = next(iter(loader))
    model.eval()
    try:
        with torch.no_grad():
            model(x[:2].to(device))
    except RuntimeError as e:
        raise ValueError(
            f"model: {quote(name)} cannot take the data's {tuple(x.shape[1:])} inputs "
            f"({first_line(e)})"
        ) from None


# ------------------------------------------------------------------------------ train
def train(cfg: TrainConfig, resume: bool = False, step_hook: StepHook | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns the dict written to ``results.json``.

    Args:
        cfg: the run (see :class:`TrainConfig`).
        resume: continue from ``cfg.output_dir/checkpoint.pt`` (see :func:`resume_config`);
            a run whose epochs are all done but that has no ``results.json`` gets its
            final test.
        step_hook: called as ``hook(epoch, step, loss)`` after every optimizer step
            (1-based epoch and step; ``loss`` a 0-dim tensor on the device, which the
            hook syncs only if it reads it); for tests and instrumentation.
    """
    t_start = time.perf_counter()
    cfg.validate()
    device = resolve_device(cfg.device)
    dist_info = init_distributed(cfg.device)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.device_index)
    out = Path(cfg.output_dir)
    try:
        with (
            _torch_settings(cfg, device),
            lock_run_folder(out) if dist_info.is_main else contextlib.nullcontext(out),
        ):
            state = _resume_state(out) if resume else _check_fresh(out)
            finished = state is not None and state["epoch"] >= cfg.epochs
            if finished and (out / "results.json").exists():
                raise ValueError(
                    f"resume: the run in {quote(str(out))} already finished its "
                    f"{cfg.epochs} epochs; nothing to continue"
                )
            trainer = Trainer(cfg, device, dist_info, t_start)
            try:
                trainer.set_up(resume_rows=state["epoch"] if state is not None else None)
                if state is not None:
                    trainer.restore(state)
                return trainer.fit(step_hook)
            finally:
                trainer.close()
    finally:
        close_distributed(dist_info)


def _check_fresh(out: Path) -> None:
    if holds_run(out):
        raise ValueError(
            f"output_dir: {quote(str(out))} already holds a run; continue it with "
            f"--resume {quote(str(out))}, or choose another --output-dir"
        )
    return None


def _resume_state(out: Path) -> dict:
    return read_run_checkpoint(_run_folder_arg(out) / "checkpoint.pt")


class Trainer:
    """One run, from set-up to final test; :func:`train` drives it. The attributes are the
    run's parts (``model``, ``optimizer``, ``task``, loaders, ...) and its progress
    (``epoch``: epochs done; ``best``; ``partial``: where an interrupted epoch stopped)."""

    def __init__(
        self, cfg: TrainConfig, device: torch.device, dist_info: DistInfo, t_start: float
    ) -> None:
        self.cfg, self.device, self.dist, self.t_start = cfg, device, dist_info, t_start
        self.out = Path(cfg.output_dir)
        self.main = dist_info.is_main
        self.split = "val" if cfg.protocol == "val" else "test"  # where the best is chosen
        self.epoch, self.partial, self.elapsed = 0, None, 0.0
        self.best: dict[str, Any] = {"epoch": 0}  # and "<split>_<score>" once there is one
        self.writer = None

    # ------------------------------------------------------------------- 1. set-up
    def set_up(self, resume_rows: int | None = None) -> None:
        """Seeds, writers, data, model, optimizer, schedule; the run folder's config and
        metrics (``resume_rows``: on resume, keep the metrics of the epochs up to it)."""
        cfg, device, dist_info = self.cfg, self.device, self.dist
        if cfg.tensorboard and self.main:  # before the data: a missing package fails fast
            self.writer = writers.tensorboard_writer(self.out / "tensorboard")
        # every rank draws the same stream, so rank 0's saved state restores all
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)

        self.task = make_task(cfg)
        self.splits, self.train_loader, self.val_loader, self.test_loader = _loaders(
            cfg, dist_info, device
        )
        self.select_loader = self.val_loader if self.split == "val" else self.test_loader
        if self.select_loader is None:
            raise ValueError(
                f"data: {cfg.data!r} left no images for a validation split; train on all "
                "of them with --protocol paper"
            )
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch_size: {cfg.batch_size} is more than the {len(self.splits.train)} "
                "training images (with --compile the last partial batch is dropped)"
            )

        # the classes actually present (an image folder has its own), not only the table's
        self.num_classes = (
            None
            if self.splits.info.is_operator
            else getattr(self.splits.train, "num_classes", None) or self.splits.info.num_classes
        )
        model = build_model(cfg, self.splits.info, self.num_classes)
        model = self.task.set_up_model(model, self.splits, cfg.model).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        _check_forward(model, self.select_loader, device, cfg.model)
        self.n_params = count_parameters(model)
        if cfg.sync_bn and dist_info.enabled:
            model = convert_sync_batchnorm(model, device)
        elif cfg.sync_bn and self.main:
            log.info("sync_bn: one process, whose BatchNorm sees the whole batch already")
        self.model = model
        self.ema = ModelEma(model, cfg.model_ema_decay) if cfg.model_ema else None
        net: nn.Module = model
        if dist_info.enabled:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        # what is validated, selected and tested: the weight average when there is one
        self.eval_model = self.ema.module if self.ema is not None else model
        eval_net = self.ema.module if self.ema is not None else net
        self.pad_to = None
        if cfg.compile:  # one shape each: full training batches, evaluation padded
            net = torch.compile(net, dynamic=False)
            eval_net = torch.compile(eval_net, dynamic=False)
            self.pad_to = 2 * cfg.batch_size
        self.net, self.eval_net = net, eval_net

        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        elif cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(
                model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_multiplier(step, cfg, self.steps_per_epoch)
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

        if self.main:  # the run folder: its config, and the metrics of the epochs kept
            write_json(self.out / "config.json", cfg.to_dict())
            rows = []
            if resume_rows is not None:
                rows = read_metrics(self.out / "metrics.jsonl")
                rows = [r for r in rows if r["epoch"] <= resume_rows]
            write_lines(self.out / "metrics.jsonl", [_json_line(r) for r in rows])

    # -------------------------------------------------------------------- 2. resume
    def restore(self, state: dict) -> None:
        """Continue from ``state`` (a run's ``checkpoint.pt``)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["model_ema"])
        set_rng_state(state["rng"])
        self.epoch, self.best, self.partial = state["epoch"], state["best"], state.get("partial")
        self.elapsed = float(state.get("elapsed", 0.0))
        if self.main:
            if self.epoch >= self.cfg.epochs:
                log.info(
                    f"resuming {quote(str(self.out))}: all {self.cfg.epochs} epochs are "
                    "done; running the final test"
                )
            else:
                step = f", step {self.partial['step'] + 1}" if self.partial else ""
                log.info(f"resuming {quote(str(self.out))} at epoch {self.epoch + 1}{step}")

    def close(self) -> None:
        """Release what the run holds open (the TensorBoard writer)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # ---------------------------------------------------------------------- driver
    def fit(self, step_hook: StepHook | None = None) -> dict:
        """The epochs left, then the final test; returns the results."""
        cfg, splits = self.cfg, self.splits
        if self.main:
            sizes = f"{len(splits.train)} train / " + (
                f"{len(splits.val)} val / " if self.val_loader is not None else ""
            )
            log.info(
                f"training {cfg.model} ({self.n_params:,} parameters) on {cfg.data} "
                f"({sizes}{len(splits.test)} test) for {cfg.epochs} epochs on "
                f"{self.device.type}"
                + (f" x{self.dist.world_size}" if self.dist.enabled else "")
                + (" (paper protocol: no validation split)" if cfg.protocol == "paper" else "")
            )
        with _StopFlag() as stop:
            while self.epoch < cfg.epochs:
                stats = self.run_epoch(stop, step_hook)
                self.end_epoch(stats)
        return self.final_test()

    # -------------------------------------------------------------- 3. one epoch
    def run_epoch(self, stop: _StopFlag, step_hook: StepHook | None = None) -> dict:
        """The steps of epoch ``self.epoch + 1`` (the rest of it, after a resume). Returns
        the epoch's summed statistics over all processes and its training time. A Ctrl-C
        writes the checkpoint of where the epoch stopped, then re-raises."""
        cfg, device, task, epoch = self.cfg, self.device, self.task, self.epoch
        step = self.partial["step"] if self.partial else 0
        carried = self.partial["sums"] if self.partial else [0.0] * (len(task.sums) + 1)
        # the lr of the last step taken (a resume can land right after an epoch's last step)
        lr = (self.partial or {}).get("lr", self.optimizer.param_groups[0]["lr"])
        self.partial = None
        sums = torch.tensor(carried[:-1], dtype=torch.float64, device=device)
        count = carried[-1]  # images seen by this process; a host number, no device read
        watch = _DivergenceWatch(device)
        _set_epoch(self.train_loader, epoch, skip=step * cfg.batch_size)
        self.net.train()
        show_bar = cfg.progress and self.main and sys.stderr.isatty()
        t_epoch = time.perf_counter()
        bar = tqdm(
            self.train_loader,
            disable=not show_bar,
            leave=False,
            dynamic_ncols=True,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            initial=step,
            total=self.steps_per_epoch,
        )
        try:
            for x, y in bar:
                x, y = to_device(x, y, device, cfg.channels_last)
                batch = task.prepare(x, y, epoch, step, self.dist.rank)
                with autocast(device, cfg.amp):
                    output = self.net(batch.x)
                    loss = task.loss(output, batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.ema is not None:
                    self.ema.update(self.model)
                lr = self.optimizer.param_groups[0]["lr"]  # the lr this step used
                self.scheduler.step()
                sums += task.step_sums(output, batch, loss)
                count += y.shape[0]
                watch.record(loss, step + 1)
                step += 1
                if step_hook is not None:
                    step_hook(epoch + 1, step, loss.detach())
                if step % CHECK_EVERY == 0 or (stop.requested and not self.dist.enabled):
                    self._check_point(watch, stop, epoch, step)
                    if show_bar:
                        bar.set_postfix(loss=f"{float(sums[0]) / max(count, 1):.3f}")
            bar.close()
            self._check_point(watch, stop, epoch, step)
        except KeyboardInterrupt:
            watch.raise_if_diverged(epoch, lr)  # never checkpoint a diverged state
            self.checkpoint(epoch, {"step": step, "sums": [*sums.tolist(), count], "lr": lr})
            if self.main:
                log.info(
                    f"interrupted at epoch {epoch + 1}, step {step}; checkpoint written to "
                    f"{quote(str(self.out / 'checkpoint.pt'))}; continue with: "
                    f"mgnet train --resume {self.out}"
                )
            raise
        train_time = time.perf_counter() - t_epoch
        total = torch.cat([sums, torch.tensor([float(count)], dtype=torch.float64).to(device)])
        *summed, seen = all_reduce_sum(total, self.dist).tolist()  # the epoch's one read
        return {"sums": summed, "count": seen, "time": train_time, "t_epoch": t_epoch, "lr": lr}

    def _check_point(self, watch: _DivergenceWatch, stop: _StopFlag, epoch: int, step: int):
        """Read the divergence record and agree on a Ctrl-C (all processes, one read)."""
        flags = torch.stack(
            [watch.first_bad_flag(), torch.tensor(int(stop.requested)).to(self.device)]
        )
        bad, stopping = agree(flags, self.dist)
        if bad:
            watch.raise_if_diverged(epoch, self.optimizer.param_groups[0]["lr"], anywhere=bad)
        if stopping:
            raise KeyboardInterrupt

    # ---------------------------------------------------------- 4. end of epoch
    def end_epoch(self, stats: dict) -> None:
        """Validate (test, with the paper protocol), log, keep the best model, write the
        checkpoint; then the epoch counts as done."""
        cfg, task, epoch = self.cfg, self.task, self.epoch

        def evaluate_on(loader) -> dict:
            return task.evaluate(
                self.eval_net,
                loader,
                device=self.device,
                amp=cfg.amp,
                channels_last=cfg.channels_last,
                dist_info=self.dist,
                pad_to=self.pad_to,
            )

        result = evaluate_on(self.select_loader)
        key = f"{self.split}_{task.score}"
        is_best = task.improves(result[task.score], self.best.get(key))
        if is_best:
            self.best = {key: result[task.score], "epoch": epoch + 1}
        reported = {}  # the test split after every epoch, where the task asks: never selects
        if getattr(task, "test_every_epoch", False) and self.split != "test":
            test = evaluate_on(self.test_loader)
            reported = {f"test_{name}": test[name] for name in task.metrics}
        row = {
            "epoch": epoch + 1,
            **task.train_metrics(stats["sums"], stats["count"]),
            **{f"{self.split}_{name}": result[name] for name in task.metrics},
            **reported,
            "lr": stats["lr"],
            "images_per_s": stats["count"] / max(stats["time"], 1e-9),
            "epoch_time_s": time.perf_counter() - stats["t_epoch"],
            "best": is_best,
        }
        if self.main:
            with (self.out / "metrics.jsonl").open("a") as fh:
                fh.write(_json_line(row) + "\n")
            if self.writer is not None:
                for name, value in row.items():
                    if isinstance(value, (int, float)) and name != "epoch":
                        self.writer.add_scalar(name, float(value), epoch + 1)
                self.writer.flush()
            if is_best:
                self.save_best(result)
        self.epoch = epoch + 1
        self.checkpoint(self.epoch, None)
        if self.main:
            log.info(
                f"epoch {epoch + 1:>3}/{cfg.epochs}  {task.describe_epoch(row, self.split)}"
                f"{'*' if is_best else ' '}  lr {row['lr']:.2e}  "
                f"{row['images_per_s']:,.0f} img/s  {row['epoch_time_s']:.1f}s"
            )

    # -------------------------------------------------------------- checkpoints
    def checkpoint(self, epochs_done: int, partial: dict | None) -> None:
        """Write ``checkpoint.pt`` (rank 0): everything a resume needs. The one place
        that says what a run's checkpoint holds."""
        if not self.main:
            return
        save_checkpoint(
            {
                "kind": "run",
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "model_ema": self.ema.state_dict() if self.ema is not None else None,
                "num_classes": self.num_classes,
                "epoch": epochs_done,
                "partial": partial,
                "best": self.best,
                "rng": rng_state(),
                "config": self.cfg.to_dict(),
                "elapsed": self.elapsed + time.perf_counter() - self.t_start,
            },
            self.out / "checkpoint.pt",
        )

    def save_best(self, result: dict) -> None:
        """Write ``best.pt``: the evaluated weights of the best epoch (rank 0)."""
        key = f"{self.split}_{self.task.score}"
        save_checkpoint(
            {
                "kind": "weights",
                "model": self.eval_model.state_dict(),
                "ema": self.ema is not None,
                "num_classes": self.num_classes,
                "epoch": self.epoch + 1,
                key: result[self.task.score],
                "selected_on": self.split,
                "config": self.cfg.to_dict(),
            },
            self.out / "best.pt",
        )

    # ------------------------------------------------------------- 5. final test
    def final_test(self) -> dict:
        """Test the final weights, then (validation protocol) the weights chosen on the
        validation split; write ``results.json``."""
        cfg, task, device = self.cfg, self.task, self.device
        # replicas: every process must end with the same weights (buffers such as
        # BatchNorm running statistics are per process unless sync_bn)
        param_diff = replica_max_diff(list(self.model.parameters()), self.dist)
        buffer_diff = replica_max_diff(
            [b for b in self.model.buffers() if b.dtype.is_floating_point], self.dist
        )
        dump_rank_state(self.model, self.dist)
        kwargs = {
            "device": device,
            "amp": cfg.amp,
            "channels_last": cfg.channels_last,
            "dist_info": self.dist,
            "pad_to": self.pad_to,
        }
        last = task.evaluate(self.eval_net, self.test_loader, **kwargs)
        if self.split == "val":
            barrier(self.dist)
            best_state = load_checkpoint(self.out / "best.pt", map_location=device)
            self.eval_model.load_state_dict(evaluated_weights(best_state))
            test = task.evaluate(self.eval_net, self.test_loader, **kwargs)
        else:
            test = last
        score = task.score
        results = {
            "model": cfg.model,
            "data": cfg.data,
            "parameters": self.n_params,
            **{f"test_{name}": test[name] for name in task.metrics},
            "test_count": test["count"],
            "best_epoch": self.best["epoch"],
            f"best_{self.split}_{score}": self.best[f"{self.split}_{score}"],
            f"last_test_{score}": last[score],
            "epochs": cfg.epochs,
            "protocol": cfg.protocol,
            "wall_time_s": self.elapsed + time.perf_counter() - self.t_start,
            "device": device.type,
            "world_size": self.dist.world_size,
            "replica_max_param_diff": param_diff,
            "replica_max_buffer_diff": buffer_diff,
            "model_ema": cfg.model_ema,
            "seed": cfg.seed,
        }
        paper = cfg.protocol == "paper"
        if paper:
            results["selection"] = (
                f"test_{score}: the final epoch; best_test_{score}: the best over the "
                "epochs, the authors' selection rule (chosen on the test split)"
            )
        if self.main:
            write_json(self.out / "results.json", results)
            if self.writer is not None:
                self.writer.add_scalar(f"test_{score}", test[score], cfg.epochs)
            log.info(
                f"{task.describe_test(test, self.best, paper)}, {self.n_params:,} parameters, "
                f"{results['wall_time_s']:.1f}s; results in "
                f"{quote(str(self.out / 'results.json'))}"
            )
        return results


def _json_line(row: dict) -> str:
    return json.dumps(row)


class _DivergenceWatch:
    """The first step of an epoch whose loss was not finite, and that loss, recorded on
    the device without a host read (read by :meth:`first_bad_flag` at check points)."""

    def __init__(self, device: torch.device) -> None:
        self.step = torch.full((), _NEVER, dtype=torch.int64, device=device)
        self.loss = torch.zeros((), dtype=torch.float32, device=device)

    def record(self, loss: Tensor, step: int) -> None:
        first = ~torch.isfinite(loss.detach()) & (self.step == _NEVER)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss.detach().float(), self.loss)

    def first_bad_flag(self) -> Tensor:
        """``_NEVER - step`` of the first bad step (0: none), so that the maximum over the
        processes names the earliest."""
        return torch.where(self.step == _NEVER, 0, _NEVER - self.step)

    def raise_if_diverged(self, epoch: int, lr: float, anywhere: int = 0) -> None:
        step = int(self.step)
        if step == _NEVER and not anywhere:
            return
        value = float(self.loss) if step != _NEVER else float("nan")
        step = step if step != _NEVER else _NEVER - anywhere
        raise TrainingDiverged(
            f"loss is {value} at epoch {epoch + 1}, step {step} (lr {lr:.3g}); lower --lr "
            "or check the data"
        )


# ------------------------------------------------------------------- test a saved run
def test_checkpoint(cfg: TrainConfig) -> dict:
    """Test accuracy of the run in ``cfg.output_dir``: its ``best.pt`` (the model chosen on
    the validation split), or the latest ``checkpoint.pt`` when there is no best yet."""
    device = resolve_device(cfg.device)
    out = Path(cfg.output_dir)
    path = out / "best.pt" if (out / "best.pt").exists() else out / "checkpoint.pt"
    trained = load_trained_model(path)
    task = make_task(cfg)
    with _torch_settings(cfg, device):
        torch.manual_seed(cfg.seed)
        _, _, _, test_loader = _loaders(cfg, DistInfo(), device)
        model = trained.model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        test = task.evaluate(
            model, test_loader, device=device, amp=cfg.amp, channels_last=cfg.channels_last
        )
    result = {
        "model": cfg.model,
        "data": cfg.data,
        "checkpoint": str(path),
        "epoch": trained.epoch,
        **{f"test_{name}": test[name] for name in task.metrics},
        "test_count": test["count"],
        "parameters": count_parameters(model),
    }
    log.info(
        f"{task.describe_result(test)} of {quote(str(path))} (epoch {trained.epoch}), "
        f"{result['parameters']:,} parameters"
    )
    return result
