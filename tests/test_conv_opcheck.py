"""torch.library.opcheck over sample arguments of every convolution-family op, and fake (meta)
shapes against real shapes."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import torch_convpool.functional as CF

ops = torch.ops.convpool


def conv_samples(device):
    f64 = dict(device=device, dtype=torch.float64)
    yield ops.conv.default, (torch.randn(2, 4, 7, **f64, requires_grad=True),
                             torch.randn(6, 2, 3, **f64, requires_grad=True),
                             torch.randn(6, **f64, requires_grad=True), [2], [1, 0], [1], 2)
    yield ops.conv.default, (torch.randn(1, 3, 6, 5, **f64, requires_grad=True),
                             torch.randn(4, 3, 2, 3, **f64, requires_grad=True), None, [1, 2],
                             [0, 1, 1, 2], [2, 1], 1)
    yield ops.conv.default, (torch.randn(1, 2, 4, 5, 4, **f64, requires_grad=True),
                             torch.randn(2, 1, 2, 2, 2, **f64, requires_grad=True),
                             torch.randn(2, **f64), [1, 2, 1], [1, 1, 0, 0, 1, 1], [1, 1, 2], 2)
    yield ops.conv_transpose.default, (torch.randn(2, 4, 5, **f64, requires_grad=True),
                                       torch.randn(4, 3, 3, **f64, requires_grad=True),
                                       torch.randn(6, **f64, requires_grad=True), [2], [1, 0],
                                       [1], 2)
    yield ops.conv_transpose.default, (torch.randn(1, 3, 4, 5, **f64, requires_grad=True),
                                       torch.randn(3, 2, 3, 2, **f64, requires_grad=True), None,
                                       [2, 3], [1, 0, 0, -1], [1, 2], 1)
    yield ops.conv_weight_grad.default, (torch.randn(2, 6, 3, **f64, requires_grad=True),
                                         torch.randn(2, 4, 7, **f64, requires_grad=True),
                                         [6, 2, 3], [2], [1, 0], [1], 2)
    yield ops.conv_weight_grad.default, (torch.randn(1, 4, 5, 3, **f64, requires_grad=True),
                                         torch.randn(1, 3, 6, 5, **f64, requires_grad=True),
                                         [4, 3, 2, 3], [1, 2], [0, 1, 1, 2], [2, 1], 1)


@pytest.mark.parametrize("index", range(7))
def test_opcheck(device, index):
    op, args = list(conv_samples(device))[index]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("index", range(7))
def test_fake_shape_equals_real_shape(index):
    op, args = list(conv_samples("cpu"))[index]
    real = op(*args)
    with FakeTensorMode() as mode:
        fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        fake = op(*fake_args)
    assert fake.shape == real.shape and fake.dtype == real.dtype


def test_torch_compile_fullgraph_with_backward():
    x = torch.randn(2, 3, 12, 12, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)

    def f(x, w):
        return CF.conv2d(x, w, stride=2, padding="same").relu().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager", dynamic=True)
    loss = compiled(x, w)
    gx, gw = torch.autograd.grad(loss, (x, w))
    ex, ew = torch.autograd.grad(f(x, w), (x, w))
    torch.testing.assert_close(loss, f(x, w))
    torch.testing.assert_close(gx, ex)
    torch.testing.assert_close(gw, ew)
    # a second size goes through the same dynamic graph
    x2 = torch.randn(1, 3, 15, 11)
    torch.testing.assert_close(compiled(x2, w), f(x2, w))


def test_torch_export():
    from torch_convpool.nn import Conv2d, ConvTranspose2d

    model = torch.nn.Sequential(Conv2d(3, 4, 3, padding=1), ConvTranspose2d(4, 2, 2, stride=2))
    x = torch.randn(1, 3, 8, 8)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))
    assert any("convpool" in str(node.target) for node in exported.graph.nodes)
