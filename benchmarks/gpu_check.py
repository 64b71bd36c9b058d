"""One prepared check for a lent GPU: the CUDA tests, the solver against the HBM bound,
training throughput, a DDP smoke run and the algebraic solver, in at most 8 minutes.

    python benchmarks/gpu_check.py --out gpu_report              # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check   # toy sizes

It writes ``gpu_check.json`` (every figure, written again after each step, so a run cut
short still leaves what it measured) and ``gpu_check.md`` (the same as Markdown tables)
into ``--out``. The steps (``--steps`` picks some):

* ``env``: torch, CUDA, the device, and the compiled CPU kernels' first call (compile or
  load from numba's cache);
* ``tests``: ``pytest -m cuda`` (AMP bf16/fp16, channels-last, compile, the device loader,
  the solver in float64/float32/mixed, export from CUDA, the stencil operators' GPU code);
  on a machine without CUDA they are all skipped;
* ``solver``: 2D Poisson 4095^2 and 3D 255^3 to 1e-8 in mixed precision (float32 cycles,
  float64 residuals): set-up, solve, iterations; the time of one V(1,1) cycle against the
  bandwidth bound for the bytes it must move (10 grid arrays per level, float32; the
  device's copy bandwidth measured in the same run), and the kernels one cycle launches;
* ``ddp``: one process of DistributedDataParallel on NCCL (gloo on the CPU), a few steps
  and an all-reduce;
* ``amg``: the algebraic solver (``mgnet.multigrid.smoothed_aggregation_solver``, when the
  package has it) on 2D Poisson 1023^2 on the device, against PyAMG's solve on the CPU;
* ``training``: images/s and peak memory of one SGD step (forward, loss, backward,
  update) for ``mgnet_cifar``, ``preact_resnet18`` and ``resnet18`` at batch 256 on
  CIFAR-shaped synthetic data, bf16 autocast and channels-last, without and with
  ``torch.compile``, and mgnet_cifar's throughput relative to preact_resnet18's;

``--device cpu --quick`` runs the same steps at toy sizes (255^2 and 31^3, batch 2 at
16x16, ``torch.compile`` with the eager backend) in well under 3 minutes; the test suite
runs it. Every step records its own seconds; a step that fails is recorded as failed
with its message and the others still run; steps that would start past ``--budget``
seconds (default 450, so that the whole run stays under 8 minutes) are skipped with a
note, and so are training cases that would start too close to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import textwrap
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# the most expensive step (compiling three models) last, so that a slow one cuts least
STEPS = ("env", "tests", "solver", "ddp", "amg", "training")
MODELS = ("mgnet_cifar", "preact_resnet18", "resnet18")


# ------------------------------------------------------------------------------ helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def copy_bandwidth(device: torch.device, mbytes: int) -> float:
    """Bytes per second of a large copy on the device (read + write counted), best of 5."""
    a = torch.ones(mbytes * 2**20 // 4, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(timed(lambda: b.copy_(a), device)[0] for _ in range(5))
    return 2 * a.numel() * 4 / best


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


# -------------------------------------------------------------------------------- steps
def step_env(args, device: torch.device) -> dict:
    from mgnet.stencils import kernels

    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "host": socket.gethostname(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
        info["sms"] = props.multi_processor_count
    try:
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        info["git"] = None
    info["cpu_kernels_first_call_s"] = round(kernels.warm_up(), 3)
    info["cpu_kernels"] = "numba" if kernels.enabled() else "off (PyTorch path)"
    return info


def step_tests(args, device: torch.device) -> dict:
    xml = args.out / "cuda_tests.xml"
    paths = ["tests"]
    if args.quick:  # the CUDA test files only: collecting the whole suite takes a while
        paths = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").glob("test_*cuda*.py"))]
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *paths]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.test_timeout, env=env
        )
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", str(e.stdout or "")[-2000:]
    out = {"command": " ".join(cmd), "returncode": rc, "seconds": time.perf_counter() - t0}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            bad = case.find("failure") if case.find("failure") is not None else case.find("error")
            if bad is not None:
                counts["failed" if bad.tag == "failure" else "errors"] += 1
                failures.append({"test": name, "message": (bad.get("message") or "")[:300]})
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    out.update(counts=counts, failures=failures)
    if rc not in (0, 5) or failures:  # 5: nothing collected or all deselected
        out["output_tail"] = tail
    return out


def _solver_case(shape: tuple[int, ...], device: torch.device, bw: float) -> dict:
    from mgnet.multigrid import MultigridSolver, make_problem

    dim, N = len(shape), math.prod(shape)
    t0 = time.perf_counter()
    prob = make_problem("poisson", dim, shape[0])
    problem_s = time.perf_counter() - t0
    setup_s, ml = timed(lambda: MultigridSolver(prob.A, precision="mixed", device=device), device)
    f = prob.f.to(device)
    ml.solve(f, tol=1e-8)  # the first solve: allocator, cuBLAS, kernel caches
    solve_s, _ = timed(lambda: ml.solve(f, tol=1e-8), device)
    row = {
        "grid": "x".join(map(str, shape)),
        "unknowns": N,
        "levels": len(ml.levels),
        "problem_s": problem_s,
        "setup_s": setup_s,
        "solve_s": solve_s,
        "iterations": ml.iterations,
        "converged": ml.converged,
        "factor": ml.convergence_factor(),
    }
    f32 = f.to(torch.float32).reshape(1, 1, *shape)
    x = torch.zeros_like(f32)
    reps = 5
    with torch.no_grad():
        ml.cycle(f32, x, inplace=True)
        cycle_s = timed(lambda: [ml.cycle(f32, x, inplace=True) for _ in range(reps)], device)[0]
    cycle_s /= reps
    # at least: two red-black sweeps (u, f read, u written), the residual restricted (u,
    # f read) and the correction (u read and written): 10 arrays of N float32 per level,
    # times 1 + 2^-d + 4^-d + ... over the levels
    bytes_min = 10 * 4 * N / (1 - 2.0**-dim)
    row.update(
        cycle_ms=1e3 * cycle_s,
        bound_ms=1e3 * bytes_min / bw,
        cycle_over_bound=cycle_s / (bytes_min / bw),
        ns_per_unknown=1e9 * (setup_s + solve_s) / N,
    )
    if device.type == "cuda":
        try:
            from torch.profiler import ProfilerActivity, profile

            with torch.no_grad(), profile(activities=[ProfilerActivity.CUDA]) as prof:
                ml.cycle(f32, x, inplace=True)
                sync(device)
            kinds = ("cuda", "privateuse1")
            row["kernels_per_cycle"] = sum(
                1 for e in prof.events() if str(e.device_type).split(".")[-1].lower() in kinds
            )
        except Exception as e:  # noqa: BLE001 - the profiler is a nicety here
            row["kernels_per_cycle"] = f"n/a ({first_line(e)})"
    return row


def step_solver(args, device: torch.device) -> dict:
    bw = copy_bandwidth(device, 64 if args.quick else 1024)
    sizes = [(255, 255), (31, 31, 31)] if args.quick else [(4095, 4095), (255, 255, 255)]
    out = {"copy_bandwidth_gb_s": bw / 1e9, "precision": "mixed", "tol": 1e-8, "cases": []}
    for shape in sizes:
        try:
            out["cases"].append(_solver_case(shape, device, bw))
        except Exception as e:  # noqa: BLE001 - report and go on with the next grid
            out["cases"].append({"grid": "x".join(map(str, shape)), "error": first_line(e)})
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _train_case(name, device, batch, size, compiled, backend, warmup, steps) -> dict:
    from mgnet.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=3).to(device)
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 10, (batch,), device=device)
    net = torch.compile(model, backend=backend) if compiled else model
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(net(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    first_s, _ = timed(step, device)  # compilation, allocator warm-up
    for _ in range(warmup):
        step()
    elapsed, _ = timed(lambda: [step() for _ in range(steps)], device)
    row = {
        "model": name,
        "compile": backend if compiled else "no",
        "images_per_s": batch * steps / elapsed,
        "ms_per_step": 1e3 * elapsed / steps,
        "first_step_s": first_s,
        "peak_memory_mib": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }
    if compiled:
        torch._dynamo.reset()  # the next model compiles from scratch, as a fresh run would
    return row


def step_training(args, device: torch.device) -> dict:
    batch, size = (2, 16) if args.quick else (256, 32)
    warmup, steps = (0, 2) if args.quick else (3, 10)
    backend = "eager" if args.quick else "inductor"
    out = {"batch": batch, "size": size, "amp": "bf16", "channels_last": True, "rows": []}
    for compiled in (False, True):
        for name in args.models:
            left = args.deadline - time.perf_counter()
            if left < (90 if compiled and not args.quick else 20):  # a compile takes a while
                row = {"model": name, "compile": backend if compiled else "no"}
                row["error"] = f"skipped: {left:.0f} s left of the budget"
                out["rows"].append(row)
                continue
            try:
                row = _train_case(name, device, batch, size, compiled, backend, warmup, steps)
            except Exception as e:  # noqa: BLE001 - e.g. no compiler toolchain
                row = {"model": name, "compile": backend if compiled else "no"}
                row["error"] = first_line(e)
            out["rows"].append(row)
    for compiled in ("no", backend):
        ips = {r["model"]: r.get("images_per_s") for r in out["rows"] if r["compile"] == compiled}
        if ips.get("mgnet_cifar") and ips.get("preact_resnet18"):
            out[f"mgnet_over_preact_{compiled}"] = ips["mgnet_cifar"] / ips["preact_resnet18"]
    return out


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from mgnet.models import create_model

    device = torch.device(sys.argv[1])
    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2], RANK="0", WORLD_SIZE="1")
    t0 = time.perf_counter()
    dist.init_process_group(backend, rank=0, world_size=1)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = create_model("mgnet[1,1]-8", num_classes=10, in_channels=3).to(device)
    ddp = DDP(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    x = torch.randn(16, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (16,), device=device)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    t = torch.arange(4.0, device=device)
    dist.all_reduce(t)
    ok = bool(torch.equal(t.cpu(), torch.arange(4.0))) and all(map(lambda v: v == v, losses))
    dist.destroy_process_group()
    print(json.dumps({"backend": backend, "losses": losses, "all_reduce_ok": ok,
                      "seconds": time.perf_counter() - t0}))
    """
)


