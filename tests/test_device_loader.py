"""The device-resident loader: shapes, determinism, valid crops, flip rate, and that it is
a drop-in for DataLoader + EpochSampler (same batches, same epoch/skip protocol)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from mgnet.data import EpochSampler
from mgnet.data.device_loader import DeviceLoader, use_device_loader
from mgnet.data.vision import UInt8ImageDataset


def _images(n: int, c: int = 3, size: int = 8, low: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(low, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def _identity_loader(images, **kw) -> DeviceLoader:
    """Normalization that returns the pixel values themselves: (x / 255 - 0) / (1 / 255)."""
    c = images.shape[1]
    return DeviceLoader(
        images, torch.arange(len(images)), mean=(0.0,) * c, std=(1 / 255,) * c, device="cpu", **kw
    )


def test_shapes_len_and_drop_last():
    images = _images(10)
    loader = DeviceLoader(images, torch.zeros(10), 4, (0.5,) * 3, (0.25,) * 3, 4, True)
    assert loader.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batches = list(loader)
    assert len(loader) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    loader = DeviceLoader(images, torch.zeros(10), 4, (0.5,) * 3, (0.25,) * 3, drop_last=True)
    assert len(loader) == 2 and [len(b[1]) for b in loader] == [4, 4]
    cl = DeviceLoader(images, torch.zeros(10), 4, (0.5,) * 3, (0.25,) * 3, channels_last=True)
    assert next(iter(cl))[0].is_contiguous(memory_format=torch.channels_last)


def test_normalization_matches_the_dataset():
    images = _images(6)
    ds = UInt8ImageDataset(images, torch.arange(6), (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    loader = DeviceLoader.from_dataset(ds, 6, shuffle=False, device="cpu")
    x, y = next(iter(loader))
    expected = torch.stack([ds[i][0] for i in range(6)])
    assert torch.allclose(x, expected, atol=1e-6) and y.tolist() == list(range(6))
    ref = (images.float() / 255 - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2, 0.25, 0.3]
    ).view(1, 3, 1, 1)
    assert torch.allclose(x, ref, atol=1e-5)


def test_determinism_with_a_seed():
    images = _images(32)

    def epoch(seed, e):
        loader = _identity_loader(images, batch_size=8, crop_padding=4, flip=True, seed=seed)
        loader.set_epoch(e)
        return torch.cat([x for x, _ in loader]), torch.cat([y for _, y in loader])

    a, b = epoch(0, 3), epoch(0, 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(epoch(0, 4)[1], a[1])  # a new order each epoch
    assert not torch.equal(epoch(1, 3)[1], a[1])  # and for another seed


def test_crops_are_shifts_of_the_padded_image():
    images = _images(64, c=2, size=6, low=1)  # no zero pixels: the border is recognizable
    loader = _identity_loader(images, batch_size=16, crop_padding=2, flip=False)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    seen = set()
    for x, y in loader:
        for img, i in zip(x, y.tolist()):
            hits = [
                (dy, dx)
                for dy in range(5)
                for dx in range(5)
                if torch.equal(img.to(torch.uint8), padded[i, :, dy : dy + 6, dx : dx + 6])
            ]
            assert len(hits) == 1
            seen.add(hits[0])
    assert len(seen) >= 20  # the 25 corners are all in use, not a fixed shift


def test_flip_probability_is_about_a_half():
    images = _images(4000, c=1, size=4)
    loader = _identity_loader(images, batch_size=500, flip=True)
    flipped = same = 0
    for x, y in loader:
        original = images[y].float()
        flipped += (x == original.flip(-1)).flatten(1).all(1).sum().item()
        same += (x == original).flatten(1).all(1).sum().item()
    assert flipped + same >= 4000  # every image is itself or its mirror (symmetric: both)
    # binomial(4000, 1/2): sd 0.0079; the band is about 6 sd wide each way
    assert 0.45 < flipped / 4000 < 0.55


def test_drop_in_for_dataloader_with_epoch_sampler():
    """Without augmentation the batches equal the training loop's DataLoader + EpochSampler
    batches exactly, for every rank, epoch and resume offset."""
    images = _images(23)
    ds = UInt8ImageDataset(images, torch.arange(23) % 7, (0.5,) * 3, (0.25,) * 3)
    for world in (1, 2):
        for rank in range(world):
            sampler = EpochSampler(23, seed=5, num_replicas=world, rank=rank, drop_last=True)
            torch_loader = DataLoader(ds, batch_size=4, sampler=sampler)
            dev = DeviceLoader.from_dataset(
                ds, 4, seed=5, num_replicas=world, rank=rank, device="cpu"
            )
            for epoch, skip in ((0, 0), (2, 0), (2, 8)):
                sampler.set_epoch(epoch, skip=skip)
                dev.set_epoch(epoch, skip=skip)
                ref, got = list(torch_loader), list(dev)
                assert len(dev) == len(ref) and len(got) == len(ref)
                for (xr, yr), (xd, yd) in zip(ref, got):
                    assert torch.equal(yr, yd) and torch.allclose(xr, xd, atol=1e-6)
                assert dev.num_samples == len(sampler)


def test_ranks_partition_the_epoch_and_eval_covers_every_sample():
    images = _images(11)
    labels = torch.arange(11)
    train = [_identity_loader(images, batch_size=3, num_replicas=2, rank=r, seed=1) for r in (0, 1)]
    got = [torch.cat([y for _, y in loader]) for loader in train]
    assert len(got[0]) == len(got[1]) == 5  # equal shares, one sample dropped
    assert len(set(got[0].tolist()) | set(got[1].tolist())) == 10
    evals = [
        DeviceLoader(images, labels, 3, (0,) * 3, (1,) * 3, shuffle=False, num_replicas=2, rank=r)
        for r in (0, 1)
    ]
    seen = sorted(torch.cat([y for e in evals for _, y in e]).cpu().tolist())
    assert seen == list(range(11))


def test_resume_mid_epoch_sees_the_same_batches():
    images = _images(40)
    full = _identity_loader(images, batch_size=8, crop_padding=4, flip=True, seed=3)
    full.set_epoch(1)
    batches = list(full)
    resumed = _identity_loader(images, batch_size=8, crop_padding=4, flip=True, seed=0)
    state = dict(full.state_dict(), skip=16)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == {"seed": 3, "epoch": 1, "skip": 16}
    tail = list(resumed)
    assert len(tail) == len(resumed) == 3
    for (xa, ya), (xb, yb) in zip(batches[2:], tail):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_selection_rule():
    ds = UInt8ImageDataset(_images(4), torch.arange(4), (0.5,) * 3, (0.25,) * 3)
    assert use_device_loader("auto", ds, "cuda") and not use_device_loader("auto", ds, "cpu")
    assert use_device_loader("device", ds, "cpu") and not use_device_loader("torch", ds, "cuda")
    assert not use_device_loader("auto", [1, 2], "cuda")  # e.g. ImageFolder: DataLoader
    with pytest.raises(ValueError, match="loader: 'device' needs an in-memory uint8"):
        use_device_loader("device", [1, 2], "cuda")
    with pytest.raises(ValueError, match="expected auto, device, torch"):
        use_device_loader("gpu", ds, "cuda")


def test_bad_arguments_are_one_line_value_errors():
    images = _images(4)
    with pytest.raises(ValueError, match=r"images: need a uint8 tensor \(N, C, H, W\)"):
        DeviceLoader(images.float(), torch.arange(4), 2, (0,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match=r"labels: need a tensor of shape \(4,\)"):
        DeviceLoader(images, torch.arange(3), 2, (0,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match="batch_size: must be a positive integer"):
        DeviceLoader(images, torch.arange(4), 0, (0,) * 3, (1,) * 3)
    with pytest.raises(ValueError, match="mean, std: need 3 values each"):
        DeviceLoader(images, torch.arange(4), 2, (0,), (1,))
    with pytest.raises(ValueError, match="dataset: need an in-memory UInt8ImageDataset"):
        DeviceLoader.from_dataset([1, 2], 2)
