"""The dataset registry, the embedded digits split and the (seed, epoch) sampler."""

from __future__ import annotations

import pytest
import torch

from mgnet.data import EpochSampler, RandomShift, dataset_info, get_dataset, list_datasets
from mgnet.data.datasets import DIGITS_MEAN, DIGITS_SPLIT, DIGITS_STD, digits_split_indices


def test_registry_lists_digits_and_torchvision_formats():
    names = list_datasets()
    assert "digits" in names
    assert {"mnist", "cifar10", "cifar100", "svhn", "imagefolder"} <= set(names)
    info = dataset_info("digits")
    assert (info.num_classes, info.in_channels, info.input_size) == (10, 1, 8)
    assert info.split == {"train": 1257, "val": 180, "test": 360}


def test_unknown_dataset_is_one_line_listing_the_accepted_names():
    with pytest.raises(ValueError) as e:
        get_dataset("digitz")
    msg = str(e.value)
    assert "\n" not in msg and "'digitz'" in msg and "digits" in msg and "cifar10" in msg


def test_digits_split_is_fixed_stratified_disjoint_and_complete():
    idx = digits_split_indices()
    sizes = {k: len(v) for k, v in idx.items()}
    assert sizes == DIGITS_SPLIT
    everything = torch.cat(list(idx.values()))
    assert torch.equal(everything.sort().values, torch.arange(1797))
    # stratified: every split holds each class in proportion (within one sample)
    labels = torch.as_tensor(_labels())
    overall = torch.bincount(labels, minlength=10).double() / len(labels)
    for name, ind in idx.items():
        counts = torch.bincount(labels[ind], minlength=10).double()
        assert (counts - overall * len(ind)).abs().max() <= 1.0, name
    # fixed: a second call gives the same split
    again = digits_split_indices()
    assert all(torch.equal(idx[k], again[k]) for k in idx)


def _labels():
    from sklearn.datasets import load_digits

    return load_digits().target


def test_shipped_digits_are_scikit_learns_and_so_is_the_split():
    """digits.npz holds scikit-learn's load_digits() unchanged, and the split is the one
    scikit-learn's stratified train_test_split draws (seed 0: test first, then val)."""
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from mgnet.data.datasets import DIGITS_FILE, _digits_arrays

    assert sklearn and DIGITS_FILE.is_file() and DIGITS_FILE.with_name("DIGITS_LICENSE.txt")
    bunch = load_digits()
    images, labels = _digits_arrays()
    assert images.shape == (1797, 8, 8) and str(images.dtype) == "uint8"
    assert (images == bunch.images).all() and (labels == bunch.target).all()
    index = torch.arange(1797).numpy()
    rest, test = train_test_split(index, test_size=360, stratify=bunch.target, random_state=0)
    train, val = train_test_split(rest, test_size=180, stratify=bunch.target[rest], random_state=0)
    idx = digits_split_indices()
    for name, expected in (("train", train), ("val", val), ("test", test)):
        assert idx[name].tolist() == sorted(expected.tolist()), name
    text = DIGITS_FILE.with_name("DIGITS_LICENSE.txt").read_text()
    assert "Alpaydin" in text and "CC BY 4.0" in text and "BSD 3-Clause" in text


def test_the_digits_do_not_import_scikit_learn():
    """Start-up: the shipped file loads in milliseconds; scikit-learn took seconds."""
    import subprocess
    import sys

    code = (
        "import sys; from mgnet.data import get_dataset; get_dataset('digits'); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_digits_statistics_are_those_of_the_train_split():
    """The constants in the dataset definition match the split they claim to describe."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images, dtype=torch.float64) / 16.0
    train = x[digits_split_indices()["train"]]
    assert train.mean().item() == pytest.approx(DIGITS_MEAN[0], abs=1e-4)
    assert train.std().item() == pytest.approx(DIGITS_STD[0], abs=1e-4)
    splits = get_dataset("digits", augment=False)
    xs = torch.stack([splits.train[i][0] for i in range(len(splits.train))])
    assert xs.shape == (1257, 1, 8, 8) and xs.dtype == torch.float32
    assert xs.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert xs.std().item() == pytest.approx(1.0, abs=1e-3)


def test_only_the_train_split_is_augmented():
    splits = get_dataset("digits")
    assert isinstance(splits.train.transform, RandomShift)
    assert splits.val.transform is None and splits.test.transform is None
    plain = get_dataset("digits", augment=False)
    assert plain.train.transform is None
    assert torch.equal(splits.val[3][0], plain.val[3][0])


def test_random_shift_moves_the_image_by_at_most_one_pixel():
    x = torch.zeros(1, 8, 8)
    x[0, 3:5, 3:5] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    shift = RandomShift(1, fill=0.0)
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        y = shift(x)
        assert y.shape == x.shape and y.sum() == x.sum()
        r, c = (y[0] == 1.0).nonzero()[0].tolist()
        assert abs(r - 3) <= 1 and abs(c - 3) <= 1
        assert torch.equal(y[0, r : r + 2, c : c + 2], x[0, 3:5, 3:5])
        seen.add((r, c))
    assert len(seen) == 9  # every shift in {-1, 0, 1}^2 occurs
    assert torch.equal(RandomShift(0)(x), x)
    with pytest.raises(ValueError, match="max_shift"):
        RandomShift(-1)


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch():
    s = EpochSampler(50, seed=3)
    s.set_epoch(2)
    first = list(s)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    t = EpochSampler(50, seed=3)
    t.set_epoch(2)
    assert list(t) == first
    t.set_epoch(3)
    assert list(t) != first
    t.set_epoch(2, skip=17)
    assert list(t) == first[17:] and len(t) == 33
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_epoch_sampler_shards():
    # evaluation: every sample exactly once across ranks
    parts = [list(EpochSampler(11, shuffle=False, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(11))
    assert [len(EpochSampler(11, shuffle=False, num_replicas=3, rank=r)) for r in range(3)] == [
        4,
        4,
        3,
    ]
    # training: equal shares, disjoint
    shards = []
    for r in range(3):
        s = EpochSampler(11, seed=1, num_replicas=3, rank=r, drop_last=True)
        s.set_epoch(0)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == 3
    assert len(set(sum(shards, []))) == 9
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, num_replicas=2, rank=2)
