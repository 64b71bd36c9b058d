"""Model problems with manufactured exact solutions, on the unit square/cube.

Each :class:`Problem` holds the fine-grid operator A, the right-hand side f (with any
inhomogeneous Dirichlet values already moved into it), and the exact solution u* sampled
at the grid nodes, so that ``max |u - u*|`` is the discretization error.

With S(x) = prod_k sin(pi x_k) and E(x) = exp(x_1), the exact solutions vanish on the
boundary (so full multigrid's interpolation is consistent with the data):

* ``poisson``:     -Delta u = f,               u* = S E
* ``anisotropic``: -sum_k eps_k u_kk = f,       u* = S E,  eps = (1, 0.1, 0.1)[:d]
* ``diffusion``:   -div(a grad u) = f,          u* = S,    a = exp(x_1 + ... + x_d)
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

ANISOTROPY = (1.0, 0.1, 0.1)


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


def make_problem(name: str, dim: int = 2, n: int = 63) -> Problem:
    """The model problem ``name`` (one of PROBLEMS) on n^dim interior nodes, in float64."""
    if name not in PROBLEMS:
        raise ValueError(f"problem: {name!r} is not one of {', '.join(PROBLEMS)}")
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
    if name == "anisotropic":
        eps = ANISOTROPY[:d]
        A = anisotropic(shape, eps)
        f = -(eps[0] * u11 + sum(eps[1:]) * other)
    else:
        A = laplacian(shape)
        f = -(u11 + (d - 1) * other)
    if name == "nonlinear":
        f = f + u**3
        A = NonlinearOperator(A, "cubic")
    return Problem(name, A, f.reshape(1, 1, *shape), u)
