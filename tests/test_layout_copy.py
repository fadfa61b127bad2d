"""Our NCHW <-> channels_last transposing copy (csrc/conv/layout_copy.h), which stages NCHW
tensors for the channels_last kernels, against torch's own .contiguous(memory_format)."""
import pytest
import torch

from torch_convpool._library import _C

SHAPES = [
    (1, 1, 1, 1), (2, 3, 5, 7), (1, 16, 4, 4), (3, 17, 9, 13), (2, 33, 16, 16),
    (1, 130, 3, 45), (2, 7, 129, 2), (1, 256, 12, 12), (2, 3, 4, 5, 6), (1, 40, 3, 9, 11),
]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_round_trip_matches_torch(shape, dtype):
    x = torch.randn(shape).to(dtype)
    cl = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
    to_cl = _C._contiguous_as(x, cl)
    assert to_cl.is_contiguous(memory_format=cl)
    assert torch.equal(to_cl, x)
    back = _C._contiguous_as(x.contiguous(memory_format=cl), torch.contiguous_format)
    assert back.is_contiguous()
    assert torch.equal(back, x)


def test_strided_input_takes_torch_copy():
    x = torch.randn(2, 8, 10, 10)[:, ::2]
    out = _C._contiguous_as(x, torch.channels_last)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, x)


def test_already_in_format_is_returned_as_is():
    x = torch.randn(2, 3, 4, 5)
    assert _C._contiguous_as(x, torch.contiguous_format).data_ptr() == x.data_ptr()
