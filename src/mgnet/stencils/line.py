"""B^{l,i} = M_c T^-1: zebra line Gauss-Seidel, the classical smoother for anisotropy.

For A = -u_xx - eps u_yy with eps << 1 a point smoother (Jacobi, red-black Gauss-Seidel)
hardly damps errors that oscillate across the weak direction but are smooth along the
strong one, and multigrid with full coarsening stalls (0.7 per V-cycle at eps = 0.1, 0.96
at eps = 0.01). Line relaxation solves for a whole line of nodes along the strong axis at
once, which removes exactly those errors.

Write T for the part of A that couples a node to itself and to its two neighbours along
the line axis (a tridiagonal matrix per line; lines do not couple in T). Updating the
nodes of some lines to satisfy their equations with the other lines' values frozen is

    u <- u + M_c T^-1 (f - A u),

with M_c the 0/1 mask of those lines: one smoothing step of the MgNet cycle with
B = M_c T^-1. *Zebra* line Gauss-Seidel colours the lines like a zebra's stripes, by the
parity of their index across the line axis (in 3D, the parity of the sum of the two other
indices): one sweep is the step of the even lines, then the step of the odd lines
(:func:`zebra`), just as red-black Gauss-Seidel is the red step then the black step.

The tridiagonal systems are solved by cyclic reduction, vectorised over all lines of a
colour and over the batch: each of the log2(n) reduction levels halves every line at once
(every second equation is eliminated with its two neighbours), so a solve is a few dozen
tensor operations instead of a Python loop over the n nodes of a line. The coefficients of
every level are computed once, at construction; an application costs about four
multiply-adds per node, in torch, on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mgnet.stencils.operators import StencilOperator

__all__ = ["LineRelaxation", "zebra", "strong_axis"]


def _axis_offset(dim: int, axis: int, s: int) -> tuple[int, ...]:
    return tuple(s if k == axis else 0 for k in range(dim))


def _coupling(A: StencilOperator, axis: int) -> float:
    """The largest |a_ij| between a node and its neighbours along ``axis``."""
    strength = 0.0
    for s in (-1, 1):
        o = _axis_offset(A.dim, axis, s)
        if o in A.offsets:
            c = A.coefficient(A.offsets.index(o))
            c = float(c.abs().max()) if isinstance(c, Tensor) else abs(c)
            strength = max(strength, c)
    return strength


def strong_axis(A: StencilOperator) -> int:
    """The axis along which A couples most strongly (the first of equals): the direction
    of the lines. For ``anisotropic(shape, eps=(1, 0.01))`` it is axis 0."""
    strengths = [_coupling(A, k) for k in range(A.dim)]
    return max(range(A.dim), key=lambda k: (strengths[k], -k))


class LineRelaxation(nn.Module):
    """B = M_c T^-1, the step of one colour of zebra line Gauss-Seidel (module docstring).

    Args:
        A: the level's operator A^l, a Dirichlet :class:`~mgnet.stencils.StencilOperator`
            (constant or variable coefficients).
        axis: the grid axis along which the lines run (see :func:`strong_axis`).
        parity: 0 (even lines) or 1 (odd lines); a line's index is its position across
            ``axis`` (in 3D the sum of its two indices), and M_c keeps the lines whose
            index has this parity.
    """

    def __init__(self, A: StencilOperator, axis: int, parity: int) -> None:
        super().__init__()
        if not isinstance(A, StencilOperator):
            raise ValueError(f"A: line relaxation needs a StencilOperator, got {type(A).__name__}")
        if A.bc != "dirichlet":
            raise ValueError(f"A: line relaxation needs a Dirichlet grid, got bc={A.bc!r}")
        if not 0 <= axis < A.dim:
            raise ValueError(f"axis: must be in 0..{A.dim - 1} for a {A.dim}D grid, got {axis}")
        if parity not in (0, 1):
            raise ValueError(f"parity: must be 0 or 1, got {parity}")
        self.shape = A.shape
        self.dim = A.dim
        self.axis = axis
        self.parity = parity
        n = self.shape[axis]
        others = [s for k, s in enumerate(self.shape) if k != axis]
        # the lines of this colour, as indices into the other axes flattened (C order)
        index = torch.zeros((), dtype=torch.long)
        for s in others:
            index = index.unsqueeze(-1) + torch.arange(s)
        lines = torch.nonzero(index.flatten() % 2 == parity).flatten()
        self.register_buffer("lines", lines, persistent=False)
        self.constant = A.is_constant

        def along(c: float | Tensor) -> Tensor:  # coefficient -> (n, lines of this colour)
            t = torch.as_tensor(c, dtype=torch.float64)
            if t.dim() == 0:
                return t.expand(n, 1).clone()
            return t.movedim(axis, 0).reshape(n, -1)[:, lines]

        diag = along(A.diagonal())
        sub = torch.zeros_like(diag)  # coupling of node i to node i - 1 along the line
        sup = torch.zeros_like(diag)  # coupling of node i to node i + 1
        for s, target in ((-1, sub), (1, sup)):
            o = _axis_offset(A.dim, axis, s)
            if o in A.offsets:
                target += along(A.coefficient(A.offsets.index(o)))
        self.n = n
        self.levels = _reduction(sub, diag, sup)
        for k, level in enumerate(self.levels):
            for name, t in level.items():
                self.register_buffer(f"cr{k}_{name}", t, persistent=False)

    def _gather(self, r: Tensor) -> Tensor:
        """The residual on this colour's lines, shaped (batch, n along the line, lines)."""
        b, n = r.shape[0], self.shape[self.axis]
        moved = r.reshape(b, *self.shape).movedim(1 + self.axis, 1).reshape(b, n, -1)
        return moved.index_select(2, self.lines)

    def _solve(self, d: Tensor) -> Tensor:
        """T^-1 d for d shaped (batch, n along the line, lines): cyclic reduction."""
        b, n, m = d.shape
        size = 2 ** len(self.levels) - 1
        if size > n:  # pad with decoupled identity rows to 2^k - 1
            d = torch.cat([d, d.new_zeros(b, size - n, m)], dim=1)
        rhs = []
        for k in range(len(self.levels) - 1):
            c = self._level(k)
            rhs.append(d)
            # eliminate the even rows: d'_j = d_{2j+1} + alpha_j d_{2j} + gamma_j d_{2j+2}
            d = torch.addcmul(d[:, 1::2], c["alpha"], d[:, 0:-1:2]).addcmul_(c["gamma"], d[:, 2::2])
        x = d * self._level(len(self.levels) - 1)["binv"]
        for k in range(len(self.levels) - 2, -1, -1):
            # the even rows: x_i = d_i / b_i - a_i / b_i x_{i-1} - c_i / b_i x_{i+1}
            c, dk = self._level(k), rhs[k]
            even = dk[:, 0::2] * c["binv"]
            even[:, :-1].addcmul_(c["cb"], x, value=-1.0)
            even[:, 1:].addcmul_(c["ab"], x, value=-1.0)
            full = torch.empty_like(dk)
            full[:, 1::2] = x
            full[:, 0::2] = even
            x = full
        return x[:, :n]

    def _level(self, k: int) -> dict[str, Tensor]:
        return {name: getattr(self, f"cr{k}_{name}") for name in self.levels[k]}

    def forward(self, r: Tensor) -> Tensor:
        """M_c T^-1 r: the lines of this colour solved, zero on the other lines."""
        if r.dim() != self.dim + 2 or tuple(r.shape[2:]) != self.shape or r.shape[1] != 1:
            dims = ", ".join(map(str, self.shape))
            raise ValueError(f"r: expected shape (batch, 1, {dims}), got {tuple(r.shape)}")
        b, n = r.shape[0], self.shape[self.axis]
        x = self._solve(self._gather(r))
        out = torch.zeros(b, n, r[0, 0].numel() // n, dtype=r.dtype, device=r.device)
        out.index_copy_(2, self.lines, x)
        rest = [s for k, s in enumerate(self.shape) if k != self.axis]
        return out.reshape(b, n, *rest).movedim(1, 1 + self.axis).reshape(r.shape).contiguous()

    def extra_repr(self) -> str:
        colour = "even" if self.parity == 0 else "odd"
        return f"B = M_{colour} T^-1 (zebra line Gauss-Seidel, lines along axis {self.axis})"


def zebra(A: StencilOperator, axis: int | None = None) -> tuple[LineRelaxation, LineRelaxation]:
    """(B_even, B_odd) = (M_even T^-1, M_odd T^-1), one zebra line Gauss-Seidel sweep.

    ``axis`` is the direction of the lines; default :func:`strong_axis` (the direction of
    strongest coupling). In 1D the single line is the whole grid: B_even = A^-1.
    """
    axis = strong_axis(A) if axis is None else axis
    return LineRelaxation(A, axis, 0), LineRelaxation(A, axis, 1)


def _reduction(sub: Tensor, diag: Tensor, sup: Tensor) -> list[dict[str, Tensor]]:
    """The coefficients of cyclic reduction for the tridiagonal systems
    sub_i x_{i-1} + diag_i x_i + sup_i x_{i+1} = d_i (one column per line, or one column
    for all lines), padded with identity rows to 2^k - 1 equations.

    Level k keeps the odd rows i = 1, 3, ... of level k - 1; eliminating the even rows
    gives a'_j = alpha a_{i-1}, b'_j = b_i + alpha c_{i-1} + gamma a_{i+1},
    c'_j = gamma c_{i+1} with alpha = -a_i / b_{i-1}, gamma = -c_i / b_{i+1}. For the way
    back each level keeps 1/b, a/b and c/b of its even rows.
    """
    n = diag.shape[0]
    size = 1
    while size < n:
        size = 2 * size + 1
    if size > n:
        pad = size - n
        sub = torch.cat([sub, sub.new_zeros(pad, sub.shape[1])])
        sup = torch.cat([sup, sup.new_zeros(pad, sup.shape[1])])
        diag = torch.cat([diag, diag.new_ones(pad, diag.shape[1])])
    a, b, c = sub.clone(), diag.clone(), sup.clone()
    a[0] = 0.0
    c[-1] = 0.0
    levels = []
    while True:
        if not bool((b != 0).all()) or not bool(torch.isfinite(b).all()):
            raise ValueError("A: a line's tridiagonal part T is singular; no line relaxation")
        if b.shape[0] == 1:
            levels.append({"binv": 1.0 / b})
            return levels
        ae, be, ce = a[0::2], b[0::2], c[0::2]
        alpha = -a[1::2] / be[:-1]
        gamma = -c[1::2] / be[1:]
        levels.append(
            {
                "alpha": alpha,
                "gamma": gamma,
                "binv": 1.0 / be,
                "ab": ae[1:] / be[1:],
                "cb": ce[:-1] / be[:-1],
            }
        )
        a, b, c = alpha * ae[:-1], b[1::2] + alpha * ce[:-1] + gamma * ae[1:], gamma * ce[1:]
