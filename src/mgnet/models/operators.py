"""Neural operators: a field (batch, in_channels, s, s) to a field (batch, out_channels, s, s).

Made for PDE data on vertex-centred grids of s = 2^k + 1 points per side, boundary included
(33, 65, 129, ...), such as Darcy flow: the coefficient a in, the solution u out.

* :class:`MgNO`: MgNO-style (He, Liu, Xu, ICLR 2024). Each layer is a *linear* multichannel
  V-cycle of :class:`mgnet.core.MgCycle`, with a nonlinearity between layers::

      v^0 = Lift(a),   v^{k+1} = GELU(V_k(v^k) + W_k v^k),   u = Proj(v^L)

  where V_k is the cycle run on the data f = v^k from u = 0 (sigma = identity inside the
  cycle), W_k a pointwise (1x1) linear map with bias, and Lift, Proj pointwise maps.
  In V_k, every grid l has a learned A^l (3x3 convolution, feature -> data) and its own
  B^{l,i} (3x3, data -> feature) for each of nu pre- and nu' post-smoothing steps;
  R (3x3, stride 2) restricts the residual f - A^l u (data), P (3x3 transposed
  convolution, stride 2) prolongs the coarse correction (feature), and Pi = 0: the
  correction scheme. Zero padding is the Dirichlet boundary. R starts as full weighting
  and P as bilinear interpolation, channel by channel (``transfer_init="multigrid"``), so
  that the coarse grids carry the smooth part of the data from the first step. The cycle
  is the library's one MgCycle: no second implementation.
* :class:`FNO2d`: FNO-2D (Li et al., "Fourier Neural Operator for Parametric PDEs", 2020),
  written here after the paper and its reference Darcy script (width 32, 12 modes,
  4 Fourier layers, grid coordinates as input channels, zero-padding of 9 points against
  non-periodic boundaries, a two-layer 128-wide projection); it is not the neuraloperator
  package's FNO. Spectral weights are stored as real and imaginary parts, so counts and
  optimisers see real numbers: 2,368,001 parameters, as the paper's code counts them.
* :class:`UNet`: a standard U-Net (Ronneberger et al. 2015) with BatchNorm: double
  3x3 conv-BN-ReLU blocks, 2x2 max-pooling (ceil mode, so odd sides work) and 2x2
  transposed convolutions whose output is cropped to the skip connection's size.

``coords=True`` appends the grid coordinates (x, y) in [0, 1] as two more input channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgnet.core import Level, MgCycle, Step, Transfer
from mgnet.models.common import check_int, check_layout

__all__ = ["FNO2d", "MgNO", "NeuralOperator", "SpectralConv2d", "UNet"]

MAX_WIDTH = 4096


class NeuralOperator(nn.Module):
    """Base of the operators: channels, optional coordinates, and the input check."""

    def __init__(self, in_channels: int, out_channels: int, coords: bool) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, 1, MAX_WIDTH)
        self.out_channels = check_int("out_channels", out_channels, 1, MAX_WIDTH)
        if not isinstance(coords, bool):
            raise TypeError(f"coords: expected True or False, got {type(coords).__name__}")
        self.coords = coords

    @property
    def lifted_channels(self) -> int:
        """Channels after the coordinates are appended."""
        return self.in_channels + (2 if self.coords else 0)

    min_input_size: int

    def accepts(self, side: int) -> bool:
        """Whether a grid of ``side`` points per side goes through this model."""
        return side >= self.min_input_size

    def sides_accepted(self) -> str:
        """The sides :meth:`accepts`, in words (for error messages)."""
        return f">= {self.min_input_size}"

    def check_input(self, x: Tensor) -> None:
        """Raise a one-line ValueError if ``x`` cannot go through this operator."""
        check_layout(x, self.in_channels, ("s", "s"))
        for side in x.shape[2:]:
            if not self.accepts(side):
                raise ValueError(
                    f"input: side {side} of shape {tuple(x.shape)} does not fit "
                    f"{type(self).__name__}; accepted sides: {self.sides_accepted()}"
                )

    def with_coords(self, x: Tensor) -> Tensor:
        """x with the coordinates (x, y) in [0, 1] appended as channels (if ``coords``)."""
        if not self.coords:
            return x
        b, _, h, w = x.shape
        gy = torch.linspace(0, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1)
        gx = torch.linspace(0, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w)
        return torch.cat([x, gx.expand(b, 1, h, w), gy.expand(b, 1, h, w)], dim=1)


def _pointwise_mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Proj: 1x1 conv -> GELU -> 1x1 conv (a two-layer MLP at every grid point)."""
    return nn.Sequential(nn.Conv2d(c_in, hidden, 1), nn.GELU(), nn.Conv2d(hidden, c_out, 1))


