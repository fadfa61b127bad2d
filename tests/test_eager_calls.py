"""The direct eager calls (_C._eager_*, csrc/eager_calls.h) give what torch.ops gives, and are
taken only for plain tensors outside tracing and torch_function modes (torch_convpool/_eager.py)."""
import torch
from torch.overrides import TorchFunctionMode
from torch.testing import assert_close

import torch_convpool.functional as CF
from torch_convpool._eager import direct
from torch_convpool._library import _C


def _values_and_grads(fn, *tensors):
    out = fn(*tensors)
    grads = torch.autograd.grad(out, [t for t in tensors if t.requires_grad], torch.ones_like(out))
    return out, grads


def test_direct_calls_match_torch_ops():
    x = torch.randn(2, 6, 9, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    args = ([2, 1], [1, 0, 1, 2], [1, 2], 2)
    ours = _values_and_grads(lambda *t: _C._eager_conv(*t, *args), x, w, b)
    theirs = _values_and_grads(lambda *t: torch.ops.convpool.conv(*t, *args), x, w, b)
    for a, e in zip(ours, theirs):
        assert_close(a, e, rtol=0, atol=0)
    pool_args = ([3, 2], [2, 1], [1, 0, 1, 0], [1, 1], True)
    assert_close(_C._eager_max_pool_values(x, *pool_args),
                 torch.ops.convpool.max_pool_values(x, *pool_args), rtol=0, atol=0)
    avg_args = ([3, 2], [2, 1], [1, 0, 1, 0], True, False, None)
    assert_close(_C._eager_avg_pool(x, *avg_args), torch.ops.convpool.avg_pool(x, *avg_args),
                 rtol=0, atol=0)
    assert_close(_C._eager_adaptive_avg_pool(x, [3, 5]),
                 torch.ops.convpool.adaptive_avg_pool(x, [3, 5]), rtol=0, atol=0)


def test_conv_transpose_direct_matches_torch():
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    ours = _values_and_grads(lambda a, b: CF.conv_transpose2d(a, b, stride=2, padding=1), x, w)
    theirs = _values_and_grads(
        lambda a, b: torch.nn.functional.conv_transpose2d(a, b, stride=2, padding=1), x, w)
    for a, e in zip(ours, theirs):
        assert_close(a, e)


class _Subclass(torch.Tensor):
    pass


def test_direct_only_for_plain_eager_tensors():
    x = torch.randn(2, 3)
    assert direct(x, torch.nn.Parameter(torch.randn(3)), None)
    assert not direct(x.as_subclass(_Subclass))
    with TorchFunctionMode():
        assert not direct(x)
    assert direct(x)


def test_torch_function_mode_still_sees_the_op():
    seen = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    with Record():
        CF.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3))
    assert any("convpool.conv" in str(f) for f in seen)
