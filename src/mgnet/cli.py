"""The ``mgnet`` command. Thin: it parses arguments and calls the package.

Every subcommand turns a user error (``ValueError``, ``FileNotFoundError``, ...) raised by
the package into a one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

__all__ = ["main", "build_parser"]


class UserError(Exception):
    """An error whose message is the whole story: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- models
def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models and their parameter counts",
        description="List registered models. Any MgNet spec string, e.g. "
        "'mgnet[2,2,2,2]-256-Bl', is accepted wherever a model name is.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from mgnet.models import count_parameters, create_model, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name)
        model = create_model(name)
        rows.append(
            {
                "name": name,
                "parameters": count_parameters(model),
                "num_classes": info.num_classes,
                "in_channels": info.in_channels,
                "input_size": info.input_size,
                "spec": getattr(model, "spec", None),
                "description": info.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'name':<22}{'parameters':>13}  {'classes':>7}  {'input':>9}  description")
        for r in rows:
            size = f"{r['in_channels']}x{r['input_size']}"
            print(
                f"{r['name']:<22}{r['parameters']:>13,}  {r['num_classes']:>7}  {size:>9}  "
                f"{r['description']}"
            )
    return 0


# ------------------------------------------------------------------------ subcommands
# Each entry adds one subcommand to the parser; its handler is set with set_defaults(run=...).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_models]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgnet", description="MgNet: one multigrid cycle, a CNN and a PDE solver."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("mgnet: interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError, RuntimeError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"mgnet {args.command}: error: {message}", file=sys.stderr)
        return 2


# ------------------------------------------------------------------------------ solve
def _add_solve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve",
        help="solve a model PDE with the MgNet cycle as a multigrid solver",
        description="Solve a model problem with a manufactured exact solution by geometric "
        "multigrid on the MgNet cycle (sigma = identity; Pi = 0, or injection for the "
        "nonlinear problem, which is solved by FAS). Reports residuals and the error "
        "against the exact solution.",
    )
    p.add_argument(
        "--problem", default="poisson", choices=["poisson", "diffusion", "anisotropic", "nonlinear"]
    )
    p.add_argument("--dim", type=int, default=2, choices=[1, 2, 3])
    p.add_argument(
        "--n",
        type=int,
        default=255,
        help="interior nodes per axis; 2^k - 1 coarsens fully (default 255)",
    )
    p.add_argument("--cycle", default="V", choices=["V", "W", "F", "fmg", "pcg"])
    p.add_argument("--smoother", default="rbgs", choices=["jacobi", "rbgs", "chebyshev"])
    p.add_argument(
        "--nu", default=None, help="pre,post sweeps (default 1,1 for rbgs, 2,2 otherwise)"
    )
    p.add_argument("--coarse", default="rediscretize", choices=["rediscretize", "galerkin"])
    p.add_argument("--tol", type=float, default=1e-8, help="relative residual (default 1e-8)")
    p.add_argument(
        "--maxiter",
        type=int,
        default=None,
        help="most cycles (default 100); with --cycle fmg, cycles after the FMG pass (default 0)",
    )
    p.add_argument(
        "--dtype",
        default="float64",
        choices=["float64", "float32", "mixed"],
        help="mixed: float32 cycles, float64 residuals (iterative refinement)",
    )
    p.add_argument(
        "--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads (default 0: torch's choice; 1 avoids slowdowns when "
        "other jobs share the cores)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--plot",
        default=None,
        metavar="OUT.png",
        help="save the residual history and the solution as a PNG (matplotlib)",
    )
    p.set_defaults(run=_run_solve)


