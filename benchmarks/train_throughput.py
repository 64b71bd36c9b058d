"""Training throughput: forward+backward images/s of MgNet against ResNet-18s, same run.

Measures, on the available device (CUDA if present, else CPU), for

* ``mgnet_cifar``     -- MgNet[2,2,2,2]-256-B^l, the paper's CIFAR model;
* ``resnet18``        -- torchvision's ResNet-18 as is: its ImageNet stem (7x7 stride-2
                         conv + max-pool) shrinks a 32x32 input to 8x8 before the first
                         block, so on CIFAR-size input it does ~16x less work per image
                         than a CIFAR ResNet-18, and is not the network one trains on CIFAR;
* ``preact_resnet18`` -- the pre-activation ResNet-18 with the CIFAR stem (3x3, stride 1),

the images/s of one training step (forward, loss, backward; no optimizer step) at batch
128 and 32x32 input, in the variants ``eager`` (fp32), ``channels_last``, ``bf16``
(autocast), ``compile`` (``torch.compile``) and ``all`` (the three together). It prints
each figure next to resnet18's figure of the same variant from the same run, as a ratio,
and the peak memory (CUDA: ``max_memory_allocated``; every device: the bytes of activations
saved for backward, counted by autograd hooks).

To explain the ratios it counts the work per image: FLOPs of the forward and backward pass
(``torch.utils.flop_counter``), and for every convolution role -- for MgNet the data-feature
operator A^l, the smoother B^l, the restrictions R and Pi, the stem -- how many times it is
applied and its share of the forward FLOPs. A smoothing step of MgNet applies A^l and B^l
(two 3x3 convolutions, like a basic residual block), but each restriction applies A^l
again to form the residual f - A u and A^{l+1} to the restricted feature: those extra A
applications, at full width on every level, are where MgNet spends more than a ResNet.

    python benchmarks/train_throughput.py            # batch 128, every variant
    python benchmarks/train_throughput.py --quick    # a couple of minutes on a small CPU
    python benchmarks/train_throughput.py --variants eager,bf16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mgnet.models import count_parameters, create_model

MODELS = ("mgnet_cifar", "resnet18", "preact_resnet18")
VARIANTS = ("eager", "channels_last", "bf16", "compile", "all")
REFERENCE = "resnet18"


def build(name: str) -> nn.Module:
    return create_model(name, num_classes=10, in_channels=3)


def conv_role(name: str) -> str:
    """The operator a convolution stands for, from its module name."""
    last = name.split(".")[-1]
    if name.startswith("cycle."):
        return {"A": "A", "B": "B", "R": "R", "Pi": "Pi"}.get(last, "stem")
    if "downsample" in name or "shortcut" in name:
        return "shortcut 1x1"
    if name in ("conv1",):
        return "stem"
    return "block 3x3"


def conv_census(model: nn.Module, size: int) -> dict[str, dict[str, float]]:
    """Per role: applications per forward pass and forward GFLOPs per image (2 x MACs);
    and the forward convolution GFLOPs per image on each grid (output size)."""
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    census: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "gflops": 0.0})
    grids: dict[str, float] = defaultdict(float)

    def hook(module: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        k = module.kernel_size[0] * module.kernel_size[1]
        macs = out.shape[1] * out.shape[2] * out.shape[3] * k * module.in_channels
        gflops = 2 * macs / module.groups / 1e9
        role = census[conv_role(names[module])]
        role["calls"] += 1
        role["gflops"] += gflops
        grids[f"{out.shape[2]}x{out.shape[3]}"] += gflops

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    return dict(census), dict(grids)


def train_flops(model: nn.Module, size: int, batch: int = 2) -> tuple[float, float]:
    """(forward, forward+backward) GFLOPs per image, counted by torch's flop counter."""
    model.train()
    x = torch.randn(batch, 3, size, size)
    with FlopCounterMode(display=False) as fwd:
        loss = model(x).float().logsumexp(1).mean()
    forward = fwd.get_total_flops()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return forward / batch / 1e9, (forward + bwd.get_total_flops()) / batch / 1e9


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, amp: bool) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one batch."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.device)
        seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(x.device, amp):
        out = model(x)
    del out
    return sum(seen.values())


