"""Export: onnxruntime and TorchScript reproduce PyTorch's logits of an MgNet."""

from __future__ import annotations

import warnings

import pytest
import torch

import mgnet.export as export_mod
from mgnet.export import export_model, run_exported
from mgnet.models import create_model


def _trained_like(name: str, in_channels: int, size: int) -> torch.nn.Module:
    """An MgNet whose BatchNorm running statistics are not the defaults (as after training),
    so that exporting in evaluation mode matters."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=in_channels)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(2.0 * torch.randn(8, in_channels, size, size) + 0.5)
    return model


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "name,channels,size", [("mgnet[2,2]-16-Bli", 3, 16), ("mgnet_digits", 1, 8)]
)
def test_onnxruntime_reproduces_pytorch_logits(tmp_path, name, channels, size):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _trained_like(name, channels, size)
    before = _state(model)
    result = export_model(model, tmp_path / "m.onnx", "onnx", input_shape=(1, channels, size, size))
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    # the model handed in is untouched: still training mode, same weights and statistics
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    # an independent run of onnxruntime on a new batch size, against PyTorch in eval mode
    model.eval()
    x = torch.randn(5, channels, size, size)
    with torch.no_grad():
        expected = model(x)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert got.shape == (5, 10)
    assert (got - expected).abs().max() <= 1e-4
    assert expected.abs().max() > 1e-2  # the logits are not trivially zero


def test_onnx_file_passes_the_checker(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = _trained_like("mgnet[1,1]-8", 3, 8)
    path = export_model(model, tmp_path / "m.onnx", input_shape=(2, 3, 8, 8), check=False).path
    onnx.checker.check_model(onnx.load(str(path)))


def test_torchscript_round_trip(tmp_path):
    model = _trained_like("mgnet[2,2]-16-Bli", 3, 16)
    result = export_model(model, tmp_path / "sub" / "m.pt", "torchscript", (1, 3, 16, 16))
    assert result.path.is_file() and result.max_abs_diff is not None
    assert result.max_abs_diff <= 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(result.path))
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_a_wrong_export_is_caught(tmp_path, monkeypatch):
    model = _trained_like("mgnet[1,1]-8", 3, 8)
    monkeypatch.setattr(export_mod, "run_exported", lambda p, x, f: run_exported(p, x, f) + 1e-3)
    with pytest.raises(RuntimeError, match=r"differs from PyTorch by 0.001 > atol=0.0001"):
        export_model(model, tmp_path / "m.pt", "torchscript", (1, 3, 8, 8))


def test_bad_arguments(tmp_path):
    model = create_model("mgnet[2,2,2]-8")
    with pytest.raises(ValueError, match="format: 'tflite' is not accepted; expected onnx"):
        export_model(model, tmp_path / "m", "tflite", (1, 3, 8, 8))
    with pytest.raises(ValueError, match="input_shape: give the shape of one input batch"):
        export_model(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"input_shape: 1 channels given, the model takes 3"):
        export_model(model, tmp_path / "m.onnx", input_shape=(1, 1, 8, 8))
    with pytest.raises(ValueError, match="input_shape: the model cannot take a"):
        export_model(model, tmp_path / "m.onnx", input_shape=(1, 3, 2, 2))  # 3 levels need 4
    with pytest.raises(ValueError, match="input_shape: .* positive integers"):
        export_model(model, tmp_path / "m.onnx", input_shape=(3, 8))
    with pytest.raises(ValueError, match="model: need a torch.nn.Module"):
        export_model("mgnet_cifar", tmp_path / "m.onnx", input_shape=(1, 3, 8, 8))


def test_mgnet_export_command_from_a_training_checkpoint(tmp_path, capsys):
    """`mgnet export --checkpoint RUN/best.pt --format onnx|torchscript` after `mgnet train`."""
    ort = pytest.importorskip("onnxruntime")
    from mgnet.cli import main
    from mgnet.export import model_from_checkpoint

    run = tmp_path / "run"
    argv = ["train", "--data", "digits", "--epochs", "1", "--model", "mgnet[1,1]-8", "-b", "64",
            "-o", str(run), "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    checkpoint = str(run / "best.pt")
    assert main(["export", "--checkpoint", checkpoint, "--format", "onnx"]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    out = tmp_path / "ts" / "m.pt"
    assert (
        main(["export", "--checkpoint", checkpoint, "--format", "torchscript", "-o", str(out)]) == 0
    )

    model, shape, cfg = model_from_checkpoint(checkpoint)
    assert shape == (1, 1, 8, 8) and cfg["model"] == "mgnet[1,1]-8"
    x = torch.randn(4, *shape[1:])
    with torch.no_grad():
        expected = model(x)
    session = ort.InferenceSession(str(run / "best.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert (got - expected).abs().max() <= 1e-4
    assert torch.allclose(run_exported(out, x), expected, atol=1e-5)


def test_mgnet_export_errors_are_one_line(tmp_path, capsys):
    from mgnet.cli import main

    assert main(["export", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint: no such file" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["export", "--checkpoint", str(tmp_path / "junk.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a checkpoint of this package" in err