# --------------------------------------------------------------------------------- MgNO
def _nu_pair(nu: int | Sequence[int]) -> tuple[int, int]:
    pair = (nu, nu) if isinstance(nu, int) and not isinstance(nu, bool) else tuple(nu)
    if len(pair) != 2:
        raise ValueError(f"nu: expected n or (pre, post), got {nu!r:.80}")
    pre = check_int("nu (pre-smoothing steps)", pair[0], 0, 64)
    post = check_int("nu (post-smoothing steps)", pair[1], 0, 64)
    if pre + post == 0:
        raise ValueError("nu: need at least one smoothing step per grid, got (0, 0)")
    return pre, post


TRANSFER_INITS = ("multigrid", "random")


def _multigrid_transfers_(transfers: Sequence[Transfer], width: int) -> None:
    """R <- full weighting, P <- bilinear interpolation, each acting on every channel alone.

    On the vertex-centred grids of the cycle (coarse node i on fine node 2i) both are the
    tensor product of (1, 2, 1): R's 3 x 3 stride-2 kernel (1, 2, 1)^T (1, 2, 1) / 16 (weights
    summing to 1: a smooth residual keeps its size on the coarse grid) and P's transposed
    kernel (1, 2, 1)^T (1, 2, 1) / 4 (every fine node gets weights summing to 1). Zero
    padding makes them the Dirichlet transfers: the boundary nodes see zeros outside.
    On the meta device (parameter counts) there are no values to fill: nothing is done,
    which also keeps torch's Python reference kernels (and torch._dynamo) out."""
    if any(t.R.weight.is_meta for t in transfers):
        return
    taps = torch.tensor([1.0, 2.0, 1.0])
    stencil = torch.outer(taps, taps)
    eye = torch.eye(width).view(width, width, 1, 1)
    with torch.no_grad():
        for t in transfers:
            t.R.weight.copy_(eye * stencil / 16)
            t.P.weight.copy_(eye * stencil / 4)


def linear_v_cycle(
    width: int, levels: int, nu: tuple[int, int], transfer_init: str = "multigrid"
) -> MgCycle:
    """A linear multichannel V-cycle on ``levels`` grids with ``width`` channels.

    Grid l: A^l (3x3 conv, feature -> data) and nu = (pre, post) smoothing steps, each with
    its own B^{l,i} (3x3 conv, data -> feature); sigma = identity. Between grids: R (3x3
    conv, stride 2) on the residual, P (3x3 transposed conv, stride 2), Pi = 0. A grid of
    n points (n odd) has a coarse grid of (n - 1) / 2 + 1 points, and P maps it back to n.

    ``transfer_init``: ``"multigrid"`` starts R as full weighting and P as bilinear
    interpolation on every channel (:func:`_multigrid_transfers_`); ``"random"`` leaves
    PyTorch's default initialisation. A and B always start random. With random R and P
    the path through grid l is a product of 2l + 1 random maps of gain about 1/sqrt(3)
    each, so the coarse grids, the cycle's global reach, start almost silent and learn
    slowly (benchmarks/darcy_operators.py).
    """

    def conv(stride: int = 1) -> nn.Conv2d:
        return nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)

    pre, post = nu
    grids = []
    for _ in range(levels):
        A = conv()
        grids.append(
            Level(A, [Step(A, conv()) for _ in range(pre)], [Step(A, conv()) for _ in range(post)])
        )
    transfers = [
        Transfer(
            R=conv(stride=2),
            Pi=None,
            P=nn.ConvTranspose2d(width, width, 3, stride=2, padding=1, bias=False),
        )
        for _ in range(levels - 1)
    ]
    if transfer_init == "multigrid":
        _multigrid_transfers_(transfers, width)
    elif transfer_init != "random":
        raise ValueError(
            f"transfer_init: expected one of {', '.join(TRANSFER_INITS)}, got {transfer_init!r:.80}"
        )
    return MgCycle(grids, transfers, shape="V")


