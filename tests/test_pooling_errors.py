"""Bad input to the pooling family: torch's exception type and a message naming the problem."""
import pytest
import torch

import torch_convpool.functional as CF

x = torch.randn(1, 3, 8, 8)


@pytest.mark.parametrize("call,error,fragment", [
    (lambda: CF.max_pool2d(x, 0), RuntimeError, "kernel_size should be greater than zero"),
    (lambda: CF.max_pool2d(x, 2, 0), RuntimeError, "stride should be greater than zero"),
    (lambda: CF.max_pool2d(x, 2, 2, 0, 0), RuntimeError, "dilation should be greater than zero"),
    (lambda: CF.max_pool2d(x, 4, padding=3), RuntimeError, "at most half"),
    (lambda: CF.max_pool2d(x, 2, padding=-1), RuntimeError, "at most half"),
    (lambda: CF.max_pool2d(torch.randn(1, 3, 2, 2), 3), RuntimeError, "too small"),
    (lambda: CF.max_pool2d(torch.randn(8, 8), 2), RuntimeError, "Expected 3D (unbatched) or 4D"),
    (lambda: CF.max_pool2d(torch.randn(1, 0, 4, 4), 2), RuntimeError, "non-empty"),
    (lambda: CF.max_pool1d(torch.randn(1, 2, 8), [2, 2]), RuntimeError, "kernel_size"),
    # Element types as torch's CPU kernels take them (NotImplementedError, as torch's).
    (lambda: CF.max_pool2d(x.bool(), 2), NotImplementedError, "not implemented for 'Bool'"),
    (lambda: CF.max_pool1d(x[0].long(), 2), NotImplementedError, "max_pool1d"),
    (lambda: CF.avg_pool2d(x.int(), 2), NotImplementedError, "not implemented for 'Int'"),
    (lambda: CF.adaptive_max_pool2d(x.long(), 2), NotImplementedError, "floating point types"),
    (lambda: CF.adaptive_avg_pool2d(x.long(), 2), NotImplementedError, "floating point types"),
    (lambda: CF.max_unpool2d(x.long()[:, :, :2, :2], torch.zeros(1, 3, 2, 2, dtype=torch.long), 2),
     NotImplementedError, "floating point"),
    (lambda: CF.max_pool2d(x, 2, padding="full"), RuntimeError, "invalid padding string"),
    (lambda: CF.avg_pool2d(x, 4, padding=3), RuntimeError, "at most half"),
    (lambda: CF.avg_pool2d(x, 2, divisor_override=0), RuntimeError, "divisor must be not zero"),
    (lambda: CF.avg_pool3d(torch.randn(1, 1, 2, 2, 2), 3), RuntimeError, "smaller than kernel size"),
    (lambda: CF.adaptive_avg_pool2d(x, -1), RuntimeError, "greater than or equal to 0"),
    (lambda: CF.adaptive_max_pool2d(x, (2, 2, 2)), RuntimeError, "output_size must have 2"),
    (lambda: CF.adaptive_max_pool2d(x[0], (2, 2, 2)), ValueError, "Input dimension should be at least 4"),
    (lambda: CF.adaptive_avg_pool2d(x, None), TypeError, "object of type 'NoneType' has no len()"),
    (lambda: CF.adaptive_avg_pool1d(x[0], None), TypeError, "must be tuple of ints, not NoneType"),
    (lambda: CF.adaptive_max_pool1d(x[0], (None,)), TypeError, "element of type NoneType at pos 0"),
    (lambda: CF.adaptive_max_pool2d(torch.randn(8, 8), 2), RuntimeError, "Expected 3D (unbatched)"),
    (lambda: CF.max_unpool2d(torch.randn(1, 1, 2, 2), torch.full((1, 1, 2, 2), 100), 2),
     RuntimeError, "invalid max index: 100"),
    (lambda: CF.max_unpool2d(torch.randn(1, 1, 2, 2), torch.full((1, 1, 2, 2), -1), 2),
     RuntimeError, "invalid max index: -1"),
    (lambda: CF.max_unpool2d(torch.randn(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.long), 2,
                             output_size=(9, 9)), ValueError, "dim 0 must be between 2 and 6"),
    (lambda: CF.max_unpool2d(torch.randn(1, 1, 2, 2), torch.zeros(1, 1, 3, 2, dtype=torch.long), 2),
     RuntimeError, "shape of indices"),
    (lambda: CF.max_unpool2d(torch.randn(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 2), RuntimeError,
     "int64 indices"),
])
def test_bad_input(call, error, fragment):
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_raw_op_checks_padding_against_kernel():
    with pytest.raises(RuntimeError, match="at most half of the effective kernel"):
        torch.ops.convpool.max_pool(x, [2, 2], [2, 2], [3, 3, 0, 0], [1, 1], False)


def test_raw_backward_op_checks_grad_shape():
    _, idx = torch.ops.convpool.max_pool(x, [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], False)
    with pytest.raises(RuntimeError, match="expected grad_output of size"):
        torch.ops.convpool.max_pool_backward(torch.randn(1, 3, 3, 3), x, idx, [2, 2], [2, 2],
                                             [0, 0, 0, 0], [1, 1], False)
