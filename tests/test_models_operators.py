"""Neural operators: shapes at s = 33 and 65, gradients, resolutions, parameter budgets, and
MgNO's layer being the library's MgCycle as a linear V-cycle (sigma = identity, Pi = 0)."""

import pytest
import torch
from torch import nn

from mgnet.core import MgCycle
from mgnet.models import OPERATOR, count_parameters, create_model, list_models, model_info
from mgnet.models.operators import MgNO, linear_v_cycle

OPERATORS = list_models(kind=OPERATOR)


def test_the_operators_are_registered_as_operators():
    assert OPERATORS == ["fno", "fno_small", "mgno", "unet"]
    for name in OPERATORS:
        info = model_info(name)
        assert info.is_operator and info.num_classes is None
        assert (info.in_channels, info.out_channels, info.input_size) == (1, 1, 65)
    assert not model_info("mgnet_digits").is_operator
    assert not model_info("mgnet[2,2]-8").is_operator


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("s", [33, 65])
def test_operator_shapes_and_gradients(name, s):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(2, 1, s, s)
    out = model(x)
    assert out.shape == (2, 1, s, s)
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname  # every parameter takes part


def test_parameter_budgets_are_comparable():
    counts = {name: count_parameters(create_model(name)) for name in OPERATORS}
    assert counts == {"fno": 2_368_001, "fno_small": 457_409, "mgno": 482_705, "unet": 482_449}
    # mgno uses at most fno's parameters (about a fifth); unet and fno_small are its size
    assert counts["mgno"] < counts["fno"] / 4
    for name in ("unet", "fno_small"):
        assert abs(counts[name] / counts["mgno"] - 1) < 0.1


def test_mgno_layer_is_a_linear_v_cycle_of_the_core():
    model = create_model("mgno")
    assert len(model.layers) == 4
    for layer in model.layers:
        cycle = layer.cycle
        assert isinstance(cycle, MgCycle) and cycle.shape == "V" and cycle.depth == 5
        assert cycle.f_in is None
        for level in cycle.levels:
            assert level.nu == (1, 1)
            for step in [*level.pre, *level.post]:
                assert step.A is level.A  # A^l: one operator per grid
                assert step.sigma_in is None and step.sigma_out is None and step.project is None
                assert isinstance(step.B, nn.Conv2d) and step.B.bias is None
        for t in cycle.transfers:
            assert t.Pi is None and t.sigma_R is None and t.sigma_Pi is None
            assert t.R.stride == (2, 2) and isinstance(t.P, nn.ConvTranspose2d)


def test_mgno_transfers_start_as_full_weighting_and_bilinear_interpolation():
    torch.manual_seed(0)
    t = create_model("mgno", width=3, levels=3).layers[0].cycle.transfers[0]
    xs = torch.linspace(0, 1, 17, dtype=torch.float64)
    ramp = (2 * xs[None, :] - 3 * xs[:, None] + 0.5).expand(1, 3, 17, 17)  # linear in x, y
    with torch.no_grad():
        coarse = t.R.double()(ramp)
        fine = t.P.double()(ramp[..., ::2, ::2])
    # full weighting keeps a linear field at interior coarse nodes (weights summing to 1) and
    # bilinear interpolation reproduces it at every interior fine node, channel by channel
    torch.testing.assert_close(coarse[..., 1:-1, 1:-1], ramp[..., 2:-2:2, 2:-2:2])
    torch.testing.assert_close(fine[..., 1:-1, 1:-1], ramp[..., 1:-1, 1:-1])
    assert t.R.weight[0, 0].tolist() == [
        [1 / 16, 1 / 8, 1 / 16],
        [1 / 8, 1 / 4, 1 / 8],
        [1 / 16, 1 / 8, 1 / 16],
    ]
    assert t.R.weight[0, 1:].abs().sum() == 0 and t.P.weight[0, 1:].abs().sum() == 0


def test_mgno_coarse_grids_are_heard_at_initialisation():
    """Measured: with R and P starting as the multigrid transfers, a fresh V-cycle passes
    a smooth field with 1.5 to 2.7 times the gain of noise (seeds 0-4: its coarse grids
    answer); with PyTorch's random R and P it acts like one local 3 x 3 map, 0.8 to 1.05."""
    xs = torch.linspace(0, 1, 33)
    smooth = (torch.sin(torch.pi * xs)[:, None] * torch.sin(torch.pi * xs)[None, :]).expand(
        1, 24, 33, 33
    )
    noise = torch.randn(1, 24, 33, 33, generator=torch.Generator().manual_seed(1))
    ratios = {}
    for init in ("multigrid", "random"):
        torch.manual_seed(0)
        cycle = create_model("mgno", transfer_init=init).layers[0].cycle
        with torch.no_grad():
            gain = [cycle(x).norm() / x.norm() for x in (smooth, noise)]
        ratios[init] = (gain[0] / gain[1]).item()
    assert ratios["multigrid"] > 1.4 and 0.7 < ratios["random"] < 1.15, ratios