class _TimesB(nn.Module):
    """B' = c B: a smoother ``B`` (data -> feature) with its output scaled by ``c``."""

    def __init__(self, B: nn.Module, c: float) -> None:
        super().__init__()
        self.B, self.c = B, c

    def forward(self, r: Tensor) -> Tensor:
        return self.c * self.B(r)


def refined_cycle(cycle: MgCycle, extra: int) -> MgCycle:
    """``cycle`` on a grid 2^extra times finer: ``extra`` more finest grids in front of its
    own, so that its grids keep their physical spacing (the coarsest stays the coarsest).

    The new grid i = 1..extra (counted towards the finer) reuses the finest grid's A^1 and
    its first transfer's R and P, and its B^{1,j} scaled by 4^-i: the stencils are in
    grid units, and the correction a smoother adds from the local data shrinks like h^2
    for a second-order operator. The same MgCycle class, with shared modules: no second
    cycle and no new parameters."""
    first, transfer = cycle.levels[0], cycle.transfers[0]
    levels, transfers = list(cycle.levels), list(cycle.transfers)
    for i in range(1, extra + 1):

        def steps(old: Sequence[Step], c: float = 4.0**-i) -> list[Step]:
            return [Step(first.A, _TimesB(step.B, c)) for step in old]

        levels.insert(0, Level(first.A, steps(first.pre), steps(first.post)))
        transfers.insert(0, transfer)
    return MgCycle(levels, transfers, shape=cycle.shape)


class MgNOLayer(nn.Module):
    """v -> V(v) + W v: the linear V-cycle ``cycle`` (run with f = v, u = 0) plus a
    pointwise linear ``skip`` W with bias. The nonlinearity is applied by :class:`MgNO`.
    ``extra`` > 0 runs the cycle on a grid 2^extra times finer than the one it was
    trained on (:func:`refined_cycle`)."""

    def __init__(
        self, width: int, levels: int, nu: tuple[int, int], transfer_init: str = "multigrid"
    ) -> None:
        super().__init__()
        self.cycle = linear_v_cycle(width, levels, nu, transfer_init)
        self.skip = nn.Conv2d(width, width, 1)

    def forward(self, v: Tensor, extra: int = 0) -> Tensor:
        cycle = refined_cycle(self.cycle, extra) if extra else self.cycle
        return cycle(v) + self.skip(v)