def autocast(device: torch.device, on: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str, variant: str, device: torch.device, batch: int, size: int, steps: int, warmup: int
) -> dict:
    """images/s of forward+loss+backward for one model and variant."""
    torch.manual_seed(0)
    channels_last = variant in ("channels_last", "all")
    bf16 = variant in ("bf16", "all")
    compiled = variant in ("compile", "all")
    model = build(name).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    criterion = nn.CrossEntropyLoss()
    net = torch.compile(model) if compiled else model

    def step() -> None:
        with autocast(device, bf16):
            loss = criterion(net(x).float(), y)
        loss.backward()
        for p in model.parameters():
            p.grad = None

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step()  # first step: compilation, allocator warm-up
    synchronize(device)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - t0
    row = {
        "model": name,
        "variant": variant,
        "images_per_s": batch * steps / elapsed,
        "ms_per_step": 1e3 * elapsed / steps,
        "first_step_s": first,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }
    if not compiled:
        row["saved_activations_mb"] = saved_activation_bytes(model, x, bf16) / 2**20
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 8, 2 steps, no compile")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (quick: 8)")
    p.add_argument("--size", type=int, default=32, help="input side (default 32)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20, quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps after the first")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated registry names")
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated subset of {','.join(VARIANTS)} (quick: no compile)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)

    batch = args.batch_size or (8 if args.quick else 128)
    steps = args.steps or (2 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (0 if args.quick else 5)
    default_variants = ("eager", "channels_last", "bf16") if args.quick else VARIANTS
    variants = tuple(args.variants.split(",")) if args.variants else default_variants
    models = tuple(args.models.split(","))
    bad = [v for v in variants if v not in VARIANTS]
    if bad or batch < 1 or steps < 1 or warmup < 0:
        p.error(f"variants must be among {', '.join(VARIANTS)}; batch, steps >= 1")
    models = (REFERENCE, *[m for m in models if m != REFERENCE])  # measured first
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"CPU, {torch.get_num_threads()} threads")
    )
    print(
        f"# device: {where}; torch {torch.__version__}; batch {batch}, {args.size}x"
        f"{args.size}, {steps} timed steps after {warmup} warm-up steps"
    )

    # -- work per image
    print("\n## work per image (32x32 unless --size)")
    print(
        f"{'model':<17}{'params':>12}{'fwd GFLOP':>11}{'fwd+bwd':>10}{'x resnet18':>11}  "
        "convolutions per forward: applications (share of forward FLOPs)"
    )
    work = {}
    for name in models:
        model = build(name)
        census, grids = conv_census(model, args.size)
        fwd, total = train_flops(model, args.size)
        work[name] = {
            "parameters": count_parameters(model),
            "fwd_gflops": fwd,
            "train_gflops": total,
            "convs": census,
            "grids": grids,
        }
    for name in models:
        w = work[name]
        conv_total = sum(r["gflops"] for r in w["convs"].values())
        parts = ", ".join(
            f"{role} {int(r['calls'])} ({100 * r['gflops'] / conv_total:.0f}%)"
            for role, r in sorted(w["convs"].items(), key=lambda kv: -kv[1]["gflops"])
        )
        ratio = w["train_gflops"] / work[REFERENCE]["train_gflops"]
        print(
            f"{name:<17}{w['parameters']:>12,}{w['fwd_gflops']:>11.3f}"
            f"{w['train_gflops']:>10.3f}{ratio:>10.1f}x  {parts}"
        )
        by_grid = ", ".join(f"{g} {100 * v / conv_total:.0f}%" for g, v in w["grids"].items())
        print(f"{'':<61}by grid: {by_grid}")
    if "mgnet_cifar" in work:
        convs = work["mgnet_cifar"]["convs"]
        a, b = convs["A"], convs["B"]
        print(
            f"# mgnet_cifar: A applied {a['calls']} times, B {b['calls']} times per forward "
            f"(the smoothing steps apply one A and one B each; every restriction adds A^l u "
            f"for the residual and A^(l+1) Pi u for the coarse data); A is "
            f"{100 * a['gflops'] / (a['gflops'] + b['gflops']):.0f}% of the A+B FLOPs."
        )

    # -- throughput
    print("\n## forward+backward throughput")
    print(
        f"{'model':<17}{'variant':<15}{'images/s':>10}{'resnet18':>10}{'ratio':>7}"
        f"{'ms/step':>9}{'1st step s':>11}{'peak MB':>9}{'saved MB':>9}"
    )
    rows = []
    for variant in variants:
        ref = None
        for name in models:
            print(f"  .. {name} {variant}", file=sys.stderr, flush=True)
            try:
                row = measure(name, variant, device, batch, args.size, steps, warmup)
            except Exception as e:  # e.g. no compiler toolchain for torch.compile
                msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e)
                print(f"{name:<17}{variant:<15}  failed: {msg}")
                continue
            if name == REFERENCE:
                ref = row["images_per_s"]
            row["reference_images_per_s"] = ref
            row["ratio_to_resnet18"] = row["images_per_s"] / ref if ref else math.nan
            rows.append(row)
            peak = row["peak_memory_mb"]
            saved = row.get("saved_activations_mb")
            print(
                f"{name:<17}{variant:<15}{row['images_per_s']:>10.1f}"
                f"{(ref or math.nan):>10.1f}{row['ratio_to_resnet18']:>7.3f}"
                f"{row['ms_per_step']:>9.1f}{row['first_step_s']:>11.2f}"
                f"{'-' if peak is None else f'{peak:.0f}':>9}"
                f"{'-' if saved is None else f'{saved:.0f}':>9}"
            )
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"device": where, "batch": batch, "size": args.size, "work": work, "rows": rows},
                fh,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
