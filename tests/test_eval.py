"""`mgnet eval`: top-1/top-5 accuracy and the confusion matrix of a trained checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from mgnet.cli import main
from mgnet.data import get_dataset
from mgnet.train import TrainConfig, build_model, load_checkpoint, train

TINY = "mgnet[1,1]-8"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    cfg = TrainConfig(model=TINY, epochs=2, batch_size=128, threads=1, progress=False,
                      output_dir=str(out))  # fmt: skip
    return out, train(cfg)


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mgnet eval: error: "), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])


def test_eval_prints_top1_top5_and_writes_json_and_png(run, capsys):
    out, results = run
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--data", "digits"]) == 0
    printed = capsys.readouterr().out
    assert f"top-1 {results['test_accuracy']:.2f}%" in printed and "top-5 " in printed
    report = json.loads((out / "eval-digits-test.json").read_text())
    assert report["count"] == 360 and report["topk"] == 5
    assert report["top1"] == pytest.approx(results["test_accuracy"])
    confusion = torch.tensor(report["confusion"])
    assert confusion.shape == (10, 10) and int(confusion.sum()) == 360
    assert 100 * int(confusion.diagonal().sum()) / 360 == pytest.approx(report["top1"])
    assert (confusion.sum(1) == torch.bincount(get_dataset("digits").test.labels)).all()
    # top-5 recomputed here, from the weights and the test images
    cfg = TrainConfig.from_dict(load_checkpoint(out / "best.pt")["config"])
    test = get_dataset("digits", augment=False).test
    model = build_model(cfg, get_dataset("digits").info)
    model.load_state_dict(load_checkpoint(out / "best.pt")["model"])
    with torch.no_grad():
        top5 = model.eval()(test.images).topk(5, 1).indices
    expected = 100 * (top5 == test.labels[:, None]).any(1).float().mean().item()
    assert report["top5"] == pytest.approx(expected) and report["top5"] >= report["top1"]
    png = (out / "eval-digits-test.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_eval_on_the_validation_split_and_a_chosen_output(run, capsys, tmp_path):
    out, results = run
    target = tmp_path / "sub" / "val.json"
    argv = ["eval", "--checkpoint", str(out / "best.pt"), "--split", "val", "-o", str(target),
            "--json"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["count"] == 180
    assert printed["top1"] == pytest.approx(results["best_val_accuracy"])
    assert json.loads(target.read_text()) == printed and target.with_suffix(".png").exists()


def test_checkpoint_pt_of_an_ema_run_is_evaluated_with_the_average(tmp_path, capsys):
    cfg = TrainConfig(model=TINY, epochs=2, batch_size=128, threads=1, progress=False,
                      model_ema=True, model_ema_decay=0.9,
                      output_dir=str(tmp_path / "r"))  # fmt: skip
    results = train(cfg)
    capsys.readouterr()
    argv = ["eval", "--checkpoint", str(tmp_path / "r" / "checkpoint.pt"), "--json", "--no-plot"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top1"] == pytest.approx(results["last_test_accuracy"])
    assert report["png_path"] is None


def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes((7 * i + 3) % 256 for i in range(3000)))
    _one_line_error(capsys, ["eval", "--checkpoint", str(junk)], "not a checkpoint")
    _one_line_error(capsys, ["eval", "--checkpoint", str(tmp_path / "no.pt")], "no such file")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    _one_line_error(capsys, ["eval", "--checkpoint", str(foreign)], "not a checkpoint")


def test_data_that_does_not_fit_the_model_is_a_one_line_error(run, tmp_path, capsys):
    from test_data_vision import write_cifar, write_image_folder  # tests/ is on sys.path

    out, _ = run
    write_cifar(tmp_path / "cifar", "cifar10", n_train=4, n_test=4)
    argv = ["eval", "--checkpoint", str(out / "best.pt"), "--data", "cifar10", "--data-dir",
            str(tmp_path / "cifar")]  # fmt: skip
    _one_line_error(capsys, argv, "'cifar10' has 3 channel(s)", "trained on 'digits'", "takes 1")
    _one_line_error(capsys, ["eval", "--checkpoint", str(out / "best.pt"), "--data", "digitz"],
                    "unknown dataset 'digitz'")  # fmt: skip
    # a three-class image folder model against a two-class folder
    write_image_folder(tmp_path / "abc", classes=("a", "b", "c"), per_class=4)
    write_image_folder(tmp_path / "ab", classes=("a", "b"), per_class=4)
    cfg = TrainConfig(model=TINY, epochs=1, batch_size=4, threads=1, progress=False,
                      data="imagefolder", data_dir=str(tmp_path / "abc"),
                      output_dir=str(tmp_path / "folder-run"))  # fmt: skip
    train(cfg)
    capsys.readouterr()
    best = str(tmp_path / "folder-run" / "best.pt")
    assert main(["eval", "--checkpoint", best, "--json", "--no-plot"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["a", "b", "c"] and report["count"] == 6
    _one_line_error(capsys, ["eval", "--checkpoint", best, "--data-dir", str(tmp_path / "ab")],
                    "has 2 classes", "predicts 3")  # fmt: skip