class MgNO(NeuralOperator):
    """MgNO-style neural operator: ``layers`` linear V-cycles with GELU between them.

    Args:
        in_channels, out_channels: channels of the input and output fields.
        width: channels c_u = c_f of every grid of every cycle.
        layers: number of V-cycle layers L.
        levels: grids per V-cycle J; a side s must be m * 2^(J-1) + 1 with m >= 2
            (J = 5: 33, 49, 65, ..., 129, 257), so it runs at other resolutions than the
            one it was trained at.
        nu: smoothing steps per grid, n or (pre, post).
        coords: append the grid coordinates as input channels.
        proj_width: hidden channels of the pointwise projection.
        transfer_init: ``"multigrid"`` (R full weighting, P bilinear interpolation at
            initialisation) or ``"random"`` (PyTorch's default), see :func:`linear_v_cycle`.

    Resolution: training records the grid it sees (the buffer ``trained_shape``, saved
    with the weights). On a grid 2^k times finer in every axis (k >= 1; e.g. trained
    at 65, run at 129 or 257) every cycle runs on k more finest grids
    (:func:`refined_cycle`), so that its coarse grids are the physical grids it learned on;
    on any other accepted grid it runs its J grids as they are.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 24,
        layers: int = 4,
        levels: int = 5,
        nu: int | Sequence[int] = (1, 1),
        coords: bool = False,
        proj_width: int = 128,
        transfer_init: str = "multigrid",
    ) -> None:
        super().__init__(in_channels, out_channels, coords)
        self.width = check_int("width", width, 1, MAX_WIDTH)
        self.num_layers = check_int("layers", layers, 1, 64)
        self.levels = check_int("levels", levels, 1, 16)
        self.nu = _nu_pair(nu)
        self.proj_width = check_int("proj_width", proj_width, 1, MAX_WIDTH)
        self.lift = nn.Conv2d(self.lifted_channels, width, 1)
        self.layers = nn.ModuleList(
            MgNOLayer(width, levels, self.nu, transfer_init) for _ in range(layers)
        )
        self.proj = _pointwise_mlp(width, proj_width, out_channels)
        # (height, width) of the last training batch; zeros: not recorded
        self.register_buffer("trained_shape", torch.zeros(2, dtype=torch.long))
        # the same record as Python ints, which a traced forward reads: a tensor's values
        # would make the grid count data-dependent (torch.export, ONNX)
        self._trained: tuple[int, ...] = (0, 0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # weights saved before the grid was recorded: no record, the J grids as they are
        saved = state_dict.setdefault(prefix + "trained_shape", torch.zeros(2, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if isinstance(saved, Tensor) and saved.device.type != "meta":
            self._trained = tuple(int(n) for n in saved.tolist())

    def extra_grids(self, shape: Sequence[int]) -> int:
        """k where ``shape`` is 2^k (k >= 1) times finer than ``trained_shape`` in every
        axis (n - 1 = 2^k (t - 1)), else 0 (also when no grid was recorded)."""
        if torch.compiler.is_compiling():  # traced (compile, export): the Python record
            trained = self._trained
        else:  # eager: the buffer, which an EMA copy or a load_state_dict keeps current
            trained = tuple(self.trained_shape.tolist())
        if len(shape) != len(trained) or min(trained) < 2:
            return 0
        ratios = {(n - 1) / (t - 1) for n, t in zip(shape, trained)}
        if len(ratios) != 1:
            return 0
        ratio = ratios.pop()
        k = round(math.log2(ratio)) if ratio >= 2 else 0
        return k if k >= 1 and 2**k == ratio else 0

    @property
    def min_input_size(self) -> int:
        return 2**self.levels + 1

    def accepts(self, side: int) -> bool:
        return side >= self.min_input_size and (side - 1) % 2 ** (self.levels - 1) == 0

    def sides_accepted(self) -> str:
        step = 2 ** (self.levels - 1)
        first = ", ".join(str(self.min_input_size + k * step) for k in range(3))
        return f"m * {step} + 1 >= {self.min_input_size} ({first}, ...) for {self.levels} levels"

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if self.training:
            shape = tuple(int(n) for n in x.shape[2:])
            if shape != self._trained:
                self._trained = shape
                for axis, n in enumerate(shape):
                    self.trained_shape[axis] = n  # a fill on the device, no synchronisation
            extra = 0
        else:
            extra = self.extra_grids(x.shape[2:])
        v = self.lift(self.with_coords(x))
        for layer in self.layers:
            v = F.gelu(layer(v, extra))
        return self.proj(v)

    def activation_numel(self, size: int) -> int:
        """Rough count of the activations one sample of side ``size`` keeps for backward."""
        steps = sum(self.nu)
        per_layer = sum(
            (3 * steps + 6) * self.width * (size // 2**l + 1) ** 2 for l in range(self.levels)
        )
        return self.num_layers * per_layer + (3 * self.width + 2 * self.proj_width) * size**2


# ---------------------------------------------------------------------------------- FNO
class SpectralConv2d(nn.Module):
    """The Fourier layer's global convolution: keep the lowest ``modes`` Fourier modes of
    each axis, multiply them by learned complex ``in x out`` matrices, transform back.

    The complex weights are stored as real and imaginary parts, (c_in, c_out, 2 modes1,
    modes2) each: rows [:modes1] act on the lowest non-negative frequencies of the first
    axis, rows [modes1:] on the highest (negative) ones, as the paper's two weight tensors.
    Real 4-D parameters keep counts, optimisers and ``channels_last`` conversion plain."""

    def __init__(self, c_in: int, c_out: int, modes1: int, modes2: int) -> None:
        super().__init__()
        self.modes1, self.modes2 = modes1, modes2
        scale = 1 / (c_in * c_out)  # uniform [0, scale) parts, as in the paper's code
        # in place: on the meta device (mgnet models) `scale * t` runs a Python reference
        # implementation whose first call imports torch._dynamo (a second or more)
        self.weight_re = nn.Parameter(torch.rand(c_in, c_out, 2 * modes1, modes2).mul_(scale))
        self.weight_im = nn.Parameter(torch.rand(c_in, c_out, 2 * modes1, modes2).mul_(scale))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        m1, m2 = self.modes1, self.modes2
        dtype = x.dtype  # FFTs of half precision are not supported: run them in float32
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x_ft = torch.fft.rfft2(x)
        weight = torch.complex(self.weight_re.to(x.dtype), self.weight_im.to(x.dtype))
        kept = torch.cat([x_ft[:, :, :m1, :m2], x_ft[:, :, -m1:, :m2]], dim=2)
        mixed = torch.einsum("bixy,ioxy->boxy", kept, weight)
        out = torch.zeros(b, weight.shape[1], h, w // 2 + 1, dtype=x_ft.dtype, device=x.device)
        out[:, :, :m1, :m2] = mixed[:, :, :m1]
        out[:, :, -m1:, :m2] = mixed[:, :, m1:]
        return torch.fft.irfft2(out, s=(h, w)).to(dtype)


class FNO2d(NeuralOperator):
    """FNO-2D after Li et al. (2020): lift, ``layers`` Fourier layers, project.

    Each Fourier layer is v <- GELU(K v + W v) (no GELU after the last), with K the
    :class:`SpectralConv2d` on ``modes`` x ``modes`` modes and W a 1x1 convolution. The input
    is zero-padded by ``padding`` points at the high end of each axis (the non-periodic
    Darcy boundary) and cropped back. Runs at any side s with s + padding >= 2 * modes.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 32,
        modes: int = 12,
        layers: int = 4,
        padding: int = 9,
        coords: bool = True,
        proj_width: int = 128,
    ) -> None:
        super().__init__(in_channels, out_channels, coords)
        self.width = check_int("width", width, 1, MAX_WIDTH)
        self.modes = check_int("modes", modes, 1, 256)
        self.num_layers = check_int("layers", layers, 1, 64)
        self.padding = check_int("padding", padding, 0, 1024)
        self.proj_width = check_int("proj_width", proj_width, 1, MAX_WIDTH)
        self.lift = nn.Conv2d(self.lifted_channels, width, 1)
        self.spectral = nn.ModuleList(
            SpectralConv2d(width, width, modes, modes) for _ in range(layers)
        )
        self.pointwise = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(layers))
        self.proj = _pointwise_mlp(width, proj_width, out_channels)

    @property
    def min_input_size(self) -> int:
        """2 * modes - padding: the padded grid must hold the modes kept."""
        return max(2 * self.modes - self.padding, 1)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        h, w = x.shape[2:]
        v = self.lift(self.with_coords(x))
        v = F.pad(v, [0, self.padding, 0, self.padding])
        for i, (K, W) in enumerate(zip(self.spectral, self.pointwise)):
            v = K(v) + W(v)
            if i < self.num_layers - 1:
                v = F.gelu(v)
        return self.proj(v[..., :h, :w])

    def activation_numel(self, size: int) -> int:
        """Rough count of the activations one sample of side ``size`` keeps for backward."""
        padded = (size + self.padding) ** 2
        pointwise = (3 * self.width + 2 * self.proj_width) * size**2
        return 5 * self.num_layers * self.width * padded + pointwise


