"""benchmarks/gpu_check.py, the prepared check for a lent GPU, runs here at toy sizes on the
CPU, so that it cannot rot before a device is lent: a smoke run of its cheap steps by
default, the whole ``--device cpu --quick`` run (under a minute here) marked slow."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, *flags):
    assert _gpu_check().main(["--device", "cpu", "--quick", "--out", str(tmp_path), *flags]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    md = (tmp_path / "gpu_check.md").read_text()
    return report, md


def _check_solver(report):
    cases = report["steps"]["solver"]["result"]["cases"]
    assert [c["grid"] for c in cases] == ["255x255", "31x31x31"]
    for c in cases:
        assert c["converged"] and c["iterations"] <= 14, c
        assert c["factor"] < 0.3 and c["cycle_over_bound"] > 0 and c["bound_ms"] > 0


def test_smoke_env_solver_training_amg(tmp_path):
    report, md = _run(tmp_path, "--steps", "env,solver,training,amg", "--models", "mgnet_cifar")
    assert {k: v["status"] for k, v in report["steps"].items()} == {
        "env": "ok",
        "solver": "ok",
        "training": "ok",
        "amg": "ok",
    }
    _check_solver(report)
    rows = report["steps"]["training"]["result"]["rows"]
    assert [(r["model"], r["compile"]) for r in rows] == [
        ("mgnet_cifar", "no"),
        ("mgnet_cifar", "eager"),
    ]
    assert all(r["images_per_s"] > 0 for r in rows)
    amg = report["steps"]["amg"]["result"]
    assert amg.get("skipped") or amg["converged"]
    assert "| grid | levels |" in md and "## training" in md


def test_bad_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        _gpu_check().main(["--out", "x", "--steps", "solver,warp"])
    assert e.value.code == 2
    assert "--steps: warp not among" in capsys.readouterr().err


@pytest.mark.slow
def test_the_whole_quick_run_on_the_cpu(tmp_path):
    report, md = _run(tmp_path)
    assert list(report["steps"]) == ["env", "tests", "solver", "ddp", "amg", "training"]
    assert all(s["status"] == "ok" for s in report["steps"].values()), report["steps"]
    _check_solver(report)
    tests = report["steps"]["tests"]["result"]
    assert tests["counts"]["failed"] == tests["counts"]["errors"] == 0
    ddp = report["steps"]["ddp"]["result"]
    assert ddp["backend"] == "gloo" and ddp["all_reduce_ok"]
    assert len(report["steps"]["training"]["result"]["rows"]) == 6
    assert report["seconds"] < 180