def _parse_nu(text: str | None, smoother: str) -> tuple[int, int]:
    if text is None:
        return (1, 1) if smoother == "rbgs" else (2, 2)
    try:
        parts = tuple(int(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 0:
        raise UserError(f"--nu: expected 'pre,post' with integers >= 0, e.g. 2,2; got {text!r}")
    return parts


def _run_solve(args: argparse.Namespace) -> int:
    import time

    import torch

    from mgnet.multigrid import MultigridSolver, make_problem

    nu = _parse_nu(args.nu, args.smoother)
    if args.threads < 0:
        raise UserError(f"--threads: must be 0 (torch's choice) or positive, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tol <= 0:
        raise UserError(f"--tol: must be positive, got {args.tol}")
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise UserError(f"--plot: expected a .png file name, got {args.plot!r}")
    if args.plot is not None:
        from pathlib import Path

        plot = Path(args.plot)
        if plot.is_dir():
            raise UserError(f"--plot: {args.plot!r} is a folder; give a .png file name")
        if not plot.parent.is_dir():
            raise UserError(f"--plot: folder {str(plot.parent)!r} does not exist")
    maxiter = args.maxiter if args.maxiter is not None else 0 if args.cycle == "fmg" else 100
    if maxiter < 0:
        raise UserError(f"--maxiter: must be >= 0, got {maxiter}")
    prob = make_problem(args.problem, args.dim, args.n)
    t0 = time.perf_counter()
    ml = MultigridSolver(
        prob.A,
        smoother=args.smoother,
        nu=nu,
        coarse=args.coarse,
        precision=args.dtype,
        device=args.device,
    )
    setup_s = time.perf_counter() - t0
    f = prob.f.to(ml.device)
    if ml.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    history: list[float] = []
    if args.cycle == "fmg":
        u = ml.fmg(f, tol=args.tol, maxiter=maxiter, residuals=history)
    elif args.cycle == "pcg":
        u = ml.solve(f, tol=args.tol, maxiter=maxiter, accel="cg", residuals=history)
    else:
        u = ml.solve(f, tol=args.tol, maxiter=maxiter, cycle=args.cycle, residuals=history)
    iterations = ml.iterations
    if ml.device.type == "cuda":
        torch.cuda.synchronize()
    solve_s = time.perf_counter() - t0
    rel = history[-1] / history[0] if history[0] > 0 else 0.0
    out = {
        "problem": args.problem,
        "dim": args.dim,
        "n": args.n,
        "unknowns": args.n**args.dim,
        "levels": len(ml.levels),
        "cycle": args.cycle,
        "smoother": args.smoother,
        "nu": list(nu),
        "dtype": args.dtype,
        "device": str(ml.device),
        "iterations": iterations,
        "converged": ml.converged,
        "reason": ml.reason,
        "residuals": history,
        "relative_residual": rel,
        "convergence_factor": ml.convergence_factor(history),
        "setup_s": setup_s,
        "solve_s": solve_s,
        "error_vs_exact": prob.error(u),
    }
    if args.plot is not None:
        _plot_solve(args.plot, history, u.detach().cpu().double().reshape(prob.A.shape), out)
        out["plot"] = args.plot
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(ml)
        print(
            f"{args.problem} {args.dim}D, {out['unknowns']:,} unknowns, {args.cycle}-cycle: "
            f"{iterations} iterations, relative residual {rel:.2e}, mean factor "
            f"{out['convergence_factor']:.3f}"
        )
        print(
            f"setup {setup_s:.3f} s, solve {solve_s:.3f} s, "
            f"max error vs exact solution {out['error_vs_exact']:.3e}"
        )
        if args.plot is not None:
            print(f"saved {args.plot}")
    if not ml.converged:
        print(
            f"mgnet solve: did not reach --tol {args.tol:g} ({ml.reason} after {iterations} "
            f"iterations, relative residual {rel:.2e})",
            file=sys.stderr,
        )
        return 1
    return 0


def _plot_solve(path: str, history: list[float], u, info: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise UserError("--plot: needs matplotlib (pip install 'torch-mgnet[plot]')") from e
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.semilogy(range(len(history)), [h / history[0] for h in history], "o-")
    ax1.set_xlabel("cycle" if info["cycle"] != "pcg" else "CG iteration")
    ax1.set_ylabel("||f - A u|| / ||f||")
    ax1.set_title(
        f"{info['cycle']}-cycle, {info['smoother']} {tuple(info['nu'])}: "
        f"factor {info['convergence_factor']:.3f}"
    )
    ax1.grid(True, which="both", alpha=0.3)
    if u.dim() == 1:
        ax2.plot(u.numpy())
    else:
        img = u if u.dim() == 2 else u[u.shape[0] // 2]
        im = ax2.imshow(img.numpy().T, origin="lower", extent=(0, 1, 0, 1))
        fig.colorbar(im, ax=ax2)
    ax2.set_title(f"solution ({info['problem']}, {info['dim']}D, n={info['n']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


SUBCOMMANDS.append(_add_solve)


# ---------------------------------------------------------------------------- inspect
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="picture the cycle: a classifier's u^l, f^l per step, or a solver's V-cycle",
        description="Classifier (--model and/or --checkpoint): record the data f^l and "
        "feature u^l on every level and smoothing step for one image and save a PNG grid "
        "with ||f - A u|| per step. Solver (--solver): one cycle of geometric multigrid on a "
        "model problem from a random initial guess; save the residual on every level and "
        "the error before and after each coarse correction.",
    )
    p.add_argument("--model", help="registry name or spec string (default: the checkpoint's)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="weights: best.pt or checkpoint.pt "
        "of `mgnet train`, or a bare state dict (default: untrained weights)",
    )
    p.add_argument(
        "--image",
        metavar="PATH",
        help=".png/.jpg/.npy/.pt image (standardized per image); default: a test image of --data",
    )
    p.add_argument(
        "--data",
        default=None,
        help="registered dataset for the image (default: the checkpoint's, else digits)",
    )
    p.add_argument("--data-dir", default=None, help="folder of the dataset files")
    p.add_argument("--index", type=int, default=0, help="test-split index of the image")
    p.add_argument("--channels", type=int, default=4, help="channels drawn per tensor")
    p.add_argument("--solver", action="store_true", help="inspect the multigrid solver")
    p.add_argument("--problem", default="poisson", help="solver: model problem")
    p.add_argument("--dim", type=int, default=2, choices=[1, 2, 3], help="solver: dimension")
    p.add_argument("--n", type=int, default=63, help="solver: interior nodes per axis")
    p.add_argument("--smoother", default="jacobi", choices=["jacobi", "rbgs", "chebyshev"])
    p.add_argument("--nu", default="2,2", help="solver: pre,post sweeps (default 2,2)")
    p.add_argument("--cycle", default="V", choices=["V", "W", "F"])
    p.add_argument("--seed", type=int, default=0, help="solver: seed of the initial guess")
    p.add_argument("--out", default="inspect.png", metavar="OUT.png", help="PNG to write")
    p.add_argument("--json", action="store_true", help="print the recorded numbers as JSON")
    p.set_defaults(run=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    import torch

    from mgnet import inspect as mi

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out: expected a .png file name, got {args.out!r}")
    if args.solver:
        if args.model or args.checkpoint or args.image:
            raise UserError(
                "--solver: inspects the multigrid solver; leave out --model, "
                "--checkpoint and --image"
            )
        from mgnet.multigrid import MultigridSolver, make_problem

        try:
            nu = tuple(int(x) for x in args.nu.split(","))
        except ValueError:
            nu = ()
        if len(nu) != 2 or min(nu) < 0:
            raise UserError(f"--nu: expected 'pre,post' with integers >= 0, got {args.nu!r}")
        prob = make_problem(args.problem, args.dim, args.n)
        solver = MultigridSolver(prob.A, smoother=args.smoother, nu=nu, device="cpu")
        gen = torch.Generator().manual_seed(args.seed)
        x0 = torch.rand(tuple(prob.f.shape), generator=gen, dtype=torch.float64)
        report = mi.inspect_solver(solver, prob.f, x0=x0, out=args.out, cycle=args.cycle)
        summary = {
            "levels": len(solver.levels),
            "corrections": report.corrections,
            "events": report.events,
            "out": str(report.path),
        }
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(
                f"{args.problem} {args.dim}D n={args.n}, one {args.cycle}-cycle "
                f"({args.smoother}, nu={nu}); error ||u* - u|| per level:"
            )
            print(
                f"{'level':>5}  {'start':>10}  {'pre-smoothed':>12}  {'corrected':>10}  "
                f"{'post-smoothed':>13}"
            )
            for c in report.corrections:
                print(
                    f"{c['level']:>5}  {c['start']:>10.3e}  {c['before']:>12.3e}  "
                    f"{c['after']:>10.3e}  {c['post']:>13.3e}"
                )
            print(f"saved {report.path}")
        return 0
    if not args.model and not args.checkpoint:
        raise UserError("pass --model and/or --checkpoint for a classifier, or --solver")
    if args.checkpoint:
        model, config = mi.model_from_checkpoint(args.checkpoint, args.model)
    else:
        from mgnet.models import create_model

        model, config = create_model(args.model).eval(), {}
    label = None
    if args.image:
        from mgnet.models import model_info

        size = model_info(args.model or config["model"]).input_size
        image = mi.load_image(args.image, model.in_channels, size)
    else:
        from mgnet.data import get_dataset

        data = args.data or config.get("data") or "digits"
        test = get_dataset(data, root=args.data_dir or config.get("data_dir"), augment=False).test
        if not 0 <= args.index < len(test):
            raise UserError(
                f"--index: must lie in 0..{len(test) - 1} for the {data!r} test "
                f"split, got {args.index}"
            )
        image, label = test[args.index]
        label = int(label)
    report = mi.inspect_classifier(model, image, out=args.out, channels=args.channels)
    summary = {
        "prediction": report.prediction,
        "label": label,
        "events": report.events,
        "out": str(report.path),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{getattr(model, 'spec', type(model).__name__)}: predicted {report.prediction}"
            + ("" if label is None else f" (label {label})")
        )
        for e in report.events:
            what = "start" if e["phase"] == "start" else f"step {e['step']}"
            print(f"  level {e['level']} {what:<7} ||f - A u|| = {e['residual']:.4g}")
        print(f"saved {report.path}")
    return 0


SUBCOMMANDS.append(_add_inspect)


# ----------------------------------------------------------------------------- export
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained classifier to ONNX or TorchScript",
        description="Rebuild the model of a `mgnet train` checkpoint, write it as ONNX or "
        "TorchScript (dynamic batch, the dataset's image size), then run the written file "
        "(onnxruntime / torch.jit) and compare its logits with PyTorch's.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or checkpoint.pt")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument(
        "-o",
        "--out",
        metavar="PATH",
        help="output file (default: next to the checkpoint, .onnx or .torchscript.pt)",
    )
    p.add_argument("--input-size", type=int, help="image side (default: the dataset's)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted logit difference")
    p.add_argument(
        "--no-check", dest="check", action="store_false", help="do not run the exported file"
    )
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgnet.export import export_model, model_from_checkpoint

    model, shape, cfg = model_from_checkpoint(args.checkpoint)
    if args.input_size is not None:
        if args.input_size < 1:
            raise UserError(f"--input-size: must be a positive integer, got {args.input_size}")
        shape = (*shape[:2], args.input_size, args.input_size)
    suffix = ".onnx" if args.format == "onnx" else ".torchscript.pt"
    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(suffix)
    result = export_model(model, out, args.format, shape, check=args.check, atol=args.atol)
    check = (
        "not checked"
        if result.max_abs_diff is None
        else f"max |logit difference| {result.max_abs_diff:.2e} vs PyTorch"
    )
    print(
        f"exported {cfg['model']} ({cfg['data']}, input {shape}) to {str(result.path)!r} "
        f"as {args.format}; {check}"
    )
    return 0


SUBCOMMANDS.append(_add_export)


# ---------------------------------------------------------------------- train, demo
def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (``width=32``, ``blocks=[2,2]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_train(sub: argparse._SubParsersAction) -> None:
    from mgnet.train.config import AMP_MODES, LOADERS, OPTIMIZERS, SCHEDULERS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a classifier (default: a small MgNet on the embedded 8x8 digits)",
        description="Train a registered model (or an MgNet spec string) on a registered "
        "dataset. Writes config.json, metrics.jsonl, checkpoint.pt (every epoch), best.pt "
        "(best validation accuracy) and results.json (test accuracy of the model chosen on "
        "the validation split) to the output directory. Precedence: defaults < -c recipe < "
        "flags.",
    )
    arg = p.add_argument
    arg("-c", "--config", metavar="FILE", help="a recipe: JSON or YAML mapping of config fields")
    arg("--model", help=f"registry name or spec string (default: {d.model})")
    arg(
        "--model-kwargs",
        dest="model_args",
        nargs="+",
        type=_key_value,
        metavar="KEY=VALUE",
        help="overrides for create_model, e.g. width=32 or spec='mgnet[2,2]-32'",
    )
    arg("--in-channels", type=int, help="input channels (default: the data's)")
    arg("--data", help=f"registered dataset (default: {d.data})")
    arg("--data-dir", help="folder of the dataset files (datasets that live in files)")
    arg("--download", action="store_true", default=None, help="fetch missing dataset files")
    arg(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="train without the dataset's augmentation",
    )
    arg("--epochs", type=int, help=f"(default: {d.epochs})")
    arg("-b", "--batch-size", type=int, help=f"per process (default: {d.batch_size})")
    arg("--lr", type=float, help=f"peak learning rate (default: {d.lr})")
    arg("--momentum", type=float, help=f"SGD momentum (default: {d.momentum})")
    arg(
        "--wd",
        "--weight-decay",
        dest="weight_decay",
        type=float,
        help=f"(default: {d.weight_decay})",
    )
    arg("--opt", dest="optimizer", choices=OPTIMIZERS, help=f"(default: {d.optimizer})")
    arg("--lr-scheduler", choices=SCHEDULERS, help=f"(default: {d.lr_scheduler})")
    arg("--lr-step-size", type=int, help=f"epochs per step of 'step' (default: {d.lr_step_size})")
    arg("--lr-gamma", type=float, help=f"factor per step of 'step' (default: {d.lr_gamma})")
    arg("--warmup-epochs", type=int, help=f"linear warm-up (default: {d.warmup_epochs})")
    arg("--label-smoothing", type=float, help=f"(default: {d.label_smoothing})")
    arg("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA); 0: off")
    arg("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(ALPHA, ALPHA); 0: off")
    arg(
        "--model-ema",
        action="store_true",
        default=None,
        help="validate, select and test an exponential moving average of the weights",
    )
    arg("--model-ema-decay", type=float, help=f"EMA decay per step (default: {d.model_ema_decay})")
    arg("--seed", type=int, help=f"(default: {d.seed})")
    arg("--device", help="auto, cpu, cuda or cuda:N (default: auto = cuda if available)")
    arg("--amp", choices=AMP_MODES, help=f"mixed precision (default: {d.amp})")
    arg("--channels-last", action="store_true", default=None, help="NHWC memory format")
    arg("-j", "--workers", type=int, help=f"DataLoader worker processes (default: {d.workers})")
    arg("--loader", choices=LOADERS, help=f"in-memory sets on the device (default: {d.loader})")
    arg("--threads", type=int, help=f"CPU threads, 0: torch's choice (default: {d.threads})")
    arg(
        "--sync-bn",
        action="store_true",
        default=None,
        help="under torchrun: BatchNorm statistics of the global batch (one process: no-op)",
    )
    arg("--compile", action="store_true", default=None, help="torch.compile the model")
    arg("-o", "--output-dir", help="run directory (default: a fresh runs/train/<data>-<model>[-N])")
    arg(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bar (it is shown only on a terminal anyway)",
    )
    arg("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint.pt")
    arg(
        "--test-only",
        action="store_true",
        help="only test the model of --resume DIR (its best.pt) on the test split",
    )
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from mgnet.train import TrainConfig, load_recipe, resume_config, test_checkpoint, train
    from mgnet.train.config import fresh_run_dir

    control = {"config", "resume", "test_only", "run", "command"}
    flags = {k: v for k, v in vars(args).items() if k not in control and v is not None}
    if "model_args" in flags:
        flags["model_args"] = dict(flags["model_args"])
    if args.test_only and not args.resume:
        raise UserError("--test-only needs --resume DIR, the run whose model to test")
    if args.resume:
        if args.config:
            raise UserError("--resume continues a run with its stored config; leave -c out")
        cfg = resume_config(args.resume, flags)
        if args.test_only:
            test_checkpoint(cfg)
            return 0
        train(cfg, resume=True)
        return 0
    values = {**(load_recipe(args.config) if args.config else {}), **flags}
    if "output_dir" not in values:
        name = f"{values.get('data', TrainConfig.data)}-{values.get('model', TrainConfig.model)}"
        values["output_dir"] = str(fresh_run_dir("runs/train", name))
    train(TrainConfig.from_dict(values))
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="MgNet vs pre-act ResNet-18 on the digits, then the same cycle solving Poisson",
        description="Train MgNet (mgnet_digits) and the pre-activation ResNet-18 baseline "
        "with the same recipe on the embedded 8x8 digits; print test accuracy and parameter "
        "count side by side. Then solve 2D Poisson with the same cycle (sigma = identity, "
        "fixed stencils) and print iterations, convergence factor and time next to PyAMG's.",
    )
    p.add_argument("--epochs", type=int, help="epochs per model (default: the train default)")
    p.add_argument(
        "--baseline",
        default="preact_resnet18",
        help="the model MgNet is compared with (default: preact_resnet18)",
    )
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="CPU threads, 0: torch's (default: 1)")
    p.add_argument(
        "-o", "--output-dir", help="keep the runs here (default: a temporary folder, removed after)"
    )
    p.add_argument(
        "--poisson-n", type=int, default=1023, help="Poisson grid: n x n nodes (default: 1023)"
    )
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from mgnet.demo import run_demo

    run_demo(
        epochs=args.epochs,
        baseline=args.baseline,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        output_dir=args.output_dir,
        poisson_n=args.poisson_n,
    )
    return 0


SUBCOMMANDS.append(_add_train)
SUBCOMMANDS.append(_add_demo)


# ------------------------------------------------------------------------------- eval
def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="top-1/top-5 accuracy and confusion matrix of a trained checkpoint",
        description="Rebuild the model of a `mgnet train` checkpoint (best.pt or "
        "checkpoint.pt), evaluate it on a split of a dataset, print top-1 and top-5 "
        "accuracy, and write the figures with the confusion matrix as JSON and as a PNG.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="best.pt or checkpoint.pt")
    p.add_argument("--data", help="registered dataset (default: the one trained on)")
    p.add_argument("--data-dir", help="folder of the dataset files (default: the run's)")
    p.add_argument("--split", default="test", choices=["test", "val"], help="(default: test)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("-b", "--batch-size", type=int, default=256, help="(default: 256)")
    p.add_argument(
        "-o", "--out", metavar="OUT.json",
        help="JSON to write, PNG next to it (default: eval-<data>-<split>.json beside the "
        "checkpoint)",
    )  # fmt: skip
    p.add_argument("--no-plot", dest="plot", action="store_false", help="no PNG")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from mgnet.train.evaluation import evaluate_checkpoint

    r = evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        data_dir=args.data_dir,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
        out=args.out,
        plot=args.plot,
    )
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    print(
        f"{r.model} on {r.data} {r.split} ({r.count} images): top-1 {r.top1:.2f}%  "
        f"top-{r.topk} {r.top5:.2f}%  loss {r.loss:.4f}"
    )
    png = "" if r.png_path else " (no PNG: matplotlib is not installed)" if args.plot else ""
    print(f"wrote {r.json_path}" + (f" and {r.png_path}" if r.png_path else png))
    return 0


SUBCOMMANDS.append(_add_eval)


if __name__ == "__main__":
    sys.exit(main())
