"""Seeing inside the cycle: feature and data maps of a classifier, the V-cycle of a solver.

* :func:`inspect_classifier`: run one image through an MgNet classifier with a
  :class:`~mgnet.core.CycleRecord`, and save a PNG grid whose rows are the states of the
  down-sweep (level l, step i) and whose columns are channels of the data f^l and of the
  feature u^{l,i}; each row is labelled with ||f^l - A^l u^{l,i}||.
* :func:`inspect_solver`: run one V-cycle of a multigrid solver (any V-shaped
  :class:`~mgnet.core.MgCycle` with linear A^l) and save a PNG of the residual norm on
  every level through the cycle, and of the error u*^l - u^l on every level before the
  coarse correction (after pre-smoothing: smooth), after it, and after post-smoothing:
  smoothing removes the oscillatory error, the coarse grid removes the smooth error.

Both return an :class:`InspectReport` with the numbers drawn, so nothing is only a picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mgnet.constants import CYCLES
from mgnet.core import CycleRecord, MgCycle
from mgnet.errors import first_line, quote
from mgnet.plotting import check_png_path, figure, save_png

__all__ = [
    "InspectReport",
    "inspect_classifier",
    "inspect_solver",
    "load_image",
    "model_from_checkpoint",
]


@dataclass
class InspectReport:
    """What an inspection recorded.

    events: one dict per recorded state, in cycle order, with ``level`` (1-based, finest =
        1), ``phase``, ``step``, ``residual`` (||f - A u||, float) and for a solver ``error``
        (||u* - u|| on that level, float).
    path: the PNG written, or None.
    prediction, probabilities: the classifier's output for the image (classifier only).
    corrections: per level l < J of a solver, the error norms ``before`` the coarse
        correction (after pre-smoothing), ``after`` it and after ``post``-smoothing.
    """

    events: list[dict] = field(default_factory=list)
    path: Path | None = None
    prediction: int | None = None
    probabilities: list[float] | None = None
    corrections: list[dict] = field(default_factory=list)


def _plane(t: Tensor) -> np.ndarray:
    """A (space...) tensor as something to draw: 1D stays 1D, 3D gives its middle slice."""
    a = t.detach().double().cpu()
    while a.dim() > 2:
        a = a[a.shape[0] // 2]
    return a.numpy()


def _draw(ax, t: Tensor | None, title: str = "") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    if t is None:
        ax.set_facecolor("#eeeeee")
        ax.text(0.5, 0.5, "u = 0", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    a = _plane(t)
    if a.ndim == 1:
        ax.plot(a, lw=1)
    else:
        ax.imshow(a, cmap="viridis", interpolation="nearest")


# ------------------------------------------------------------------------- classifier
def load_image(path: str | Path, in_channels: int, size: int) -> Tensor:
    """An image file as a (1, in_channels, size, size) tensor, standardized per image.

    ``.png``/``.jpg`` files are read with torchvision, ``.npy`` with NumPy, ``.pt`` with
    ``torch.load(weights_only=True)``; a 2D array is one channel. Values are scaled to
    [0, 1] (8-bit images), resized to ``size`` and standardized (zero mean, unit std).
    """
    p = Path(path)
    name = quote(str(path))
    if not p.is_file():
        raise FileNotFoundError(f"image: no such file {name}")
    suffix = p.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg", ".npy", ".pt"):
        raise ValueError(f"image: {name} is not a .png, .jpg, .npy or .pt file")
    try:  # whatever the file holds, a file that cannot be read is one line
        if suffix == ".npy":
            x = np.load(p, allow_pickle=False)
        elif suffix == ".pt":
            x = torch.load(p, weights_only=True)
        else:
            from torchvision.io import ImageReadMode, read_image

            mode = ImageReadMode.GRAY if in_channels == 1 else ImageReadMode.RGB
            x = read_image(str(p), mode=mode).float() / 255.0
    except Exception as e:
        raise ValueError(
            f"image: cannot read {name} as a {suffix} image ({type(e).__name__}: {first_line(e)})"
        ) from None
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"image: {name} holds an array of {x.dtype}, not of numbers")
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise ValueError(f"image: {name} holds a {type(x).__name__}, not a tensor")
    if x.is_complex() or x.numel() == 0:
        raise ValueError(f"image: {name} holds an empty or complex tensor {tuple(x.shape)}")
    x = x.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"image: {name} holds NaN or infinite values")
    if x.dim() == 2:
        x = x[None]
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3:
        raise ValueError(f"image: expected (H, W), (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    if x.shape[0] != in_channels:
        if x.shape[0] == 1:
            x = x.expand(in_channels, -1, -1)
        elif in_channels == 1:
            x = x.mean(0, keepdim=True)
        else:
            raise ValueError(f"image: has {x.shape[0]} channels, the model takes {in_channels}")
    x = torch.nn.functional.interpolate(
        x[None], size=(size, size), mode="bilinear", align_corners=False
    )
    return (x - x.mean()) / x.std().clamp_min(1e-6)


def model_from_checkpoint(
    path: str | Path, model: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """A classifier with its trained weights, and the checkpoint's training config.

    ``path`` is a checkpoint written by ``mgnet train`` (a dict with ``model``, the state
    dict, and ``config``) or a bare state dict. ``model`` (a registry name or spec string)
    overrides the checkpoint's own; a bare state dict needs it. The number of classes and
    input channels are read from the weights (see :func:`mgnet.train.load_trained_model`).
    """
    from mgnet.train import load_trained_model

    trained = load_trained_model(path, model=model, map_location=map_location)
    return trained.model, trained.config_dict


def _top_channels(t: Tensor, k: int) -> list[int]:
    energy = t[0].flatten(1).norm(dim=1)
    return energy.argsort(descending=True)[:k].sort().values.tolist()


@torch.no_grad()
def inspect_classifier(
    model: nn.Module, image: Tensor, out: str | Path | None = None, channels: int = 4
) -> InspectReport:
    """Record u^l and f^l on every level and step of a classifier's down-sweep.

    Args:
        model: an MgNet classifier (anything with ``features(x, record=...)`` and a
            ``cycle`` :class:`~mgnet.core.MgCycle`).
        image: one input, (C, H, W) or (1, C, H, W), already preprocessed.
        out: PNG path for the grid (rows: states of the down-sweep; columns: the
            ``channels`` strongest channels of f^l, then of u^{l,i}); None draws nothing.
        channels: channels drawn per tensor.
    """
    if not isinstance(getattr(model, "cycle", None), MgCycle) or not hasattr(model, "features"):
        raise ValueError(f"model: expected an MgNet classifier, got {type(model).__name__}")
    if not isinstance(image, Tensor):
        raise ValueError(f"image: expected a tensor, got {type(image).__name__}")
    if channels < 1:
        raise ValueError(f"channels: must be >= 1, got {channels}")
    if out is not None:
        check_png_path(out)
    x = image[None] if image.dim() == 3 else image
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"image: expected (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        record = CycleRecord(residuals=True)
        u_final = model.features(x, record=record)
        logits = model.fc(model.pool(u_final).flatten(1)) if hasattr(model, "fc") else None
    finally:
        model.train(was_training)
    report = InspectReport()
    if logits is not None:
        probs = torch.softmax(logits[0].double(), 0)
        report.prediction = int(probs.argmax())
        report.probabilities = probs.tolist()
    rows = [e for e in record.events if e["phase"] in ("start", "pre")]
    for e in rows:
        report.events.append(
            {
                "level": e["level"] + 1,
                "phase": e["phase"],
                "step": e["step"],
                "residual": float(e["residual"][0]),
                "u_shape": None if e["u"] is None else tuple(e["u"].shape),
                "f_shape": tuple(e["f"].shape),
            }
        )
    if out is None:
        return report
    k = channels
    fig = figure(1.1 * 2 * k + 1.5, 1.15 * len(rows) + 0.6)
    axes = fig.subplots(len(rows), 2 * k, squeeze=False)
    for r, (e, ev) in enumerate(zip(rows, report.events)):
        f, u = e["f"], e["u"]
        f_ch = _top_channels(f, k)
        u_ch = _top_channels(u, k) if u is not None else []
        label = "start" if e["phase"] == "start" else f"i={e['step']}"
        axes[r, 0].set_ylabel(f"l={ev['level']} {label}\n|f-Au|={ev['residual']:.3g}", fontsize=7)
        for j in range(k):
            _draw(
                axes[r, j],
                f[0, f_ch[j]] if j < len(f_ch) else None,
                f"f ch{f_ch[j]}" if j < len(f_ch) else "",
            )
            if u is None:
                _draw(axes[r, k + j], None)
            elif j < len(u_ch):
                _draw(axes[r, k + j], u[0, u_ch[j]], f"u ch{u_ch[j]}")
            else:
                axes[r, k + j].axis("off")
    title = "data f^l (left) and feature u^{l,i} (right) through the down-sweep"
    if report.prediction is not None:
        title += f"; predicted class {report.prediction} (p={max(report.probabilities):.2f})"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    report.path = save_png(fig, out)
    return report


# ----------------------------------------------------------------------------- solver
def _solve_exact(A: nn.Module, f: Tensor) -> Tensor:
    """A^-1 f for one right-hand side on a small grid (sparse LU when A has to_sparse)."""
    import scipy.sparse.linalg as spla

    shape = tuple(f.shape[1:])
    rhs = f.detach().double().cpu().numpy().reshape(f.shape[0], -1)
    if hasattr(A, "to_sparse"):
        M = A.to_sparse().tocsc()
        x = np.stack([spla.spsolve(M, b) for b in rhs])
    else:
        from mgnet.probes import operator_matrix

        n = math.prod(shape)
        if n > 4096:
            raise ValueError(
                f"solver: level with {n} unknowns and no to_sparse(); too large for a dense solve"
            )
        x = np.linalg.solve(operator_matrix(A, shape).cpu().numpy(), rhs.T).T
    return torch.from_numpy(np.ascontiguousarray(x)).reshape(f.shape).to(f)


@torch.no_grad()
def inspect_solver(
    solver, f: Tensor, x0: Tensor | None = None, out: str | Path | None = None, cycle: str = "V"
) -> InspectReport:
    """Record one cycle of a multigrid solver: residual norms per level, errors per level.

    Args:
        solver: a :class:`mgnet.multigrid.MultigridSolver` (its ``cycle``), or an
            :class:`~mgnet.core.MgCycle` with an up-sweep and linear A^l.
        f: right-hand side, shaped like the grid or (1, 1, *grid).
        x0: initial guess (same shapes); None is zero. A random x0 shows smoothing best.
        out: PNG path; None draws nothing.
        cycle: ``"V"``, ``"W"`` or ``"F"``.

    On each level the error is measured against u*^l = (A^l)^-1 f^l, the exact solution of
    that level's equation for the f^l it received in this visit.
    """
    mg = solver if isinstance(solver, MgCycle) else getattr(solver, "cycle", None)
    if not isinstance(mg, MgCycle):
        raise ValueError(
            f"solver: expected a MultigridSolver or an MgCycle, got {type(solver).__name__}"
        )
    if cycle not in CYCLES:
        raise ValueError(f"cycle: {quote(cycle)} is not one of {', '.join(CYCLES)}")
    if out is not None:
        check_png_path(out)
    if any(t.P is None for t in mg.transfers):
        raise ValueError("solver: the cycle has no up-sweep (a Transfer without P)")
    A0 = mg.levels[0].A
    grid = getattr(A0, "shape", None)

    def as_batch(t: Tensor, name: str) -> Tensor:
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(t).__name__}")
        if grid is not None and tuple(t.shape) == tuple(grid):
            t = t.reshape(1, 1, *grid)
        if grid is not None and (
            t.dim() != len(grid) + 2 or tuple(t.shape[2:]) != tuple(grid) or t.shape[:2] != (1, 1)
        ):
            raise ValueError(
                f"{name}: expected shape {tuple(grid)} or (1, 1, "
                f"{', '.join(map(str, grid))}), got {tuple(t.shape)}"
            )
        return t

    f = as_batch(f, "f")
    dtype = getattr(solver, "dtype", f.dtype if f.is_floating_point() else torch.float64)
    device = getattr(solver, "device", f.device)
    f = f.to(device, dtype)
    x0 = None if x0 is None else as_batch(x0, "x0").to(device, dtype).clone()
    record = CycleRecord(residuals=True)
    mg(f, x0, record=record, shape=cycle)

    exact: dict[tuple[int, int], Tensor] = {}  # (level, storage of f^l) -> u*^l
    report = InspectReport()
    for e in record.events:
        l = e["level"]
        key = (l, e["f"].data_ptr())
        if key not in exact:
            exact[key] = _solve_exact(mg.levels[l].A, e["f"])
        u = torch.zeros_like(e["f"]) if e["u"] is None else e["u"]
        e["error_tensor"] = exact[key] - u
        report.events.append(
            {
                "level": l + 1,
                "phase": e["phase"],
                "step": e["step"],
                "residual": float(e["residual"][0]),
                "error": float(e["error_tensor"].flatten().norm()),
            }
        )
    snapshots: list[dict] = []
    for l in range(mg.depth - 1):
        evs = [e for e in record.events if e["level"] == l]
        c = next(i for i, e in enumerate(evs) if e["phase"] == "correct")
        nu_post = len(mg.levels[l].post)
        snap = {
            "level": l + 1,
            "start": evs[0],
            "before": evs[c - 1],
            "after": evs[c],
            "post": evs[c + nu_post],
        }
        snapshots.append(snap)
        report.corrections.append(
            {
                "level": l + 1,
                **{
                    k: float(snap[k]["error_tensor"].norm())
                    for k in ("start", "before", "after", "post")
                },
            }
        )
    if out is None:
        return report

    fig = figure(12, 2.4 * max(len(snapshots), 1) + 3.2)
    gs = fig.add_gridspec(len(snapshots) + 1, 4, height_ratios=[1.4] + [1] * len(snapshots))
    ax = fig.add_subplot(gs[0, :])
    res = [ev["residual"] for ev in report.events]
    lev = [ev["level"] for ev in report.events]
    idx = np.arange(len(res))
    floor = 1e-16 * max(max(res), 1e-300)  # an exact coarse solve has residual ~0
    res = [max(r, floor) for r in res]
    ax.semilogy(idx, res, color="#999999", lw=0.8, zorder=1)
    for l in sorted(set(lev)):
        sel = [i for i in idx if lev[i] == l]
        ax.semilogy(sel, [res[i] for i in sel], "o", ms=4, label=f"level {l}", zorder=2)
    ax.set_xlabel("operation in the cycle (start, smoothing steps, restriction, correction)")
    ax.set_ylabel("||f^l - A^l u^l||")
    ax.set_title(f"residual on every level through one {cycle}-cycle", fontsize=10)
    ax.legend(fontsize=7, ncol=min(mg.depth, 6))
    names = [
        ("start", "initial error"),
        ("before", "after pre-smoothing (smooth)"),
        ("after", "after coarse correction"),
        ("post", "after post-smoothing"),
    ]
    for r, snap in enumerate(snapshots, start=1):
        for c, (key, label) in enumerate(names):
            a = fig.add_subplot(gs[r, c])
            err = snap[key]["error_tensor"][0, 0]
            _draw(a, err, f"level {snap['level']}: {label}\n||e|| = {float(err.norm()):.3g}")
    fig.suptitle(
        "why multigrid works: smoothing kills oscillatory error, the coarse grid the smooth error",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    report.path = save_png(fig, out)
    return report
