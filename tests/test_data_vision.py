"""Torchvision-format datasets: tiny files written in each exact on-disk format, read back.

Every writer below produces the layout torchvision reads (and downloads): CIFAR python
pickle batches with their meta file, MNIST IDX files under ``<Class>/raw/`` (plain or
gzip), SVHN ``.mat`` files and ImageFolder JPEGs. Where torchvision's own class can read
the tiny files (its MD5 checks switched off), the values must agree with ours.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mgnet.data.vision import (
    VISION_DATASETS,
    UInt8ImageDataset,
    augment_uint8,
    load_arrays,
    load_vision,
    split_indices,
    vision_spec,
)

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- writers
def write_cifar(root: Path, name: str = "cifar10", n_train: int = 5, n_test: int = 4) -> dict:
    """CIFAR python version: pickled dicts with 'data' (N, 3072) uint8 and the labels."""
    hundred = name == "cifar100"
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    num_classes = 100 if hundred else 10
    label_key = "fine_labels" if hundred else "labels"
    files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    arrays = {"train": [], "test": []}
    for fname, split, n in [(f, "train", n_train) for f in files] + [
        ("test" if hundred else "test_batch", "test", n_test)
    ]:
        x = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = RNG.integers(0, num_classes, n).tolist()
        entry = {"batch_label": fname, "data": x, label_key: y, "filenames": ["a.png"] * n}
        if hundred:
            entry["coarse_labels"] = [0] * n
        with open(folder / fname, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
        arrays[split].append((x, y))
    meta = (
        {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["s"] * 20}
        if hundred
        else {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": n_train}
    )
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return {
        s: (np.concatenate([a[0] for a in v]), np.concatenate([a[1] for a in v]))
        for s, v in arrays.items()
    }


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 sizes, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(
    root: Path, cls: str = "MNIST", n_train: int = 24, n_test: int = 6, gz: bool = False
) -> dict:
    raw = root / cls / "raw"
    raw.mkdir(parents=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = RNG.integers(0, 10, n).astype(np.uint8)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", x), (f"{prefix}-labels-idx1-ubyte", y)):
            if gz:
                with gzip.open(raw / f"{stem}.gz", "wb") as fh:
                    fh.write(_idx_bytes(arr))
            else:
                (raw / stem).write_bytes(_idx_bytes(arr))
        out[split] = (x, y)
    return out


def write_svhn(root: Path, n_train: int = 20, n_test: int = 5) -> dict:
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = RNG.integers(1, 11, (n, 1)).astype(np.uint8)  # 10 stands for the digit 0
        scipy.io.savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
        out[split] = (x, y)
    return out


def write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 4, size=40) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(per_class if split == "train" else 2):
                pixels = RNG.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}_{i}.JPEG", quality=90)


def _normalized(images_uint8: torch.Tensor, name: str) -> torch.Tensor:
    spec = vision_spec(name)
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    return (images_uint8.float() / 255 - mean) / std


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_read_exactly(tmp_path, name):
    written = write_cifar(tmp_path, name)
    arrays = load_arrays(name, tmp_path)
    for split in ("train", "test"):
        x, y = written[split]
        images, labels = arrays[split]
        assert images.dtype == torch.uint8 and images.shape == (len(x), 3, 32, 32)
        # a CIFAR row is the red plane, then green, then blue, each row-major
        assert torch.equal(images, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
        assert labels.tolist() == list(y)
    assert len(arrays["train"][0]) == (5 if name == "cifar100" else 25)
    assert arrays["classes"][:2] == ["c0", "c1"]
    assert len(arrays["classes"]) == VISION_DATASETS[name].num_classes


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_agrees_with_torchvision(tmp_path, name, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    write_cifar(tmp_path, name)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # no MD5 of ours
    cls = tv_cifar.CIFAR10 if name == "cifar10" else tv_cifar.CIFAR100
    for train, split in ((True, "train"), (False, "test")):
        ref = cls(str(tmp_path), train=train)
        images, labels = load_arrays(name, tmp_path)[split]
        assert torch.equal(images.permute(0, 2, 3, 1), torch.from_numpy(ref.data))
        assert labels.tolist() == list(ref.targets)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_read_exactly(tmp_path, name, cls, gz):
    import torchvision.datasets as tvd

    written = write_mnist(tmp_path, cls, gz=gz)
    arrays = load_arrays(name, tmp_path)
    for split, train in (("train", True), ("test", False)):
        x, y = written[split]
        images, labels = arrays[split]
        assert images.shape == (len(x), 1, 28, 28) and images.dtype == torch.uint8
        assert torch.equal(images[:, 0], torch.from_numpy(x))
        assert labels.tolist() == y.tolist()
        ref = getattr(tvd, cls)(str(tmp_path), train=train)  # torchvision reads it too
        assert torch.equal(ref.data, images[:, 0]) and torch.equal(ref.targets, labels)


def test_svhn_mat_read_exactly_and_ten_means_zero(tmp_path, monkeypatch):
    import torchvision.datasets.svhn as tv_svhn

    written = write_svhn(tmp_path)
    arrays = load_arrays("svhn", tmp_path)
    monkeypatch.setattr(tv_svhn, "check_integrity", lambda *a, **k: True)
    for split in ("train", "test"):
        x, y = written[split]
        images, labels = arrays[split]
        assert images.shape == (x.shape[3], 3, 32, 32)
        n, c, h, w = 3, 2, 5, 7
        assert images[n, c, h, w] == x[h, w, c, n]
        expected = y[:, 0].astype(np.int64) % 10
        assert labels.tolist() == expected.tolist()
        ref = tv_svhn.SVHN(str(tmp_path), split=split)
        assert torch.equal(images, torch.from_numpy(ref.data))
        assert labels.tolist() == ref.labels.tolist()


def test_image_folder_jpegs(tmp_path):
    write_image_folder(tmp_path)
    train, val, test = load_vision("imagefolder", tmp_path)
    assert (len(train), len(val), len(test)) == (7, 1, 4)  # 1% of 8, at least one
    assert train.classes == ["cat", "dog"] and test.num_classes == 2
    x, y = train[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y in (0, 1)
    xv, _ = val[0]
    assert xv.shape == (3, 224, 224)
    assert torch.equal(val[0][0], val[0][0])  # evaluation transform is deterministic
    assert sorted(test[i][1] for i in range(len(test))) == [0, 0, 1, 1]


# ------------------------------------------------------------- splits and normalization
def test_split_is_fixed_disjoint_and_complete():
    a, b = split_indices(1000, 0.1), split_indices(1000, 0.1)
    assert torch.equal(a["val"], b["val"]) and len(a["val"]) == 100
    union = torch.cat([a["train"], a["val"]]).sort().values
    assert torch.equal(union, torch.arange(1000))
    assert not torch.equal(a["val"], torch.arange(100))  # shuffled, not the first samples
    assert not torch.equal(split_indices(1000, 0.1, seed=1)["val"], a["val"])


def test_table_split_sizes_of_the_official_files():
    assert vision_spec("cifar10").split == {"train": 45000, "val": 5000, "test": 10000}
    assert vision_spec("mnist").split == {"train": 55000, "val": 5000, "test": 10000}
    assert vision_spec("svhn").split == {"train": 65931, "val": 7326, "test": 26032}


def test_splits_normalization_and_augmentation(tmp_path):
    written = write_cifar(tmp_path, "cifar10", n_train=8, n_test=4)
    train, val, test = load_vision("cifar10", tmp_path)
    assert (len(train), len(val), len(test)) == (36, 4, 4)
    assert isinstance(train, UInt8ImageDataset) and train.augment and not val.augment
    x_train = torch.from_numpy(written["train"][0].reshape(-1, 3, 32, 32))
    idx = split_indices(40, 0.1)
    assert torch.equal(val.images, x_train[idx["val"]])
    # val and test: exactly (x / 255 - mean) / std, no augmentation
    img, label = test[2]
    assert torch.allclose(img, _normalized(test.images[2], "cifar10"), atol=1e-6)
    assert label == int(written["test"][1][2])
    assert torch.allclose(val[1][0], _normalized(val.images[1], "cifar10"), atol=1e-6)
    # train: a crop/flip of the image, so most draws differ from the plain image
    torch.manual_seed(0)
    plain = _normalized(train.images[0], "cifar10")
    assert sum(not torch.allclose(train[0][0], plain) for _ in range(20)) >= 15
    plain_train = load_vision("cifar10", tmp_path, augment=False)[0]
    assert torch.allclose(plain_train[0][0], plain, atol=1e-6)


def test_svhn_and_mnist_augmentations_from_the_table(tmp_path):
    write_svhn(tmp_path / "svhn")
    write_mnist(tmp_path / "mnist")
    svhn = load_vision("svhn", tmp_path / "svhn")[0]
    mnist = load_vision("mnist", tmp_path / "mnist")[0]
    assert (svhn.crop_padding, svhn.flip) == (4, False)
    assert (mnist.crop_padding, mnist.flip) == (0, False)
    torch.manual_seed(0)
    assert torch.allclose(mnist[0][0], _normalized(mnist.images[0], "mnist"), atol=1e-6)
    assert vision_spec("cifar10").augmentation == "random crop (pad 4) + horizontal flip"
    assert vision_spec("mnist").augmentation == "none"


def test_augment_uint8_is_a_shift_of_the_padded_image():
    x = torch.randint(1, 256, (16, 3, 8, 8), dtype=torch.uint8)  # no zeros inside
    g = torch.Generator().manual_seed(0)
    out = augment_uint8(x, 2, False, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(16):
        hits = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert len(hits) == 1


# ------------------------------------------------------------------------------- errors
def test_missing_root_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_vision("cifar10", tmp_path / "nowhere")
    msg = _one_line(e)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "batches.meta" in msg
    assert "--download" in msg


def test_no_data_dir_is_a_value_error():
    with pytest.raises(ValueError, match="data_dir: cifar100 reads files; give --data-dir"):
        load_vision("cifar100", None)


def test_unknown_name():
    with pytest.raises(ValueError, match="accepted: mnist, fashion_mnist, cifar10"):
        vision_spec("imagenet21k")


def test_missing_batch_file_is_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_arrays("cifar10", tmp_path)
    assert "data_batch_3 is missing" in _one_line(e)


def test_missing_meta_is_named(tmp_path):
    write_cifar(tmp_path, "cifar100")
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(FileNotFoundError, match="meta is missing"):
        load_arrays("cifar100", tmp_path)


def test_malformed_cifar_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError) as e:
        load_arrays("cifar10", tmp_path)
    assert "test_batch is not a Python pickle" in _one_line(e)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(ValueError, match=r"not uint8 \(N, 3072\)"):
        load_arrays("cifar10", tmp_path)


def test_malformed_idx_and_missing_mnist(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x09\x01xx")
    with pytest.raises(ValueError) as e:
        load_arrays("mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte is not an IDX label file" in _one_line(e)
    with pytest.raises(FileNotFoundError) as e:
        load_arrays("fashion_mnist", tmp_path)
    assert "FashionMNIST/raw is not a folder" in _one_line(e)


def test_label_count_mismatch_in_idx(tmp_path):
    write_mnist(tmp_path, n_train=10)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(ValueError, match="7 labels for 10 images"):
        load_arrays("mnist", tmp_path)


def test_malformed_svhn(tmp_path):
    import scipy.io

    write_svhn(tmp_path)
    scipy.io.savemat(str(tmp_path / "test_32x32.mat"), {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(ValueError) as e:
        load_arrays("svhn", tmp_path)
    assert "test_32x32.mat lacks the 'X' or 'y' variable" in _one_line(e)
    (tmp_path / "train_32x32.mat").unlink()
    with pytest.raises(FileNotFoundError, match="train_32x32.mat is missing"):
        load_arrays("svhn", tmp_path)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_vision("imagefolder", tmp_path)
    assert "train is not a folder" in _one_line(e) and "<class>/<image>" in _one_line(e)
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        load_vision("imagefolder", tmp_path)
    assert "class folder" in _one_line(e)
    write_image_folder(tmp_path / "b", classes=("cat", "dog"))
    (tmp_path / "b" / "val" / "dog").rename(tmp_path / "b" / "val" / "fox")
    with pytest.raises(ValueError, match="different class folders"):
        load_vision("imagefolder", tmp_path / "b")
    with pytest.raises(ValueError, match="cannot be downloaded"):
        load_vision("imagefolder", tmp_path / "b", download=True)


# ------------------------------------------------------------ one training step on each
_WRITERS = {
    "cifar10": lambda root: write_cifar(root, "cifar10", n_train=4, n_test=6),
    "cifar100": lambda root: write_cifar(root, "cifar100", n_train=20, n_test=6),
    "mnist": lambda root: write_mnist(root, "MNIST", n_train=20, n_test=6, gz=True),
    "fashion_mnist": lambda root: write_mnist(root, "FashionMNIST", n_train=20, n_test=6),
    "svhn": lambda root: write_svhn(root, n_train=20, n_test=6),
    "imagefolder": lambda root: write_image_folder(root, per_class=8),
}


@pytest.mark.parametrize("name", list(_WRITERS))
def test_mgnet_train_runs_one_epoch_on_each_format(tmp_path, name):
    """`mgnet train --data NAME --data-dir DIR` on the tiny files: it trains and tests."""
    import json
    import math

    from mgnet.cli import main

    _WRITERS[name](tmp_path / "data")
    run = tmp_path / "run"
    argv = ["train", "--data", name, "--data-dir", str(tmp_path / "data"), "--epochs", "1",
            "--model", "mgnet[1,1]-8", "-b", "8", "-o", str(run), "--threads", "1",
            "--no-progress", "--loader", "torch"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((run / "results.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert results["test_count"] == (4 if name == "imagefolder" else 6)
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"]) and rows[0]["train_loss"] > 0


def test_mgnet_train_with_the_device_loader(tmp_path, monkeypatch):
    """`--loader device` serves CIFAR from one uint8 tensor through the same training loop."""
    import json

    from mgnet.cli import main
    from mgnet.data.device_loader import DeviceLoader

    built = []
    original = DeviceLoader.from_dataset.__func__

    def spy(cls, dataset, batch_size, **kw):
        loader = original(cls, dataset, batch_size, **kw)
        built.append(loader)
        return loader

    monkeypatch.setattr(DeviceLoader, "from_dataset", classmethod(spy))
    write_cifar(tmp_path / "data", "cifar10", n_train=4, n_test=6)
    argv = ["train", "--data", "cifar10", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
            "--model", "mgnet[1,1]-8", "-b", "8", "-o", str(tmp_path / "run"), "--threads", "1",
            "--no-progress", "--loader", "device"]  # fmt: skip
    assert main(argv) == 0
    assert len(built) == 3  # train, val, test
    train = built[0]
    assert (train.crop_padding, train.flip, train.shuffle) == (4, True, True)
    assert built[1].crop_padding == 0 and not built[1].shuffle
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test_count"] == 6


def test_mgnet_train_missing_folder_is_one_line(tmp_path, capsys):
    from mgnet.cli import main

    argv = ["train", "--data", "svhn", "--data-dir", str(tmp_path / "none"), "--epochs", "1",
            "-o", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train_32x32.mat is missing" in err


def test_download_goes_through_torchvision_and_failures_are_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    class Offline(tvd.CIFAR10):  # torchvision's class, with no network behind it
        def __init__(self, root, train=True, download=False, **kw):
            calls.append((root, train, download))
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(RuntimeError) as e:
        load_vision("cifar10", tmp_path, download=True)
    assert _one_line(e).startswith("download: fetching CIFAR-10 failed (<urlopen error")
    assert calls == [(str(tmp_path), True, True)]
    with pytest.raises(FileNotFoundError):
        load_vision("cifar10", tmp_path)
    assert len(calls) == 1  # without download=True torchvision is not asked to fetch
