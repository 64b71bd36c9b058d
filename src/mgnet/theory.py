"""The theory of MgNet, executable: the maps between the residual form, pre-activation ResNet
and the multigrid solver.

Residual form (He & Xu 2019, section 5). On level l with a *shared* A^l, put
r^{l,i} = f^l - A^l * u^{l,i}. The smoothing step
``u^{l,i} = u^{l,i-1} + sigma(B^{l,i} * sigma(f^l - A^l * u^{l,i-1}))`` becomes::

    r^{l,i} = r^{l,i-1} - A^l * sigma(B^{l,i} * sigma(r^{l,i-1}))

which is the pre-activation ResNet block ``x + conv2(relu(bn2(conv1(relu(bn1(x))))))``
(:class:`mgnet.models.PreActBlock`) under the map

======================  ==========================  ==============================
pre-activation block    MgNet smoothing step        symbol
======================  ==========================  ==============================
x (block input)         f^l - A^l u^{l,i-1}          r^{l,i-1}, the residual
bn1, ReLU               ``step.sigma_in``            inner sigma
conv1                   ``step.B``                   B^{l,i}  (data -> feature)
bn2, ReLU               ``step.sigma_out``           outer sigma
conv2                   ``-step.A``                  -A^l     (feature -> data)
======================  ==========================  ==============================

Every block of a pre-activation stage has its own conv2, i.e. its own A^{l,i}: with an
unshared A^{l,i} the residual recurrence *is* pre-activation ResNet. MgNet is the same
recurrence with the constraint conv2^{l,1} = ... = conv2^{l,nu_l} = -A^l; only under that
constraint is there a feature u^l with r^{l,i} = f^l - A^l u^{l,i}.
:func:`level_to_preact` and :func:`preact_to_level` carry weights across in both directions
and refuse exactly when that constraint fails.

Without sigma the network is a multigrid cycle: :func:`load_multigrid` writes a multigrid
solver's fixed stencils (A^l, B^l = w D^-1, R, Pi = 0) into an MgNet classifier's own
layers. :func:`parameter_budget` splits a classifier's parameters by role (A, B, Pi, R).

The constrained data-feature mapping (A u = f, u >= 0) is :mod:`mgnet.constrained`; the
operator probes (dense matrix, diagonal, power iteration, adjoint) are :mod:`mgnet.probes`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mgnet.core import Level, MgCycle, Step
from mgnet.models.baselines import PreActBlock

__all__ = [
    "level_to_preact",
    "load_multigrid",
    "parameter_budget",
    "preact_to_level",
    "step_to_preact",
]


# ------------------------------------------------------------------ residual form
def _conv3(module: nn.Module, what: str) -> nn.Conv2d:
    ok = (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.bias is None
        and module.padding_mode == "zeros"
    )
    if not ok:
        raise ValueError(
            f"{what}: expected a bias-free 3x3 stride-1 padding-1 nn.Conv2d, got {module!r}"
        )
    return module


def _bn_relu(sigma: nn.Module | None, what: str) -> nn.BatchNorm2d:
    """The BatchNorm of a sigma = ReLU(BN(.)) module (nn.Sequential(BN, ReLU))."""
    if (
        isinstance(sigma, nn.Sequential)
        and len(sigma) == 2
        and isinstance(sigma[0], nn.BatchNorm2d)
        and isinstance(sigma[1], nn.ReLU)
    ):
        return sigma[0]
    raise ValueError(
        f"{what}: a pre-activation block needs sigma = nn.Sequential("
        f"nn.BatchNorm2d, nn.ReLU), got {sigma!r}"
    )


def step_to_preact(step: Step, A: nn.Module | None = None) -> PreActBlock:
    """The pre-activation block computing r -> f - A^l (u + du) from r = f - A^l u.

    ``step`` is an MgNet smoothing step u <- u + sigma(B^{l,i} * sigma(f - A^l * u)) with
    sigma = ReLU(BN(.)), A^l and B^{l,i} bias-free 3x3 convolutions and c_u = c_f.
    The block gets copies: bn1 = BN of sigma_in, conv1 = B^{l,i}, bn2 = BN of sigma_out,
    conv2 = -A^l (``A`` overrides ``step.A``). Running statistics are copied too.
    """
    A = _conv3(step.A if A is None else A, "A")
    B = _conv3(step.B, "B")
    if step.project is not None:
        raise ValueError(
            f"step: a projected step (project={step.project!r}) has no "
            "pre-activation form; the block has no projection"
        )
    if A.in_channels != A.out_channels:
        raise ValueError(
            f"A: identity shortcuts need c_u = c_f, got A: {A.in_channels} -> "
            f"{A.out_channels} channels"
        )
    c = A.out_channels
    if (B.in_channels, B.out_channels) != (c, c):
        raise ValueError(
            f"B: expected {c} -> {c} channels, got {B.in_channels} -> {B.out_channels}"
        )
    bn_in = _bn_relu(step.sigma_in, "sigma_in")
    bn_out = _bn_relu(step.sigma_out, "sigma_out")
    block = PreActBlock(c, c).to(device=A.weight.device, dtype=A.weight.dtype)
    block.bn1 = copy.deepcopy(bn_in)
    block.bn2 = copy.deepcopy(bn_out)
    with torch.no_grad():
        block.conv1.weight.copy_(B.weight)
        block.conv2.weight.copy_(-A.weight)
    block.train(step.training)
    return block


def _steps(level: Level | Sequence[Step]) -> list[Step]:
    steps = list(level.pre) if isinstance(level, Level) else list(level)
    if not steps or not all(isinstance(s, Step) for s in steps):
        raise ValueError("level: expected a Level or a non-empty sequence of Step modules")
    return steps


def level_to_preact(level: Level | Sequence[Step]) -> nn.Sequential:
    """The pre-activation ResNet stage equal to a level's smoothing steps, in residual form.

    If ``cycle_level`` maps (u^{l,0}, f^l) to u^{l,nu} then the returned stage maps
    r^{l,0} = f^l - A^l u^{l,0} to r^{l,nu} = f^l - A^l u^{l,nu}, in eval and in train mode.
    Every block's conv2 is a copy of -A^l. The steps must share one A^l (MgNet's
    ``share_A="level"``): with one A^{l,i} per step (spec token ``Ali``) the residuals
    f - A^{l,i} u of successive steps are different tensors and no residual stream exists.
    """
    steps = _steps(level)
    A = steps[0].A
    for i, s in enumerate(steps[1:], start=1):
        same = s.A is A or (
            isinstance(s.A, nn.Conv2d)
            and isinstance(A, nn.Conv2d)
            and torch.equal(s.A.weight, A.weight)
        )
        if not same:
            raise ValueError(
                f"level: step {i} uses its own A^{{l,i}} (weights differ from "
                "step 0); the residual form r = f - A^l u needs one A^l shared "
                "by the level's steps (share_A='level')"
            )
    return nn.Sequential(*[step_to_preact(s, A) for s in steps])


def preact_to_level(stage: nn.Sequential | Sequence[PreActBlock], atol: float = 0.0) -> Level:
    """The MgNet level whose smoothing steps equal a pre-activation stage (identity shortcuts).

    Returns ``Level(A, steps)`` with one A^l = -conv2 shared by all steps, B^{l,i} = conv1,
    sigma_in = ReLU(bn1), sigma_out = ReLU(bn2) (copies). For an input x, running the level
    from u^{l,0} = 0 with f^l = x gives u^{l,nu} with x - A^l u^{l,nu} = stage(x).

    This is possible exactly when every block's conv2 is the same (to ``atol``): that tie,
    A^{l,i} = A^l, is MgNet's constraint on pre-activation ResNet. Otherwise a one-line
    ValueError names the first block whose conv2 differs.
    """
    blocks = list(stage)
    if not blocks:
        raise ValueError("stage: expected a non-empty sequence of PreActBlock")
    for i, b in enumerate(blocks):
        if not isinstance(b, PreActBlock):
            raise ValueError(f"stage: block {i} is {type(b).__name__}, expected PreActBlock")
        if b.shortcut is not None:
            raise ValueError(
                f"stage: block {i} has a projection shortcut; only identity-"
                "shortcut blocks are smoothing steps (a stride or channel change "
                "is MgNet's transfer Pi, R)"
            )
    conv2 = blocks[0].conv2.weight
    for i, b in enumerate(blocks[1:], start=1):
        gap = (b.conv2.weight - conv2).abs().max().item()
        if gap > atol:
            raise ValueError(
                f"stage: conv2 of block {i} differs from block 0 by {gap:.3g} "
                f"(> atol={atol}); an MgNet level shares one A^l = -conv2 across "
                "its steps, a pre-activation stage has one A^{l,i} per block"
            )
    c = conv2.shape[0]
    A = nn.Conv2d(c, c, 3, padding=1, bias=False).to(device=conv2.device, dtype=conv2.dtype)
    with torch.no_grad():
        A.weight.copy_(-conv2)
    steps = []
    for b in blocks:
        B = copy.deepcopy(b.conv1)
        sigma_in = nn.Sequential(copy.deepcopy(b.bn1), nn.ReLU())
        sigma_out = nn.Sequential(copy.deepcopy(b.bn2), nn.ReLU())
        steps.append(Step(A, B, sigma_in=sigma_in, sigma_out=sigma_out))
    level = Level(A, steps)
    level.train(blocks[0].training)
    return level


# ------------------------------------------------------- sigma off: a multigrid cycle
def _stencil_weight(op, dim: int) -> Tensor:
    """The 3^d convolution weight of a constant stencil: w[1 + o] = c_o (cross-correlation)."""
    w = torch.zeros((1, 1) + (3,) * dim, dtype=torch.float64)
    for k, o in enumerate(op.offsets):
        w[(0, 0) + tuple(1 + x for x in o)] = float(op.coefficient(k))
    return w


def load_multigrid(model: nn.Module, solver, up_sweep: bool = False) -> nn.Module:
    """Load a multigrid solver's fixed operators into an MgNet classifier's own layers.

    ``model`` must be an MgNet with sigma switched off (``sigma="linear"``), one channel
    everywhere, a 3x3 stem and as many levels as ``solver`` (a
    :class:`mgnet.multigrid.MultigridSolver` with ``smoother="jacobi"`` on a Dirichlet
    grid whose coarsest level is a single unknown). In place, level by level:

    * stem f_in: the identity (a centred delta);
    * A^l: the solver's stencil, as the weight of the level's 3x3 convolution (zero padding
      is the Dirichlet boundary);
    * B^l: damped Jacobi w D^-1 (centre weight w / a_ii); on the 1 x 1 coarsest grid w = 1,
      which is the exact solve A^-1 the solver uses there;
    * R: full weighting, (1, 2, 1) x (1, 2, 1) / 16 with no padding (coarse node I sits on
      fine node 2I + 1 of a grid of 2m + 1 nodes);
    * Pi = 0 (``None``, the correction scheme).

    The down-sweep of the model then equals the solver's. ``up_sweep=True`` also adds the
    solver's interpolation P and nu' post-smoothing steps with the same A^l and B^l, so that
    ``model.cycle(f, u, shape="V")`` is the solver's V-cycle. Returns ``model``.
    """
    from mgnet.models.mgnet import MgNet

    if not isinstance(model, MgNet):
        raise ValueError(f"model: expected an MgNet classifier, got {type(model).__name__}")
    cfg = model.cfg
    if cfg.sigma != "linear":
        raise ValueError(
            f"model: sigma must be switched off (sigma='linear', spec token "
            f"'linear'), got sigma={cfg.sigma!r}"
        )
    if set(cfg.channels_u) | set(cfg.channels_f) != {1} or model.in_channels != 1:
        raise ValueError(
            "model: need one channel everywhere (channels_u = channels_f = 1, "
            f"in_channels=1), got {_channels(cfg)}, in_channels="
            f"{model.in_channels}"
        )
    if cfg.stem != "conv3" or cfg.dim != 2:
        raise ValueError(
            f"model: need a 2D model with the 3x3 stem, got dim={cfg.dim}, stem={cfg.stem!r}"
        )
    from mgnet.stencils import Jacobi

    levels = getattr(solver, "levels", None)
    smoothers = [B for lv in (levels or [])[:-1] for B in (*lv.presmoother, *lv.postsmoother)]
    if not isinstance(levels, list) or not all(isinstance(B, Jacobi) for B in smoothers):
        raise ValueError("solver: expected a MultigridSolver with smoother='jacobi'")
    ops = [lv.A for lv in levels]
    omega = smoothers[0].omega if smoothers else 1.0
    if len(ops) != cfg.depth:
        raise ValueError(
            f"solver: has {len(ops)} levels, the model {cfg.depth}; choose the "
            f"grid n = 2^{cfg.depth} - 1 = {2**cfg.depth - 1}"
        )
    if any(op.bc != "dirichlet" or not op.is_constant or op.dim != 2 for op in ops):
        raise ValueError("solver: need constant 2D stencils with Dirichlet boundaries")
    if ops[-1].unknowns != 1:
        raise ValueError(
            f"solver: its coarsest grid has {ops[-1].unknowns} unknowns; a 3x3 B "
            "is the exact coarse solve only on a single unknown"
        )
    nu_pre, nu_post = solver.nu
    if any(n != nu_pre for n in cfg.nu[:-1]):
        raise ValueError(
            f"solver: nu = {solver.nu} pre-smoothing steps, the model has "
            f"{list(cfg.nu)}; build the solver with nu=({cfg.nu[0]}, ...)"
        )
    cycle = model.cycle
    fw = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64) / 4
    with torch.no_grad():
        stem = cycle.f_in[0]
        stem.weight.zero_()
        stem.weight[0, 0, 1, 1] = 1.0
        for l, (level, op) in enumerate(zip(cycle.levels, ops)):
            coarsest = l == len(ops) - 1
            level.A.weight.copy_(_stencil_weight(op, 2))
            B = level.pre[0].B
            if any(step.B is not B or step.A is not level.A for step in level.pre):
                raise ValueError("model: need one A^l and one B^l per level (tokens Al, Bl)")
            B.weight.zero_()
            B.weight[0, 0, 1, 1] = (1.0 if coarsest else omega) / float(op.diagonal())
            if up_sweep and not coarsest:
                level.post = nn.ModuleList([Step(level.A, B) for _ in range(nu_post)])
        for l, t in enumerate(cycle.transfers):
            t.R.weight.copy_(torch.outer(fw, fw).view(1, 1, 3, 3))
            t.R.padding = (0, 0)
            t.Pi = None
            if up_sweep:
                from mgnet.stencils import Interpolation

                t.P = Interpolation(ops[l].shape, "dirichlet")
    return model


def _channels(cfg) -> str:
    return f"channels_u={list(cfg.channels_u)}, channels_f={list(cfg.channels_f)}"


# ------------------------------------------------------------------- parameter budget
def parameter_budget(model: nn.Module) -> dict[str, int]:
    """Parameters of an MgNet classifier by role; each shared tensor is counted once.

    Keys: ``"A"`` (A^l or A^{l,i}, feature -> data), ``"B"`` (B^l or B^{l,i}, data ->
    feature), ``"Pi"`` and ``"R"`` (the transfers' convolutions), ``"sigma"`` (BatchNorm
    of every sigma), ``"stem"`` (f_in) and ``"head"``. The values sum to the model's count.
    """
    cycle = getattr(model, "cycle", None)
    if not isinstance(cycle, MgCycle):
        raise ValueError(
            f"model: expected an MgNet classifier (with a .cycle MgCycle), got "
            f"{type(model).__name__}"
        )
    seen: set[int] = set()

    def count(modules) -> int:
        total = 0
        for m in modules:
            if m is None:
                continue
            for p in m.parameters():
                if id(p) not in seen and p.requires_grad:
                    seen.add(id(p))
                    total += p.numel()
        return total

    steps = [s for level in cycle.levels for s in (*level.pre, *level.post)]
    budget = {
        "A": count([lv.A for lv in cycle.levels] + [s.A for s in steps]),
        "B": count([s.B for s in steps]),
        "Pi": count([t.Pi for t in cycle.transfers]),
        "R": count([t.R for t in cycle.transfers]),
        "sigma": count(
            [s.sigma_in for s in steps]
            + [s.sigma_out for s in steps]
            + [t.sigma_Pi for t in cycle.transfers]
            + [t.sigma_R for t in cycle.transfers]
        ),
        "stem": count([cycle.f_in]),
    }
    budget["head"] = count([model])  # whatever is left: the classifier head
    return budget
