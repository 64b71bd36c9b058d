"""Learned smoothers: the checks that the mutation score of
``benchmarks/mutation_score.py`` showed missing (the defaults that ``mgnet
learn-smoother --help`` promises, the progress lines, per-level kernel sets, the message
for a long path)."""

import argparse
import inspect
import re

import pytest
import torch
import torch.nn.functional as F

from mgnet.cli import build_parser
from mgnet.multigrid import ConvolutionSmoother, LearnedSmoother, learn_smoother
from mgnet.stencils import diffusion, laplacian


def _learn_smoother_actions() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["learn-smoother"]._actions}


def test_the_cli_help_states_the_library_defaults():
    # the CLI passes None for these flags and lets learn_smoother apply its defaults; the
    # help text promises the values, so both must agree
    actions = _learn_smoother_actions()
    params = inspect.signature(learn_smoother).parameters
    checked = 0
    for dest in ("nu", "steps", "cycles", "batch", "lr"):
        assert actions[dest].default is None
        stated = re.search(r"\(default ([0-9.]+)\)", actions[dest].help).group(1)
        assert float(stated) == params[dest].default, dest
        checked += 1
    assert checked == 5
    assert re.search(r"\b3 \(default\)", actions["kernel"].help)
    assert params["kernel"].default == 3


def test_progress_is_logged_every_tenth_of_the_steps_and_at_the_last():
    lines: list[str] = []
    learn_smoother("poisson", n=7, kernel=3, nu=1, steps=20, cycles=1, batch=2, log=lines.append)
    steps = [int(re.match(r"step\s+(\d+)/20", line).group(1)) for line in lines]
    assert steps == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 19]


def test_per_level_kernels_default_to_one_set():
    learned = LearnedSmoother(2, 3, nu=2, sharing="level")
    assert learned.sets == 1 and len(learned.kernels) == 2
    assert tuple(learned.weight.shape) == (1, 2, 3, 3)


def test_a_long_missing_path_is_named_by_its_last_200_characters(tmp_path):
    # the message stays one bounded line: the path is cut to its last 200 characters
    name = "X" + "a" * 250 + ".pt"
    path = tmp_path / name
    with pytest.raises(FileNotFoundError) as err:
        LearnedSmoother.load(path)
    message = str(err.value)
    assert "\n" not in message
    assert repr(str(path)[-200:]) in message
    assert "X" not in message and ("a" * 197 + ".pt") in message


@pytest.mark.parametrize("arg, value, low", [("steps", -1, 0), ("cycles", 0, 1), ("batch", 0, 1)])
def test_training_sizes_below_their_minimum_are_refused(arg, value, low):
    with pytest.raises(ValueError, match=rf"{arg}: must be an integer >= {low}, got {value}"):
        learn_smoother("poisson", n=7, **{arg: value})


@pytest.mark.parametrize("variable", [False, True])
def test_blocked_fused_step_on_a_large_grid_is_the_correlation(variable):
    # on a 300 x 300 grid the fused step runs in blocks of rows (cache blocking); it must
    # be u + K * (D^-1 (f - A u)), the zero-padded cross-correlation of torch's conv2d
    n = 300
    A = diffusion((n, n), lambda x, y: 1 + x + 2 * y) if variable else laplacian((n, n))
    g = torch.Generator().manual_seed(0)
    K = torch.randn(5, 3, generator=g, dtype=torch.float64)  # not symmetric
    B = ConvolutionSmoother(A, K)
    assert len(B.blocks) > len(B.pieces)  # the blocked path
    u = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
    f = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
    with torch.no_grad():
        r = f - A(u)
        d = A.diagonal()
        scaled = r / (d if isinstance(d, torch.Tensor) else float(d))
        expect = u + F.conv2d(scaled, K[None, None], padding=(2, 1))
        got = B.update_(A, u.clone(), f)
    torch.testing.assert_close(got, expect, rtol=1e-12, atol=1e-12)
