"""The MgNet cycle: the one implementation every model and solver in `mgnet` runs.

Levels l = 1..J (index 0..J-1 here), finest first. Level l carries a *data* tensor
f^l and a *feature* tensor u^l, both shaped (batch, channel, *space) in 1D, 2D or 3D.

Smoothing step (one ``Step``), i = 1..nu_l::

    u^{l,i} = u^{l,i-1} + sigma_out(B^{l,i} * sigma_in(f^l - A^l * u^{l,i-1}))

Restriction to the coarser grid (one ``Transfer``)::

    u^{l+1,0} = Pi^{l+1}_l *_2 u^l                      (Pi = 0 allowed: u^{l+1,0} = 0)
    f^{l+1}   = R^{l+1}_l *_2 (f^l - A^l * u^l) + A^{l+1} * u^{l+1,0}

Coarse correction on the way up (only in V, W and F cycles)::

    u^l = u^l + P^l_{l+1} (u^{l+1} - Pi^{l+1}_l u^l),  then nu'_l post-smoothing steps

``MgCycle(shape="down")`` is Algorithm 1 of He & Xu (2019), the classifier's forward
pass, which returns u^J. ``shape="V"|"W"|"F"`` adds the up-sweep and returns u^1: with
sigma = identity, fixed stencils and Pi = 0 this is the correction-scheme multigrid
cycle; with Pi = injection it is the Full Approximation Scheme (FAS).

A zero feature tensor is passed around as ``None`` so that A * 0 is never computed:
on a coarse grid of the correction scheme the first smoothing step is then u = B f.

In-place mode (``inplace=True``, asked for by solvers that own their iterate): when no
autograd graph is being recorded and no :class:`CycleRecord` is kept, u + du and the
coarse correction overwrite u instead of allocating a new tensor, a B that defines
``update_(A, u, f)`` performs its whole step u <- u + B (f - A u) in place (fused), and a
P that defines ``add_to(u, e)`` adds P e to u in place. The values are those of the
allocating path (up to rounding order); f is never written.

The optional hooks of the modules (``residual``, ``update_``, ``needs_u``, ``add_to``, and
the fused ``restrict_residual``, ``smooth_restrict_`` and ``add_to_smooth_`` that let a
fixed stencil run a level's smoothing and its transfer in one pass over memory) are
specified, with what each must guarantee, in :mod:`mgnet.core.protocols` (and
tabulated with the cycle's instances in docs/design.md).

Full multigrid (FMG) is :meth:`MgCycle.fmg`: f is restricted to every level by R, the
coarsest level is visited first, and each finer level starts from the interpolated (P)
solution of the next coarser one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mgnet.core.protocols import FusedResidual, InPlaceProlongation, Operator

__all__ = ["Step", "Level", "Transfer", "MgCycle", "CycleRecord", "CYCLE_SHAPES", "residual"]

CYCLE_SHAPES = ("down", "V", "W", "F")

# What a coarse visit expands into, per cycle shape (gamma = 1 for V, 2 for W).
_COARSE_VISITS = {"V": ("V",), "W": ("W", "W"), "F": ("F", "V")}


def _apply(op: nn.Module | None, x: Tensor) -> Tensor:
    return x if op is None else op(x)


def residual(A: Operator | FusedResidual, u: Tensor | None, f: Tensor) -> Tensor:
    """r = f - A u, the residual (u = None is zero). An A that defines ``residual(u, f)``
    (:class:`~mgnet.core.protocols.FusedResidual`, e.g. a fixed stencil) computes it there
    in one fused pass; it must return f - A(u) up to rounding.

    This is the one residual function of the package: the cycle, the smoothers' fused
    updates and the theory maps all call it."""
    if u is None:
        return f
    fused = getattr(A, "residual", None)
    return fused(u, f) if callable(fused) else f - A(u)


@dataclass
class CycleRecord:
    """Optional trace of a cycle: what every level held after every operation.

    Pass an instance as ``record=`` to :meth:`MgCycle.forward`; each event is a dict with
    ``level`` (0-based, finest = 0), ``phase`` (``"start"``, ``"pre"``, ``"restrict"``,
    ``"correct"``, ``"post"``), ``step`` (i within the phase), the feature ``u`` and data
    ``f`` of that level (``u`` is ``None`` where it is zero), and ``residual``, the norm
    of f - A u per sample where ``residuals=True``.
    Tensors are detached, so recording never keeps an autograd graph alive.
    """

    residuals: bool = False
    events: list[dict] = field(default_factory=list)

    def add(
        self,
        level: int,
        phase: str,
        step: int,
        u: Tensor | None,
        f: Tensor,
        A: nn.Module | None = None,
    ) -> None:
        event = {
            "level": level,
            "phase": phase,
            "step": step,
            "u": None if u is None else u.detach(),
            "f": f.detach(),
        }
        if self.residuals:
            r = f if A is None else residual(A, u, f)
            event["residual"] = r.detach().flatten(1).norm(dim=1)
        self.events.append(event)

    def final(self, level: int) -> dict:
        """The last event recorded on ``level``: its final u^l and f^l."""
        for event in reversed(self.events):
            if event["level"] == level:
                return event
        raise KeyError(f"level={level} was not visited; visited {sorted(self.levels())}")

    def levels(self) -> set[int]:
        return {e["level"] for e in self.events}


class Step(nn.Module):
    """One smoothing step u <- u + sigma_out(B^{l,i} * sigma_in(f - A^l * u)).

    ``A`` (feature -> data) and ``B`` (data -> feature) are modules; passing the same
    module to several steps shares it (A^l shared by a level, B^l shared by a level).
    ``sigma_in`` and ``sigma_out`` are pointwise modules; ``None`` is the identity.
    A ``B`` whose attribute ``needs_u`` is true is called as ``B(r, u)``: a smoother
    that depends on the current iterate, such as Newton-Jacobi for a nonlinear A
    (:class:`~mgnet.core.protocols.IterateDependent`).
    ``project`` (optional) is applied to the updated feature, u <- project(u + du): the
    projection onto a constraint set such as u >= 0 (constrained data-feature mapping).

    ``forward(u, f, inplace=True)`` may overwrite u (the caller owns it and keeps no
    autograd graph): u + du becomes ``u.add_(du)``, and with sigma = identity and no
    projection a B with a method ``update_(A, u, f)`` (u <- u + B (f - A u) in place,
    returning u; :class:`~mgnet.core.protocols.InPlaceSmoother`) does the whole step,
    e.g. a smoother that fuses the residual and its scaling into one buffer.
    """

    def __init__(
        self,
        A: nn.Module,
        B: nn.Module,
        sigma_in: nn.Module | None = None,
        sigma_out: nn.Module | None = None,
        project: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.A = A
        self.B = B
        self.sigma_in = sigma_in
        self.sigma_out = sigma_out
        self.project = project

    def residual(self, u: Tensor | None, f: Tensor) -> Tensor:
        """f - A u, with u = None standing for zero."""
        return residual(self.A, u, f)

    def forward(self, u: Tensor | None, f: Tensor, inplace: bool = False) -> Tensor:
        linear = self.sigma_in is None and self.sigma_out is None and self.project is None
        if inplace and u is not None and linear:
            update = getattr(self.B, "update_", None)  # InPlaceSmoother
            if callable(update):
                return update(self.A, u, f)
        r = _apply(self.sigma_in, self.residual(u, f))
        du = self.B(r, u) if getattr(self.B, "needs_u", False) else self.B(r)
        du = _apply(self.sigma_out, du)
        if u is None:
            return _apply(self.project, du)
        return _apply(self.project, u.add_(du) if inplace else u + du)


class Level(nn.Module):
    """Grid l: its operator A^l and its smoothing steps.

    ``pre`` holds the nu_l steps of the down-sweep, ``post`` the nu'_l steps after the
    coarse correction (up-sweep only). ``A`` is the level's own A^l, used for the residual
    that is restricted and for the term A^{l+1} u^{l+1,0} seen from the finer grid.
    """

    def __init__(self, A: nn.Module, pre: Sequence[Step], post: Sequence[Step] = ()) -> None:
        super().__init__()
        self.A = A
        self.pre = nn.ModuleList(pre)
        self.post = nn.ModuleList(post)

    @property
    def nu(self) -> tuple[int, int]:
        """(nu_l, nu'_l): pre- and post-smoothing steps."""
        return len(self.pre), len(self.post)


class Transfer(nn.Module):
    """Grid transfers between level l and level l+1.

    ``Pi`` (feature, fine -> coarse): ``None`` is Pi = 0, the correction scheme.
    ``R`` (data, fine -> coarse), applied to the residual f^l - A^l u^l.
    ``P`` (feature, coarse -> fine): prolongation of the up-sweep; classifiers leave it out.
    ``sigma_Pi`` and ``sigma_R`` follow Pi and R (BN + ReLU in the classifiers).
    """

    def __init__(
        self,
        R: nn.Module,
        Pi: nn.Module | None = None,
        P: nn.Module | None = None,
        sigma_Pi: nn.Module | None = None,
        sigma_R: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.R = R
        self.Pi = Pi
        self.P = P
        self.sigma_Pi = sigma_Pi
        self.sigma_R = sigma_R


class MgCycle(nn.Module):
    """The MgNet cycle over ``levels`` (finest first) joined by ``transfers``.

    Args:
        levels: J ``Level`` modules.
        transfers: J - 1 ``Transfer`` modules; ``transfers[l]`` joins level l and l+1.
        f_in: the map from the input to f^1 (a classifier's stem); ``None`` is identity.
        shape: ``"down"`` (Algorithm 1, returns u^J), or ``"V"``, ``"W"``, ``"F"``
            (down- and up-sweep, returns u^1; every transfer needs P).

    ``forward(f, u=None, record=None, shape=None, inplace=False)``: ``u`` is the initial
    guess u^{1,0} (``None`` is zero); ``record`` is an optional :class:`CycleRecord` that
    receives every level's u^l and f^l. ``inplace=True`` hands u over to the cycle: when
    autograd is off (``torch.no_grad``) and ``record`` is None, every feature tensor is
    updated in place, u included (see the module docstring); otherwise it is ignored.
    """

    def __init__(
        self,
        levels: Sequence[Level],
        transfers: Sequence[Transfer],
        f_in: nn.Module | None = None,
        shape: str = "down",
    ) -> None:
        super().__init__()
        if len(levels) < 1:
            raise ValueError("levels: need at least one Level")
        if len(transfers) != len(levels) - 1:
            raise ValueError(
                f"transfers: need {len(levels) - 1} for {len(levels)} levels, got {len(transfers)}"
            )
        self.levels = nn.ModuleList(levels)
        self.transfers = nn.ModuleList(transfers)
        self.f_in = f_in
        self.shape = shape
        self._check_shape(shape)

    def _check_shape(self, shape: str) -> None:
        if shape not in CYCLE_SHAPES:
            raise ValueError(f"shape: {shape!r} is not one of {', '.join(CYCLE_SHAPES)}")
        if shape != "down" and any(t.P is None for t in self.transfers):
            raise ValueError(f"shape: {shape!r} needs an up-sweep, but a Transfer has no P")

    @property
    def depth(self) -> int:
        """J, the number of levels."""
        return len(self.levels)

    def forward(
        self,
        f: Tensor,
        u: Tensor | None = None,
        record: CycleRecord | None = None,
        shape: str | None = None,
        inplace: bool = False,
    ) -> Tensor:
        shape = self.shape if shape is None else shape
        if shape != self.shape:
            self._check_shape(shape)
        f = _apply(self.f_in, f)
        return self._visit(0, u, f, shape, record, inplace)

    def fmg(
        self,
        f: Tensor,
        cycles: int = 1,
        shape: str = "V",
        record: CycleRecord | None = None,
        inplace: bool = False,
        interpolate: Sequence[Callable[[Tensor], Tensor]] | None = None,
    ) -> Tensor:
        """Full multigrid from zero: u^1 after one FMG pass over ``f``.

        f^1 = f_in(f) and f^{l+1} = sigma_R(R^{l+1}_l f^l) on every level; the coarsest
        level is visited once (its steps from u = 0), then on each finer level l
        u^l = P^l_{l+1} u^{l+1} starts ``cycles`` cycles of the given ``shape`` on that
        level (``"V"``, ``"W"`` or ``"F"``). ``interpolate`` replaces P for this start
        only (the FMG interpolation, one callable per transfer, e.g. cubic where the
        cycle's P is linear); the cycles keep their P. ``record`` and ``inplace`` are
        those of :meth:`forward`; the interpolated start is a fresh tensor, so the
        in-place cycles never write a tensor of the caller.
        """
        if shape not in ("V", "W", "F"):
            raise ValueError(f"shape: FMG cycles are 'V', 'W' or 'F', got {shape!r}")
        if cycles < 1:
            raise ValueError(f"cycles: need at least one cycle per level, got {cycles}")
        self._check_shape(shape)
        if interpolate is None:
            interpolate = [t.P for t in self.transfers]
        elif len(interpolate) != len(self.transfers):
            raise ValueError(
                f"interpolate: one callable per transfer ({len(self.transfers)}), "
                f"got {len(interpolate)}"
            )
        fs = [_apply(self.f_in, f)]
        for t in self.transfers:
            fs.append(_apply(t.sigma_R, t.R(fs[-1])))
        u = self._visit(self.depth - 1, None, fs[-1], shape, record, inplace)
        for l in range(self.depth - 2, -1, -1):
            u = interpolate[l](u)
            for _ in range(cycles):
                u = self._visit(l, u, fs[l], shape, record, inplace)
        return u

    def smooth(
        self,
        l: int,
        u: Tensor | None,
        f: Tensor,
        phase: str,
        record: CycleRecord | None = None,
        inplace: bool = False,
    ) -> Tensor | None:
        """Run level l's ``pre`` or ``post`` steps on (u, f)."""
        level = self.levels[l]
        for i, step in enumerate(getattr(level, phase)):
            u = step(u, f, inplace) if inplace else step(u, f)
            if record is not None:
                record.add(l, phase, i + 1, u, f, step.A)
        return u

    def restrict(self, l: int, u: Tensor | None, f: Tensor) -> tuple[Tensor | None, Tensor]:
        """(u^{l+1,0}, f^{l+1}) = (Pi u^l, R (f^l - A^l u^l) + A^{l+1} Pi u^l)."""
        t = self.transfers[l]
        fused = getattr(t.R, "restrict_residual", None)  # FusedRestriction
        if callable(fused):
            f_c = _apply(t.sigma_R, fused(self.levels[l].A, u, f))
        else:
            f_c = _apply(t.sigma_R, t.R(residual(self.levels[l].A, u, f)))
        if t.Pi is None or u is None:
            return None, f_c
        u_c = _apply(t.sigma_Pi, t.Pi(u))
        return u_c, f_c + self.levels[l + 1].A(u_c)

    def _fusable(self, l: int, phase: str, inplace: bool) -> tuple | None:
        """(the fused hook of level l's ``phase``, level l's A, the B of the phase's steps):
        R.smooth_restrict_ for "pre", P.add_to_smooth_ for "post"; None when the cycle must
        run the steps one by one: not in place, no such hook, Pi or sigma_R present, or a
        step with sigma, a projection, an iterate-dependent B or another A.

        Called on every visit, so it reads the modules' registries directly: an attribute
        of a module that holds a module lives in ``_modules`` (``nn.Module.__setattr__``
        puts it there), and an ``nn.Module`` attribute look-up costs microseconds."""
        if not inplace:
            return None
        t = self.transfers._modules[str(l)]._modules
        if t.get("Pi") is not None or t.get("sigma_R") is not None:
            return None
        hook = getattr(t["R"], "smooth_restrict_", None) if phase == "pre" else None
        if phase == "post":
            hook = getattr(t["P"], "add_to_smooth_", None)
        if not callable(hook):
            return None
        level = self.levels._modules[str(l)]._modules
        A = level["A"]
        Bs = []
        for step in level[phase]._modules.values():
            m = step._modules
            B = m["B"]
            if m["A"] is not A or m.get("sigma_in") is not None or m.get("sigma_out") is not None:
                return None
            if m.get("project") is not None or getattr(type(B), "needs_u", False):
                return None
            if B.__dict__.get("needs_u", False):
                return None
            Bs.append(B)
        return hook, A, Bs

    def _visit(
        self,
        l: int,
        u: Tensor | None,
        f: Tensor,
        shape: str,
        record: CycleRecord | None = None,
        inplace: bool = False,
    ) -> Tensor:
        """One visit of level l in a cycle of the given shape (recursive on l)."""
        # in place only where nothing else can see the overwritten tensors
        inplace = inplace and record is None and not torch.is_grad_enabled()
        if record is not None:
            record.add(l, "start", 0, u, f, self.levels[l].A)
        last = l == self.depth - 1
        # the pre-smoothing and the restriction in one pass (FusedSmoothingRestriction)
        fused = None if last else self._fusable(l, "pre", inplace)
        done = None if fused is None else fused[0](fused[1], u, f, fused[2])
        f_c = None
        if done is not None:
            u, f_c = done
        else:
            u = self.smooth(l, u, f, "pre", record, inplace)
        if last:
            if shape != "down":
                u = self.smooth(l, u, f, "post", record, inplace)
            return torch.zeros_like(f) if u is None else u
        u_c0, f_c = (None, f_c) if f_c is not None else self.restrict(l, u, f)
        if record is not None:
            record.add(l + 1, "restrict", 0, u_c0, f_c, self.levels[l + 1].A)
        if shape == "down":
            return self._visit(l + 1, u_c0, f_c, "down", record, inplace)
        # u_c0 is needed after the coarse visit (FAS), so that visit works on a copy
        u_c = u_c0.clone() if inplace and u_c0 is not None else u_c0
        for coarse_shape in _COARSE_VISITS[shape]:
            u_c = self._visit(l + 1, u_c, f_c, coarse_shape, record, inplace)
        e_c = u_c if u_c0 is None else u_c - u_c0
        P: Operator | InPlaceProlongation = self.transfers[l].P
        # the correction and the post-smoothing in one pass (FusedCorrectionSmoothing)
        fused = None if u is None else self._fusable(l, "post", inplace)
        done = None if fused is None else fused[0](u, e_c, fused[1], f, fused[2])
        if done is not None:
            return done
        add_to = getattr(P, "add_to", None) if inplace and u is not None else None
        if callable(add_to):
            u = add_to(u, e_c)  # u += P e_c without forming P e_c
        else:
            correction = P(e_c)
            u = correction if u is None else u.add_(correction) if inplace else u + correction
        if record is not None:
            record.add(l, "correct", 0, u, f, self.levels[l].A)
        u = self.smooth(l, u, f, "post", record, inplace)
        return u