# --------------------------------------------------------------------------------- U-Net
def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(NeuralOperator):
    """U-Net: ``depth`` 2x2 max-pool steps down, each halving the side (rounding up) and
    doubling the channels from ``width``; transposed convolutions back up, concatenated
    with the skip connection of the same side; a 1x1 convolution to ``out_channels``."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 16,
        depth: int = 3,
        coords: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, coords)
        self.width = check_int("width", width, 1, MAX_WIDTH)
        self.depth = check_int("depth", depth, 1, 12)
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(self.lifted_channels, width)])
        self.down.extend(_double_conv(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(
            _double_conv(2 * chans[i], chans[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(width, out_channels, 1)

    @property
    def min_input_size(self) -> int:
        """2^depth: one pixel on the coarsest grid."""
        return 2**self.depth

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        v = self.down[0](self.with_coords(x))
        skips = []
        for block in self.down[1:]:
            skips.append(v)
            v = block(F.max_pool2d(v, 2, ceil_mode=True))
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            v = up(v)[..., : skip.shape[2], : skip.shape[3]]
            v = merge(torch.cat([skip, v], dim=1))
        return self.head(v)

    def activation_numel(self, size: int) -> int:
        """Rough count of the activations one sample of side ``size`` keeps for backward."""
        total = 0
        for i in range(self.depth + 1):
            side = -(-size // 2**i)
            total += (6 if i == self.depth else 16) * self.width * 2**i * side * side
        return total