def step_ddp(args, device: torch.device) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    dev = "cuda:0" if device.type == "cuda" else "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", DDP_SCRIPT, dev, port],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    out = {"returncode": proc.returncode}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        out.update(json.loads(lines[-1]))
    else:
        out["output_tail"] = (proc.stdout + proc.stderr)[-2000:]
    return out


def step_amg(args, device: torch.device) -> dict:
    try:
        from mgnet.multigrid import smoothed_aggregation_solver
    except ImportError:
        return {"skipped": "mgnet.multigrid.smoothed_aggregation_solver is not in this package"}
    from mgnet.multigrid import make_problem

    n = 63 if args.quick else 1023
    A = make_problem("poisson", 2, n).A.to_sparse().tocsr()
    b = torch.ones(A.shape[0], dtype=torch.float64)
    setup_s, ml = timed(lambda: smoothed_aggregation_solver(A, device=device), device)
    bd = b.to(device)
    ml.solve(bd, tol=1e-8, accel="cg")  # warm-up
    solve_s, _ = timed(lambda: ml.solve(bd, tol=1e-8, accel="cg"), device)
    out = {
        "problem": f"2D Poisson {n}^2 ({A.shape[0]:,} unknowns), SA-PCG to 1e-8",
        "setup_s": setup_s,
        "solve_s": solve_s,
        "iterations": ml.iterations,
        "converged": ml.converged,
    }
    try:
        import pyamg
    except ImportError:
        out["pyamg"] = "not installed"
        return out
    amg = pyamg.smoothed_aggregation_solver(A)
    bn = b.numpy()
    t0 = time.perf_counter()
    amg.solve(bn, tol=1e-8, accel="cg", maxiter=200)
    out["pyamg_cpu_solve_s"] = time.perf_counter() - t0
    out["pyamg_over_ours"] = out["pyamg_cpu_solve_s"] / solve_s
    return out