def test_mgno_cycle_is_linear_to_round_off():
    torch.manual_seed(0)
    cycle = create_model("mgno").layers[0].cycle.double()
    x, y = torch.randn(2, 24, 33, 33).double(), torch.randn(2, 24, 33, 33).double()
    a, b = 0.7, -1.9
    with torch.no_grad():
        lhs = cycle(a * x + b * y)
        rhs = a * cycle(x) + b * cycle(y)
    assert lhs.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12 * lhs.abs().max().item())
    # ... whereas the layer (cycle + W v + bias, then GELU in the model) is not
    layer = create_model("mgno").layers[0].double()
    with torch.no_grad():
        assert (layer(2 * x) - 2 * layer(x)).abs().max() > 1e-3


def v_cycle_by_hand(cycle, f):
    """The correction-scheme V-cycle from u = 0, written out recursively:
    u = 0; pre-smooth u += B (f - A u); f_c = R (f - A u); u_c = V(f_c) on the coarse grid;
    u += P u_c; post-smooth u += B (f - A u). On the coarsest grid only the smoothing."""

    def visit(l, f):
        level = cycle.levels[l]
        u = torch.zeros(f.shape[0], level.A.in_channels, *f.shape[2:], dtype=f.dtype)
        for step in level.pre:
            u = u + step.B(f - level.A(u))
        if l + 1 < len(cycle.levels):
            t = cycle.transfers[l]
            u = u + t.P(visit(l + 1, t.R(f - level.A(u))))
        for step in level.post:
            u = u + step.B(f - level.A(u))
        return u

    return visit(0, f)


def test_mgno_cycle_equals_a_v_cycle_written_by_hand():
    torch.manual_seed(0)
    cycle = linear_v_cycle(width=3, levels=3, nu=(2, 1)).double()
    f = torch.randn(2, 3, 17, 17, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(cycle(f), v_cycle_by_hand(cycle, f), rtol=1e-12, atol=1e-12)


def test_mgno_runs_at_other_resolutions_and_refuses_the_rest():
    model = create_model("mgno").eval()
    with torch.no_grad():
        for s in (33, 49, 129):
            assert model(torch.randn(1, 1, s, s)).shape == (1, 1, s, s)
        assert model(torch.randn(1, 1, 33, 65)).shape == (1, 1, 33, 65)
    for s in (64, 17):
        with pytest.raises(ValueError, match=r"^input: side .* accepted sides: m \* 16 \+ 1 >= 33"):
            model(torch.randn(1, 1, s, s))
    with pytest.raises(ValueError, match="^in_channels: the model takes 1 input channels"):
        model(torch.randn(1, 3, 33, 33))
    with pytest.raises(ValueError, match=r"^input: expected a \(batch, 1, s, s\) tensor"):
        model(torch.randn(33, 33))
    # fewer levels, smaller grids
    small = create_model("mgno", levels=3, width=8)
    assert small.min_input_size == 9 and small(torch.randn(1, 1, 9, 9)).shape == (1, 1, 9, 9)


@pytest.mark.parametrize("name", ["fno", "unet"])
def test_fno_and_unet_run_at_any_side(name):
    model = create_model(name).eval()
    with torch.no_grad():
        for s in (20, 64, 129):
            assert model(torch.randn(1, 1, s, s)).shape == (1, 1, s, s)


def test_coordinates_as_extra_channels():
    torch.manual_seed(0)
    plain, with_xy = MgNO(width=8, levels=3), MgNO(width=8, levels=3, coords=True)
    assert count_parameters(with_xy) - count_parameters(plain) == 2 * 8  # lift: 2 more inputs
    assert with_xy.lift.in_channels == 3 and with_xy.in_channels == 1
    fno = create_model("fno")
    assert fno.coords and fno.lift.in_channels == 3
    x = torch.zeros(1, 1, 9, 9)
    grid = with_xy.with_coords(x)
    torch.testing.assert_close(grid[0, 1, 0], torch.linspace(0, 1, 9))  # x along the width
    torch.testing.assert_close(grid[0, 2, :, 0], torch.linspace(0, 1, 9))  # y along the height


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("mgno", {"width": 0}, "width: must be an integer in 1..4096"),
        ("mgno", {"levels": 0}, "levels: must be an integer in 1..16"),
        ("mgno", {"nu": (0, 0)}, "nu: need at least one smoothing step"),
        ("mgno", {"nu": (1, 2, 3)}, r"nu: expected n or \(pre, post\)"),
        ("mgno", {"layers": -1}, "layers: must be an integer"),
        ("fno", {"modes": 0}, "modes: must be an integer"),
        ("unet", {"depth": 0}, "depth: must be an integer in 1..12"),
        ("unet", {"coords": 1}, "coords: expected True or False"),
        ("unet", {"widht": 3}, "does not accept widht; accepted: coords, depth, width"),
        ("mgno", {"out_channels": 0}, "out_channels: must be an integer >= 1"),
        ("mgno", {"transfer_init": "gauss"}, "^transfer_init: expected one of multigrid, random"),
    ],
)
def test_bad_operator_arguments_are_one_line(name, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        create_model(name, **kwargs)


def test_operator_variants_by_keyword():
    model = create_model("mgno", width=16, layers=2, levels=4, nu=2, out_channels=2, in_chans=3)
    assert (model.width, model.num_layers, model.levels, model.nu) == (16, 2, 4, (2, 2))
    assert model(torch.randn(1, 3, 17, 17)).shape == (1, 2, 17, 17)


@pytest.mark.parametrize("name", OPERATORS)
def test_operators_run_under_bf16_autocast_and_in_float64(name):
    model = create_model(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 1, 33, 33))
    assert out.shape == (2, 1, 33, 33) and torch.isfinite(out.float()).all()
    out.float().square().mean().backward()  # FNO's FFTs run in float32 inside
    model = model.double()
    assert model(torch.randn(1, 1, 33, 33, dtype=torch.float64)).dtype == torch.float64


