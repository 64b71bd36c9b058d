"""The constrained linear data-feature mapping: A * u = f subject to u >= 0.

He, Chen and Xu (arXiv:1911.10428) read a CNN's feature extraction as solving a linear
data-feature mapping with a sign constraint. The smoothing step with the outer sigma
replaced by the projection onto u >= 0, ``u <- max(0, u + B * (f - A * u))``, is a
projected iteration for it: :func:`projected_smoothing` runs it as a one-level
:class:`~mgnet.core.MgCycle` (the core :class:`~mgnet.core.Step` with ``project=``) until it
stops moving. With a symmetric positive-definite A and B = omega D^-1 the limit minimizes
u.A u / 2 - f.u over u >= 0; with B = omega A^T (projected Landweber) it is the
nonnegative least-squares solution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mgnet.core import Level, MgCycle, Step
from mgnet.probes import Adjoint, _feature_shape, operator_diagonal, power_iteration

__all__ = ["NonNegative", "ProjectedResult", "Scaled", "projected_smoothing"]


class Scaled(nn.Module):
    """B = omega * D^-1 (damped Jacobi) or omega * I (Richardson): a pointwise scaling.

    ``scale`` is a tensor broadcast against the residual (``omega / diag(A)``) or a number.
    """

    def __init__(self, scale: Tensor | float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale))

    def forward(self, r: Tensor) -> Tensor:
        return self.scale * r


class NonNegative(nn.Module):
    """The projection onto {u >= 0}: u -> max(u, 0) (the outer sigma of the constrained model)."""

    def forward(self, u: Tensor) -> Tensor:
        return torch.clamp_min(u, 0)


@dataclass
class ProjectedResult:
    """Outcome of :func:`projected_smoothing`.

    u: the iterate (feature tensor, u >= 0). iterations: smoothing steps taken.
    converged: whether ||u^{k} - u^{k-1}|| <= tol * max(||u^k||, 1) was reached.
    history: ||u^{k} - u^{k-1}|| after every ``check_every`` steps. omega: the damping used.
    """

    u: Tensor
    iterations: int
    converged: bool
    history: list[float] = field(default_factory=list)
    omega: float = 1.0


_SMOOTHERS = ("jacobi", "richardson", "adjoint")


def projected_smoothing(
    A: nn.Module,
    f: Tensor,
    B: nn.Module | str = "jacobi",
    omega: float | None = None,
    u0: Tensor | None = None,
    tol: float = 1e-10,
    maxiter: int = 20_000,
    check_every: int = 10,
) -> ProjectedResult:
    """Solve A * u = f subject to u >= 0 by the projected smoothing iteration.

    Every step is the core smoothing step with the projection as outer sigma::

        u <- max(0, u + B * (f - A * u))

    run as a one-level :class:`~mgnet.core.MgCycle` of ``check_every`` steps at a time.

    Args:
        A: the linear data-feature map A (feature -> data), e.g. a positive-definite stencil.
        f: the data, (batch, channel, *space).
        B: the smoother B (data -> feature): a module, or
            ``"jacobi"`` (B = omega D^-1; for symmetric positive-definite A the limit is the
            minimizer of u.A u / 2 - f.u over u >= 0),
            ``"richardson"`` (B = omega I; same limit), or
            ``"adjoint"`` (B = omega A^T; projected Landweber, the limit is the
            nonnegative least-squares solution, argmin_{u >= 0} ||A u - f||).
        omega: damping; default 1 / lambda_max of B A (power iteration), which converges.
        u0: initial guess (projected onto u >= 0); ``None`` is zero.
        tol: stop when ||u^{k} - u^{k-1}|| <= tol * max(||u^k||, 1).
        maxiter: most smoothing steps.
        check_every: steps between convergence checks.
    """
    if not isinstance(f, Tensor) or f.dim() < 3:
        raise ValueError(
            f"f: expected a (batch, channel, *space) tensor, got "
            f"{tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__}"
        )
    if isinstance(B, str) and B not in _SMOOTHERS:
        raise ValueError(f"B: {B!r} is not one of {', '.join(_SMOOTHERS)} or an nn.Module")
    if not isinstance(B, str | nn.Module):
        raise ValueError(
            f"B: expected one of {', '.join(_SMOOTHERS)} or an nn.Module, got {type(B).__name__}"
        )
    if omega is not None and not omega > 0:
        raise ValueError(f"omega: must be positive, got {omega}")
    if maxiter < 1 or check_every < 1:
        raise ValueError(f"maxiter, check_every: must be >= 1, got {maxiter}, {check_every}")
    if not tol > 0:
        raise ValueError(f"tol: must be positive, got {tol}")
    like = torch.zeros(_feature_shape(A, f), dtype=f.dtype, device=f.device)
    if u0 is not None and u0.shape != like.shape:
        raise ValueError(f"u0: expected shape {tuple(like.shape)}, got {tuple(u0.shape)}")

    if isinstance(B, str):
        if B != "adjoint" and A(like).shape != like.shape:
            raise ValueError(
                f"B: {B!r} needs a square A (feature and data of one shape), "
                f"got A: {tuple(like.shape)} -> {tuple(A(like).shape)}; "
                "use B='adjoint'"
            )
        if B == "adjoint":
            base = Adjoint(A)
        elif B == "richardson":
            base = Scaled(1.0)
        else:
            diag = operator_diagonal(A, like)
            if (diag <= 0).any():
                raise ValueError(
                    "A: 'jacobi' needs a positive diagonal; pass B='richardson' or a module"
                )
            base = Scaled(1.0 / diag)
        if omega is None:
            omega = 1.0 / power_iteration(lambda x: base(A(x)), like)
        B_mod = Adjoint(A, omega) if B == "adjoint" else Scaled(omega * base.scale)
    else:
        B_mod = B
        omega = 1.0 if omega is None else omega
        if omega != 1.0:
            B_mod = nn.Sequential(B, Scaled(omega))

    step = Step(A, B_mod, project=NonNegative())
    chunk = MgCycle([Level(A, [step] * (check_every - 1))], []) if check_every > 1 else None
    u = None if u0 is None else torch.clamp_min(u0, 0)
    history: list[float] = []
    iterations, converged = 0, False
    with torch.no_grad():
        while iterations < maxiter:
            n = min(check_every, maxiter - iterations)
            if n > 1:
                run = chunk if n == check_every else MgCycle([Level(A, [step] * (n - 1))], [])
                u = run(f, u)
            # the change of the last step: zero exactly at a fixed point of the iteration
            new = step(u, f)
            change = (new if u is None else new - u).norm().item()
            iterations += n
            history.append(change)
            u = new
            if change <= tol * max(u.norm().item(), 1.0):
                converged = True
                break
    u = like if u is None else u
    return ProjectedResult(
        u=u, iterations=iterations, converged=converged, history=history, omega=float(omega)
    )