RUNNERS = {
    "env": step_env,
    "tests": step_tests,
    "solver": step_solver,
    "training": step_training,
    "ddp": step_ddp,
    "amg": step_amg,
}


# ----------------------------------------------------------------------------- report
def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def _table(rows: list[dict], cols: list[str]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return lines


def markdown(report: dict) -> str:
    lines = [f"# gpu_check: {report['device']} ({report.get('mode')})", ""]
    steps = report["steps"]
    for name in STEPS:
        s = steps.get(name)
        if s is None:
            continue
        lines += [f"## {name} ({_fmt(s.get('seconds'))} s, {s.get('status')})", ""]
        r = s.get("result") or {}
        if s.get("status") != "ok":
            lines += [f"    {s.get('error', s.get('note', ''))}", ""]
        if name == "env":
            lines += _table([r], list(r))
        elif name == "tests":
            lines += _table([r.get("counts", {})], ["passed", "failed", "errors", "skipped"])
            lines += [f"- `{f['test']}`: {f['message']}" for f in r.get("failures", [])]
        elif name == "solver":
            bw = _fmt(r.get("copy_bandwidth_gb_s"))
            lines += [f"copy bandwidth {bw} GB/s; mixed precision to 1e-8", ""]
            cols = ["grid", "levels", "setup_s", "solve_s", "iterations", "factor",
                    "cycle_ms", "bound_ms", "cycle_over_bound", "kernels_per_cycle",
                    "ns_per_unknown", "error"]  # fmt: skip
            lines += _table(r.get("cases", []), cols)
        elif name == "training":
            size = f"{r.get('size')}x{r.get('size')}"
            lines += [f"batch {r.get('batch')} at {size}, bf16 + channels-last, one SGD step", ""]
            cols = ["model", "compile", "images_per_s", "ms_per_step", "first_step_s",
                    "peak_memory_mib", "error"]  # fmt: skip
            lines += _table(r.get("rows", []), cols)
            lines += [f"- {k}: {_fmt(v)}" for k, v in r.items() if k.startswith("mgnet_over")]
        else:
            lines += _table(
                [{k: v for k, v in r.items() if k != "output_tail"}],
                [k for k in r if k != "output_tail"],
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    p.add_argument("--quick", action="store_true", help="toy sizes (minutes on a CPU)")
    p.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}"
    )
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated models of the training step (default {','.join(MODELS)})",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds; later steps are skipped past it (default 450, quick 170)",
    )
    p.add_argument(
        "--test-timeout",
        type=float,
        default=None,
        help="seconds for pytest -m cuda (default 200, quick 90)",
    )
    args = p.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        p.error(f"--steps: {', '.join(bad)} not among {', '.join(STEPS)}")
    args.models = [m for m in args.models.split(",") if m]
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            p.error(f"--device: {args.device!r} asked for, but this machine has no CUDA device")
    budget = args.budget if args.budget is not None else (170.0 if args.quick else 450.0)
    args.deadline = time.perf_counter() + budget + 20  # the last case may start until then
    args.test_timeout = args.test_timeout or (90.0 if args.quick else 200.0)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    report = {"device": str(device), "mode": "quick" if args.quick else "full", "steps": {}}
    start = time.perf_counter()

    def save() -> None:
        report["seconds"] = time.perf_counter() - start
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
        (args.out / "gpu_check.md").write_text(markdown(report))

    for name in steps:
        if time.perf_counter() - start > budget:
            report["steps"][name] = {
                "status": "skipped",
                "note": f"past the budget of {budget:.0f} s",
            }
            save()
            continue
        print(f"gpu_check: {name} ...", flush=True)
        t0 = time.perf_counter()
        entry: dict = {}
        try:
            entry["result"] = RUNNERS[name](args, device)
            entry["status"] = "ok"
        except Exception as e:  # noqa: BLE001 - one step's failure is a finding, not the end
            entry["status"] = "failed"
            entry["error"] = first_line(e)
            entry["traceback"] = traceback.format_exc()[-3000:]
        entry["seconds"] = time.perf_counter() - t0
        report["steps"][name] = entry
        save()
        print(f"gpu_check: {name} {entry['status']} in {entry['seconds']:.1f} s", flush=True)
    save()
    print(f"gpu_check: wrote {args.out / 'gpu_check.json'} and gpu_check.md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
