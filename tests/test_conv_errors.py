"""Bad input to the convolution family: torch's exception type and a message naming the problem."""
import pytest
import torch

import torch_convpool.functional as CF

x = torch.randn(1, 3, 8, 8)
w = torch.randn(4, 3, 3, 3)


@pytest.mark.parametrize("call,error,fragment", [
    (lambda: CF.conv2d(torch.randn(3, 8), w), RuntimeError, "Expected 3D (unbatched) or 4D"),
    (lambda: CF.conv2d(x, torch.randn(4, 3, 3)), RuntimeError, "4-d weight"),
    (lambda: CF.conv2d(x, torch.randn(3, 3, 3, 3), groups=2), RuntimeError, "divisible by 2"),
    (lambda: CF.conv2d(x, torch.randn(4, 4, 3, 3)), RuntimeError, "to have 4 channels, but got 3"),
    (lambda: CF.conv2d(x, w, stride=0), RuntimeError, "non-positive stride"),
    (lambda: CF.conv2d(x, w, stride=(1, -1)), RuntimeError, "non-positive stride"),
    (lambda: CF.conv2d(x, w, stride=(1, 0), padding="same"), RuntimeError, "non-positive stride"),
    (lambda: CF.conv1d(torch.randn(2, 3, 8), torch.randn(4, 3, 3), stride=0, padding="same"),
     RuntimeError, "non-positive stride"),
    # Padding would give an output, but torch refuses an input empty along a spatial dim alone.
    (lambda: CF.conv1d(torch.randn(2, 5, 0), torch.randn(3, 5, 2), padding=3), RuntimeError,
     "only zero batch or zero channel inputs are supported"),
    (lambda: CF.conv2d(torch.randn(2, 3, 0, 4), torch.randn(4, 3, 1, 1), padding=1), RuntimeError,
     "only zero batch or zero channel inputs are supported"),
    (lambda: CF.conv2d(x, w, dilation=0), RuntimeError, "dilation should be greater than zero"),
    (lambda: CF.conv2d(x, w, padding=-1), RuntimeError, "negative padding"),
    (lambda: CF.conv2d(torch.randn(1, 3, 2, 2), w), RuntimeError, "kernel size can't be greater"),
    (lambda: CF.conv2d(x, w, groups=0), RuntimeError, "groups must be positive"),
    (lambda: CF.conv2d(x, w, padding="full"), RuntimeError, "Invalid padding string"),
    (lambda: CF.conv2d(x, w, stride=(1, 1, 1)), RuntimeError, "stride"),
    (lambda: CF.conv2d(x.double(), w), RuntimeError, "should be the same"),
    (lambda: CF.conv2d(x, w, torch.randn(4).double()), RuntimeError, "bias type"),
    (lambda: CF.conv2d(x, w, torch.randn(5)), RuntimeError, "4 elements"),
    (lambda: CF.conv2d(x.bool(), w.bool()), NotImplementedError, "not implemented for 'Bool'"),
    (lambda: CF.conv2d(x, torch.randn(0, 3, 3, 3)), RuntimeError,
     "expected weight to be at least 1 at dimension 0"),
    (lambda: CF.conv2d(x, torch.randn(2, 1, 3, 3), groups=3), RuntimeError,
     "expected weight to be at least 3 at dimension 0"),
    (lambda: CF.conv_transpose2d(torch.randn(1, 3, 0, 4), torch.randn(3, 4, 3, 3)), RuntimeError,
     "only zero batch or zero channel inputs are supported"),
    (lambda: CF.conv_transpose2d(x, torch.randn(3, 4, 3, 3), stride=2, output_padding=2),
     RuntimeError, "output padding must be smaller than either stride or dilation"),
    (lambda: CF.conv_transpose2d(x, torch.randn(3, 4, 3, 3), padding="same"), TypeError,
     "must be tuple of ints"),
    (lambda: CF.conv_transpose2d(x, torch.randn(4, 4, 3, 3)), RuntimeError, "to have 4 channels"),
    (lambda: CF.conv_transpose2d(x, torch.randn(3, 4, 3, 3), groups=2), RuntimeError,
     "divisible by 2"),
    (lambda: CF.conv_transpose2d(torch.randn(1, 3, 1, 1), torch.randn(3, 4, 1, 1), padding=1),
     RuntimeError, "must be positive"),
])
def test_bad_input(call, error, fragment):
    with pytest.raises(error, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_raw_op_rejects_wrong_list_lengths():
    with pytest.raises(RuntimeError, match="padding must have 4 entries"):
        torch.ops.convpool.conv(x, w, None, [1, 1], [0, 0], [1, 1], 1)


def test_raw_op_weight_grad_checks_grad_output_shape():
    with pytest.raises(RuntimeError, match="expected grad_output of size"):
        torch.ops.convpool.conv_weight_grad(torch.randn(1, 4, 5, 5), x, [4, 3, 3, 3], [1, 1],
                                            [0, 0, 0, 0], [1, 1], 1)
