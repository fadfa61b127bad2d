"""What max pooling keeps for its backward, and the integer element types.

Without return_indices, our max pooling saves each maximum's one-byte position in its window
(not torch's input + int64 indices), computes no indices at all when no gradient is needed, and
must still give torch's values and gradients everywhere: every form is compared with torch here,
including double backward and torch.compile.
"""
import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

CASES = [  # (dims, kwargs)
    (1, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=2, stride=2)),
    (2, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 0), dilation=(2, 1), ceil_mode=True)),
    (2, dict(kernel_size=3, stride=1, padding=1, dilation=3)),  # windows with no input element
    (3, dict(kernel_size=2, stride=(1, 2, 2))),
    (3, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
]
ADAPTIVE = [(1, 5), (2, (3, 5)), (2, (7, 1)), (2, (11, 13)), (3, (2, 3, 4))]


def _input(dims, channels_last=False, dtype=torch.double, batch=2, channels=3):
    shape = [batch, channels, 7, 9, 6][: 2 + dims]
    if dims == 1:
        shape = [batch, channels, 11]
    x = torch.randn(shape, dtype=dtype)
    if channels_last and dims >= 2:
        x = x.contiguous(memory_format=torch.channels_last if dims == 2 else torch.channels_last_3d)
    return x.requires_grad_(dtype.is_floating_point)


def _max_pool(dims, lib):
    return getattr(lib, f"max_pool{dims}d")


def _saved_bytes(fn, x):
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(saved)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dims,kw", CASES)
def test_values_and_gradients_from_positions(dims, kw, channels_last):
    x = _input(dims, channels_last)
    ours, theirs = _max_pool(dims, CF)(x, **kw), _max_pool(dims, F)(x, **kw)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    grad = torch.randn_like(ours).requires_grad_()
    (g_ours,) = torch.autograd.grad(ours, x, grad, create_graph=True)
    (g_theirs,) = torch.autograd.grad(theirs, x, grad, create_graph=True)
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=0)
    assert g_ours.stride() == g_theirs.stride()
    # Double backward reads the second-order gradient at each saved position.
    gg = torch.randn_like(g_ours)
    (h_ours,) = torch.autograd.grad(g_ours, grad, gg)
    (h_theirs,) = torch.autograd.grad(g_theirs, grad, gg)
    torch.testing.assert_close(h_ours, h_theirs, rtol=0, atol=0)


@pytest.mark.parametrize("dims,kw", CASES[1:3] + CASES[5:6])
def test_gradcheck_through_positions(dims, kw):
    x = _input(dims, batch=1, channels=2)
    torch.autograd.gradcheck(lambda t: _max_pool(dims, CF)(t, **kw), (x,))
    torch.autograd.gradgradcheck(lambda t: _max_pool(dims, CF)(t, **kw), (x,))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dims,size", ADAPTIVE)
def test_adaptive_from_positions(dims, size, channels_last):
    x = _input(dims, channels_last)
    ours = getattr(CF, f"adaptive_max_pool{dims}d")(x, size)
    theirs = getattr(F, f"adaptive_max_pool{dims}d")(x, size)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    grad = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, x, grad)[0],
                               torch.autograd.grad(theirs, x, grad)[0], rtol=0, atol=0)
    small = _input(dims, batch=1, channels=1)
    torch.autograd.gradgradcheck(lambda t: getattr(CF, f"adaptive_max_pool{dims}d")(t, size),
                                 (small,))


@pytest.mark.parametrize("dims,kw", CASES)
def test_saves_one_byte_per_output(dims, kw):
    x = _input(dims, dtype=torch.float)
    out = _max_pool(dims, CF)(x, **kw)
    ours = _saved_bytes(lambda t: _max_pool(dims, CF)(t, **kw), x)
    theirs = _saved_bytes(lambda t: _max_pool(dims, F)(t, **kw), x)
    # uint8 positions, and one element of the input that ties the graph to it (see
    # graph_anchor in pool_autograd.cpp)
    assert ours == out.numel() + x.element_size()
    assert theirs >= 8 * out.numel()


def test_adaptive_saves_one_byte_per_output():
    x = torch.randn(2, 4, 30, 17, requires_grad=True)
    assert _saved_bytes(lambda t: CF.adaptive_max_pool2d(t, (7, 3)), x) == 2 * 4 * 7 * 3 + 4


