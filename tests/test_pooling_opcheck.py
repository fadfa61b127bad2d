"""torch.library.opcheck over sample arguments of every pooling op; torch.compile and export."""
import pytest
import torch

import torch_convpool.functional as CF
import torch_convpool.nn as cnn

ops = torch.ops.convpool


def distinct(*shape, device="cpu"):
    """float64 values without ties (max pooling is differentiable there)."""
    n = torch.Size(shape).numel()
    return (torch.randperm(n, device=device).double() / 7).view(shape).requires_grad_()


def pool_samples(device):
    x2 = distinct(2, 3, 7, 6, device=device)
    x1 = distinct(1, 2, 9, device=device)
    x3 = distinct(1, 2, 4, 5, 4, device=device)
    out, idx = torch.nn.functional.max_pool2d(x2.detach(), 2, return_indices=True)
    yield ops.max_pool.default, (x2, [3, 2], [2, 1], [1, 0, 1, 1], [1, 1], True)
    yield ops.max_pool.default, (x1, [3], [2], [1, 1], [2], False)
    yield ops.max_pool.default, (x3, [2, 2, 2], [2, 1, 2], [0, 1, 0, 1, 0, 1], [1, 1, 1], False)
    yield ops.avg_pool.default, (x2, [3, 2], [2, 1], [1, 0, 1, 1], True, False, None)
    yield ops.avg_pool.default, (x3, [2, 2, 2], [1, 2, 2], [1, 1, 0, 1, 0, 0], False, True, 3)
    yield ops.adaptive_avg_pool.default, (x2, [3, 4])
    yield ops.adaptive_avg_pool.default, (x1, [4])
    yield ops.adaptive_max_pool.default, (x2, [3, 4])
    yield ops.adaptive_max_pool.default, (x3, [2, 3, 3])
    yield ops.max_unpool.default, (out.requires_grad_(), idx, [7, 6])
    g = torch.randn(2, 3, 4, 4, dtype=torch.float64, device=device, requires_grad=True)
    g3 = torch.randn(2, 3, 3, 3, dtype=torch.float64, device=device, requires_grad=True)
    o, i = ops.max_pool(x2.detach(), [3, 2], [2, 2], [1, 1, 1, 1], [1, 1], False)
    yield ops.max_pool_backward.default, (g, x2.detach(), i, [3, 2], [2, 2], [1, 1, 1, 1], [1, 1], False)
    yield ops.avg_pool_backward.default, (g, x2.detach(), [3, 2], [2, 2], [1, 1, 1, 1], False, True, None)
    _, ai = ops.adaptive_max_pool(x2.detach(), [3, 3])
    yield ops.adaptive_max_pool_backward.default, (g3, x2.detach(), ai)
    yield ops.adaptive_avg_pool_backward.default, (g3, x2.detach())


SAMPLES = 14


@pytest.mark.parametrize("index", range(SAMPLES))
def test_opcheck(device, index):
    samples = list(pool_samples(device))
    assert len(samples) == SAMPLES
    op, args = samples[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("index", [0, 3, 5, 7])
def test_opcheck_channels_last(index):
    op, args = list(pool_samples("cpu"))[index]
    x = args[0].detach().to(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(op, (x, *args[1:]))


def test_torch_compile_fullgraph_dynamic():
    def f(x):
        y = CF.max_pool2d(x, 3, 2, "same")
        return CF.avg_pool2d(y, 2, ceil_mode=True) + CF.adaptive_avg_pool2d(y, 1)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager", dynamic=True)
    for shape in [(2, 3, 12, 12), (1, 3, 9, 14)]:
        x = torch.randn(shape, requires_grad=True)
        torch.testing.assert_close(compiled(x), f(x))
        (g,) = torch.autograd.grad(compiled(x).sum(), x)
        (e,) = torch.autograd.grad(f(x).sum(), x)
        torch.testing.assert_close(g, e)


def test_torch_export_pooling_model():
    model = torch.nn.Sequential(cnn.Conv2d(3, 4, 3), cnn.MaxPool2d(2), cnn.AvgPool2d(2, ceil_mode=True),
                                cnn.GlobalAvgPool2d(flatten=True))
    x = torch.randn(2, 3, 16, 16)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