def test_spectral_conv_keeps_every_mode_with_identity_weights():
    from mgnet.models.operators import SpectralConv2d

    conv = SpectralConv2d(3, 3, modes1=4, modes2=5).double()  # all modes of an 8 x 8 grid
    with torch.no_grad():
        conv.weight_re.zero_()
        conv.weight_im.zero_()
        for c in range(3):
            conv.weight_re[c, c] = 1.0
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(conv(x), x, rtol=1e-12, atol=1e-12)


def test_spectral_conv_is_a_circular_convolution():
    from mgnet.models.operators import SpectralConv2d

    torch.manual_seed(0)
    conv = SpectralConv2d(2, 3, modes1=3, modes2=3).double()
    x = torch.randn(1, 2, 12, 12, dtype=torch.float64)
    shifted = torch.roll(x, shifts=(5, -3), dims=(2, 3))
    with torch.no_grad():
        torch.testing.assert_close(
            conv(shifted), torch.roll(conv(x), shifts=(5, -3), dims=(2, 3)), rtol=0, atol=1e-12
        )
        assert conv(x).abs().max() > 1e-3


def test_mgno_records_its_grid_and_refines_the_cycle_on_a_finer_one():
    torch.manual_seed(0)
    model = create_model("mgno", width=4, layers=1, levels=3)
    assert model.trained_shape.tolist() == [0, 0] and model.extra_grids((33, 33)) == 0
    model(torch.randn(1, 1, 17, 17))  # a training step's forward records the grid
    assert model.trained_shape.tolist() == [17, 17]
    model.eval()
    model(torch.randn(1, 1, 33, 33))  # evaluation does not
    assert model.trained_shape.tolist() == [17, 17]
    assert [model.extra_grids((n, n)) for n in (17, 33, 65, 25, 49)] == [0, 1, 2, 0, 0]
    assert model.extra_grids((33, 65)) == 0 and model.extra_grids((33,)) == 0
    # saved with the weights; weights saved before the record load without one
    state = model.state_dict()
    again = create_model("mgno", width=4, layers=1, levels=3)
    again.load_state_dict(state)
    assert again.trained_shape.tolist() == [17, 17]
    del state["trained_shape"]
    old = create_model("mgno", width=4, layers=1, levels=3)
    old.load_state_dict(state)
    assert old.trained_shape.tolist() == [0, 0] and old.extra_grids((33, 33)) == 0


def test_a_traced_mgno_reads_its_grid_from_python_ints(monkeypatch):
    # torch.export / ONNX cannot read a buffer's values (data-dependent): under tracing the
    # grid count comes from the Python record, which training and load_state_dict keep
    torch.manual_seed(0)
    model = create_model("mgno", width=4, layers=1, levels=3)
    model(torch.randn(1, 1, 17, 17))
    again = create_model("mgno", width=4, layers=1, levels=3)
    again.load_state_dict(model.state_dict())
    assert model._trained == again._trained == (17, 17)
    again.trained_shape.zero_()  # eager reads the buffer (an EMA copy keeps only that)
    assert again.extra_grids((33, 33)) == 0
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert again.extra_grids((33, 33)) == 1 and again.extra_grids((65, 65)) == 2


def test_refined_cycle_adds_finest_grids_with_shared_stencils_and_h2_scaled_b():
    from mgnet.models.operators import refined_cycle

    torch.manual_seed(0)
    cycle = linear_v_cycle(width=3, levels=3, nu=(1, 1)).double()
    fine = refined_cycle(cycle, 2)
    assert isinstance(fine, MgCycle) and fine.depth == 5 and fine.shape == "V"
    assert list(fine.levels)[2:] == list(cycle.levels)  # the trained grids, as they are
    assert {id(p) for p in fine.parameters()} == {id(p) for p in cycle.parameters()}
    first = cycle.levels[0]
    r = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        for i, level in ((1, fine.levels[1]), (2, fine.levels[0])):  # i: grids finer
            assert level.A is first.A and level.nu == first.nu
            torch.testing.assert_close(level.pre[0].B(r), 4.0**-i * first.pre[0].B(r))
            torch.testing.assert_close(level.post[0].B(r), 4.0**-i * first.post[0].B(r))
        f = torch.randn(1, 3, 65, 65, dtype=torch.float64)
        torch.testing.assert_close(fine(f), v_cycle_by_hand(fine, f), rtol=1e-12, atol=1e-12)