def test_large_windows_and_return_indices_save_indices():
    # A window of more than 256 positions does not fit a byte: torch's indices are saved then.
    x = torch.randn(1, 2, 40, 40, dtype=torch.double, requires_grad=True)
    fn = lambda t: CF.max_pool2d(t, 17, stride=5)  # noqa: E731
    assert _saved_bytes(fn, x) > 8 * fn(x).numel()
    torch.autograd.gradcheck(fn, (x,))
    torch.testing.assert_close(fn(x), F.max_pool2d(x, 17, stride=5), rtol=0, atol=0)
    ours, idx = CF.max_pool2d(x, 3, return_indices=True)
    theirs, tidx = F.max_pool2d(x, 3, return_indices=True)
    assert torch.equal(idx, tidx)


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_training_step_matches_eager(dynamic):
    def step(t):
        y = CF.max_pool2d(t, 3, stride=2, padding=1) + CF.adaptive_max_pool2d(t, 4).mean()
        return y.sum()

    compiled = torch.compile(step, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for shape in [(2, 3, 9, 9), (1, 3, 12, 10)]:
        x = torch.randn(shape, requires_grad=True)
        (g_eager,) = torch.autograd.grad(step(x), x)
        (g_compiled,) = torch.autograd.grad(compiled(x), x)
        torch.testing.assert_close(g_compiled, g_eager)


def test_second_derivative_with_respect_to_the_input_is_zero():
    # As torch's: the gradient stays tied to the input although only positions are saved.
    x = torch.randn(1, 2, 6, 6, dtype=torch.double, requires_grad=True)
    out = CF.max_pool2d(x, 2)
    (grad,) = torch.autograd.grad(out, x, torch.ones_like(out), create_graph=True)
    (gg,) = torch.autograd.grad(grad.sum(), x)
    assert torch.equal(gg, torch.zeros_like(x))


def test_corrupt_positions_are_rejected():
    x = torch.randn(1, 1, 4, 4)
    out, positions = torch.ops.convpool.max_pool_positions(x, [2, 2], [2, 2], [0, 0, 0, 0],
                                                           [1, 1], False)
    bad = positions.clone().fill_(200)
    with pytest.raises(RuntimeError, match="window position outside the input"):
        torch.ops.convpool.max_pool_positions_backward(torch.ones_like(out), bad, [1, 1, 4, 4],
                                                       False, [2, 2], [2, 2], [0, 0, 0, 0],
                                                       [1, 1], False)
    with pytest.raises(RuntimeError, match="uint8 positions"):
        torch.ops.convpool.max_pool_positions_backward(torch.ones_like(out), positions.long(),
                                                       [1, 1, 4, 4], False, [2, 2], [2, 2],
                                                       [0, 0, 0, 0], [1, 1], False)
    with pytest.raises(RuntimeError, match="positions are stored as uint8"):
        torch.ops.convpool.max_pool_positions(torch.randn(1, 1, 20, 20), [17, 17], [1, 1],
                                              [0, 0, 0, 0], [1, 1], False)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_integer_max_pooling(dtype, channels_last):
    low = 0 if dtype == torch.uint8 else -100
    x = torch.randint(low, 100, (2, 5, 9, 11)).to(dtype)
    x[0, 0] = low  # a window of lowest values reports its first element, as torch's
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for kw in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)]:
        assert torch.equal(CF.max_pool2d(x, **kw), F.max_pool2d(x, **kw))
        ours, idx = CF.max_pool2d(x, **kw, return_indices=True)
        theirs, tidx = F.max_pool2d(x, **kw, return_indices=True)
        assert torch.equal(ours, theirs) and torch.equal(idx, tidx)
    x3 = x.unsqueeze(2).contiguous()
    assert torch.equal(CF.max_pool3d(x3, (1, 2, 2)), F.max_pool3d(x3, (1, 2, 2)))
    line = x[:, :, 0].contiguous()
    assert torch.equal(CF.max_pool1d(line, 2, return_indices=True)[1],
                       F.max_pool1d(line, 2, return_indices=True)[1])


@pytest.mark.parametrize("channels_last", [False, True])
def test_int64_average_pooling_truncates_as_torch(channels_last):
    x = torch.randint(-50, 50, (2, 3, 7, 8))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for kw in [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
               dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)]:
        assert torch.equal(CF.avg_pool2d(x, **kw), F.avg_pool2d(x, **kw))
    assert torch.equal(CF.avg_pool1d(x[:, :, 0], 3), F.avg_pool1d(x[:, :, 0], 3))
