"""Model problems with manufactured exact solutions, on the unit square/cube.

Each :class:`Problem` holds the fine-grid operator A, the right-hand side f (with any
inhomogeneous Dirichlet values already moved into it), and the exact solution u* sampled
at the grid nodes, so that ``max |u - u*|`` is the discretization error.

With S(x) = prod_k sin(pi x_k) and E(x) = exp(x_1), the exact solutions vanish on the
boundary (so full multigrid's interpolation is consistent with the data):

* ``poisson``:     -Delta u = f,               u* = S E
* ``anisotropic``: -sum_k eps_k u_kk = f,       u* = S E,  eps = (1, eps, eps)[:d]
  (default eps = 0.1: the coupling is strong along axis 0 and weak along the others)
* ``diffusion``:   -div(a grad u) = f,          u* = S,    a = exp(x_1 + ... + x_d)
* ``jump``:        -div(a grad u) = f,          u* = S E,  a = 100 on the middle square
  [1/4, 3/4]^d (its sides included) and 1 outside, a jump of 100 across its sides; f = A u*
  is computed from the discrete operator, so the error against u* is the solver's error
  alone. The sides lie on the nodes of every grid down to h = 1/4, where they belong to
  the square, so the rediscretized coarse operators see the same square (with the sides
  outside it, point-sampled coarse coefficients would make every V-cycle diverge)
* ``nonlinear``:   -Delta u + u^3 = f (FAS),    u* = S E

Inhomogeneous Dirichlet values are supported by :func:`mgnet.stencils.dirichlet_lift`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mgnet.constants import DIMS, PROBLEMS
from mgnet.stencils import (
    NonlinearOperator,
    StencilOperator,
    anisotropic,
    diffusion,
    grid_points,
    laplacian,
)

__all__ = ["Problem", "make_problem", "PROBLEMS"]

ANISOTROPY = 0.1
JUMP = 100.0


@dataclass
class Problem:
    """A discrete problem A(u) = f with the exact solution u_exact at the grid nodes."""

    name: str
    A: StencilOperator | NonlinearOperator
    f: Tensor
    u_exact: Tensor

    def error(self, u: Tensor) -> float:
        """max |u - u*| over the grid (the discretization error once u solves A u = f)."""
        return float((u.reshape(self.u_exact.shape).double().cpu() - self.u_exact).abs().max())


def _sines(xs: list[Tensor]) -> Tensor:
    s = torch.ones_like(xs[0])
    for x in xs:
        s = s * torch.sin(math.pi * x)
    return s


def make_problem(name: str, dim: int = 2, n: int = 63, eps: float | None = None) -> Problem:
    """The model problem ``name`` (one of PROBLEMS) on n^dim interior nodes, in float64.

    ``eps`` is the anisotropy of ``"anisotropic"`` (default 0.1); other problems ignore it.
    """
    if name not in PROBLEMS:
        raise ValueError(f"problem: {name!r} is not one of {', '.join(PROBLEMS)}")
    eps = ANISOTROPY if eps is None else eps
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: the anisotropy must be a positive number, got {eps!r}")
    if dim not in DIMS:
        raise ValueError(f"dim: must be 1, 2 or 3, got {dim}")
    if n < 1:
        raise ValueError(f"n: must be a positive grid size, got {n}")
    shape = (n,) * dim
    xs = grid_points(shape)
    S = _sines(xs)
    d = dim

    if name == "diffusion":
        A = diffusion(shape, lambda *x: torch.exp(sum(x)))
        a = torch.exp(sum(xs))
        grad_sum = torch.zeros_like(S)
        for k in range(d):
            term = math.pi * torch.cos(math.pi * xs[k])
            for j in range(d):
                if j != k:
                    term = term * torch.sin(math.pi * xs[j])
            grad_sum = grad_sum + term
        f = a * (d * math.pi**2 * S - grad_sum)
        return Problem(name, A, f.reshape(1, 1, *shape), S)
    E = torch.exp(xs[0])
    u = S * E
    # d^2/dx_1^2 (S E) = ((1 - pi^2) S + 2 C) E with C = pi cos(pi x_1) prod_{j>1} sin(pi x_j)
    C = math.pi * torch.cos(math.pi * xs[0])
    for j in range(1, d):
        C = C * torch.sin(math.pi * xs[j])
    u11 = ((1 - math.pi**2) * S + 2 * C) * E
    other = -(math.pi**2) * u  # each of the axes 2..d
    if name == "jump":

        def a(*x: Tensor) -> Tensor:
            inside = torch.ones_like(x[0], dtype=torch.bool)
            for xk in x:
                inside &= (xk >= 0.25) & (xk <= 0.75)
            return torch.where(inside, JUMP, 1.0).to(torch.float64)

        A = diffusion(shape, a)
        with torch.no_grad():
            f = A(u.reshape(1, 1, *shape))
        return Problem(name, A, f, u)
    if name == "anisotropic":
        coeff = (1.0,) + (float(eps),) * (d - 1)
        A = anisotropic(shape, coeff)
        f = -(coeff[0] * u11 + sum(coeff[1:]) * other)
    else:
        A = laplacian(shape)
        f = -(u11 + (d - 1) * other)
    if name == "nonlinear":
        f = f + u**3
        A = NonlinearOperator(A, "cubic")
    return Problem(name, A, f.reshape(1, 1, *shape), u)
