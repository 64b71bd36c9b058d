"""Data-parallel training under ``torchrun``: process-group setup and small helpers.

``torchrun --nproc_per_node=N -m mgnet.cli train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_distributed` reads them. Without them (the plain ``mgnet
train``) the run is a single process and every helper here is a no-op.

BatchNorm under data parallelism normalizes with the statistics of each process's share
of the batch unless :func:`convert_sync_batchnorm` makes it use the whole global batch:
torch's ``nn.SyncBatchNorm`` on CUDA, :class:`CpuSyncBatchNorm` on the CPU (gloo), where
torch's own layer refuses to run.

For tests and debugging, the environment variable ``MGNET_RANK_STATE_DIR=DIR`` makes
every process of a run write its final model state to ``DIR/rank<R>.pt``
(:func:`dump_rank_state`), so the replicas can be compared outside the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mgnet.device import resolve_device

__all__ = [
    "DistInfo",
    "init_distributed",
    "close_distributed",
    "all_reduce_sum",
    "agree",
    "barrier",
    "cuda_index",
    "CpuSyncBatchNorm",
    "convert_sync_batchnorm",
    "replica_max_diff",
    "dump_rank_state",
    "RANK_STATE_ENV",
]

RANK_STATE_ENV = "MGNET_RANK_STATE_DIR"


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its machine,
    and ``device_index``, the CUDA device it uses among those it can see."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False
    device_index: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def cuda_index(local_rank: int) -> int:
    """The CUDA device of the process with ``local_rank``: the local rank itself when the
    process sees every GPU of its machine, modulo the count it sees otherwise (a scheduler
    that gives each process one GPU makes it device 0 of every process)."""
    count = torch.cuda.device_count()
    return local_rank % count if count else 0


def init_distributed(device: str | torch.device | None) -> DistInfo:
    """Join the process group that ``torchrun`` describes (gloo on CPU, nccl on CUDA);
    ``device`` is the run's request, resolved by :func:`mgnet.device.resolve_device`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device).type == "cuda"
    index = cuda_index(local_rank) if use_cuda else 0
    if dist.is_initialized():
        return DistInfo(rank, world_size, local_rank, False, index)
    if use_cuda:
        torch.cuda.set_device(index)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, True, index)


def close_distributed(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``t`` over all processes (``t`` itself when not distributed)."""
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def agree(flags: torch.Tensor, info: DistInfo) -> list[int]:
    """The largest value of each entry of the integer tensor ``flags`` over all processes
    (one all-reduce), read on the host; the processes decide on it together."""
    if info.enabled:
        flags = flags.clone()
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [int(v) for v in flags.tolist()]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class _SumOverProcesses(torch.autograd.Function):
    """``y = sum over processes of x``; its gradient is the sum of the processes' gradients
    of ``y`` (every process's loss depends on every process's ``x`` through ``y``)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch on the CPU (gloo), where torch's ``nn.SyncBatchNorm``
    and DDP refuse to run it: in training, the mean and variance per channel are those of
    the global batch, all processes together. Any input of shape (N, C, *).

    Two differentiable all-reduces per layer: the sums and counts (for the mean), then the
    sums of squared deviations from that mean (for the variance, numerically as stable
    as a single-process BatchNorm). The backward pass all-reduces their gradients, so
    every process gets the gradient of the global loss. Running statistics get the
    unbiased global variance, as ``nn.BatchNorm`` does. In evaluation, or outside a
    process group, it is a plain BatchNorm.
    """

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002 - torch's name
        if input.dim() < 2:
            raise ValueError(f"input: expected (N, C, *), got shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002 - torch's name
        if not self.training or not dist.is_initialized() or dist.get_world_size() <= 1:
            return super().forward(input)
        self._check_input_dim(input)
        all_reduce = _SumOverProcesses.apply
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()  # statistics in float32, also under bf16/fp16 autocast
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float32)
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centered = x - mean.reshape(shape)
        var = all_reduce((centered * centered).sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                n = float(total)
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / max(n - 1, 1), m)
        out = centered * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every ``BatchNorm*d`` of ``model`` made to normalize over the global batch: torch's
    ``nn.SyncBatchNorm`` on CUDA, :class:`CpuSyncBatchNorm` on the CPU (the layers change
    class in place). Weights, buffers and state-dict keys stay as they were."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm):
            m.__class__ = CpuSyncBatchNorm
    return model


@torch.no_grad()
def replica_max_diff(tensors: list[Tensor], info: DistInfo) -> float:
    """Largest difference of ``tensors`` between any two processes (0.0: identical
    everywhere; always 0.0 in a single process)."""
    if not info.enabled or not tensors:
        return 0.0
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max())


def dump_rank_state(model: nn.Module, info: DistInfo) -> Path | None:
    """Write ``model``'s state to ``$MGNET_RANK_STATE_DIR/rank<R>.pt`` when that variable
    is set (every process its own file); returns the path, or None."""
    folder = os.environ.get(RANK_STATE_ENV)
    if not folder:
        return None
    path = Path(folder) / f"rank{info.rank}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return path
