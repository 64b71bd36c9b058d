"""The CUDA paths that no CPU run reaches: mixed precision (bf16, fp16), channels-last and
torch.compile on the classifier, the device-resident loader, export of a model that lives
on the GPU, and the stencil operators' GPU code (one pass per term, red-black steps that
touch one colour). Marked ``cuda`` and skipped without a device; ``pytest -m cuda`` runs
them (benchmarks/gpu_check.py does)."""

import pytest
import torch

from mgnet.data.device_loader import DeviceLoader
from mgnet.export import export_model
from mgnet.models import create_model
from mgnet.stencils import FullWeighting, Interpolation, diffusion, laplacian, red_black

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SPEC = "mgnet[1,1,1]-[16,32,64]"  # a small CIFAR-shaped MgNet (3 levels on 32x32)


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = create_model(SPEC, num_classes=10, in_channels=3)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    return model, x, y


def _loss_and_grads(model, x, y, amp=None, channels_last=False):
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    grads = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters()])
    return logits.detach().float().cpu(), loss.item(), grads


@pytest.mark.parametrize(
    "amp,channels_last,tol",
    [
        (None, False, 1e-3),
        (None, True, 1e-3),
        (torch.bfloat16, True, 6e-2),
        (torch.float16, False, 2e-2),
    ],
)
def test_forward_backward_on_cuda_matches_the_cpu(amp, channels_last, tol):
    model, x, y = _model_and_batch()
    model.train()
    ref_logits, ref_loss, ref_grads = _loss_and_grads(model, x, y)
    gpu = create_model(SPEC, num_classes=10, in_channels=3)
    gpu.load_state_dict(model.state_dict())
    logits, loss, grads = _loss_and_grads(gpu.cuda(), x.cuda(), y.cuda(), amp, channels_last)
    assert torch.isfinite(grads).all()
    scale = ref_logits.abs().max()
    assert float((logits - ref_logits).abs().max() / scale) < tol
    assert loss == pytest.approx(ref_loss, rel=tol)
    cos = torch.nn.functional.cosine_similarity(grads, ref_grads, dim=0)
    assert float(cos) > 1 - tol


def test_compiled_model_on_cuda_matches_eager():
    model, x, _ = _model_and_batch(1)
    model = model.cuda().eval()
    x = x.cuda()
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    assert float((compiled - eager).abs().max() / eager.abs().max()) < 1e-3


def test_device_loader_gives_the_same_batches_on_cuda_and_cpu():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    kw = dict(batch_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, crop_padding=4, flip=True)
    cpu = DeviceLoader(images, labels, device="cpu", **kw)
    gpu = DeviceLoader(images, labels, device="cuda", channels_last=True, **kw)
    for loader in (cpu, gpu):
        loader.set_epoch(3, 0)
    batches = list(zip(cpu, gpu))
    assert len(batches) == len(cpu) == 4
    for (xc, yc), (xg, yg) in batches:
        assert xg.device.type == "cuda" and xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(yc, yg.cpu())
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_of_a_model_on_cuda(tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    model, _, _ = _model_and_batch(2)
    model = model.cuda().eval()
    result = export_model(model, tmp_path / f"m.{fmt}", fmt, input_shape=(1, 3, 32, 32))
    assert result.path.exists()
    assert result.max_abs_diff is None or result.max_abs_diff < 1e-4
    assert next(model.parameters()).device.type == "cuda"  # the model passed in is left alone


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "make",
    [
        lambda: laplacian((63, 65)),
        lambda: laplacian((31, 33, 35)),
        lambda: laplacian((64, 32), bc="periodic", c=1.0),
        lambda: diffusion((63, 63), lambda x, y: 1 + x * y),
    ],
)
def test_stencil_operators_on_cuda_match_the_cpu(make, dtype):
    op = make().to(dtype)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 1, *op.shape, generator=g, dtype=torch.float64).to(dtype)
    f = torch.randn(2, 1, *op.shape, generator=g, dtype=torch.float64).to(dtype)
    gop = make().to("cuda", dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    with torch.no_grad():
        gpu = gop.residual(u.cuda(), f.cuda()).cpu()
        torch.testing.assert_close(gpu, op.residual(u, f), rtol=tol, atol=tol)
        red, black = red_black(op)
        gred, gblack = (B.to("cuda", dtype) for B in red_black(gop))
        cpu = black.to(dtype).update_(op, red.to(dtype).update_(op, u.clone(), f), f)
        gpu = gblack.update_(gop, gred.update_(gop, u.cuda().clone(), f.cuda()), f.cuda())
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=tol, atol=tol)
        try:
            R, P = FullWeighting(op.shape, op.bc), Interpolation(op.shape, op.bc)
        except ValueError:  # a grid that does not coarsen
            return
        rc = R(f)
        torch.testing.assert_close(R(f.cuda()).cpu(), rc, rtol=tol, atol=tol)
        gpu = P.add_to(u.cuda().clone(), rc.cuda()).cpu()
        torch.testing.assert_close(gpu, P.add_to(u.clone(), rc), rtol=tol, atol=tol)
