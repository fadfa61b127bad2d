"""The memory format of a conv's result is torch's (strides compared): channels_last where the
input or the weight is (a channels_last model's NCHW slices meet channels_last weights), with
torch's exceptions (CPU 3-d convs its size heuristic leaves to slow_conv3d, float64 3-d), for
conv and conv_transpose, dense, grouped, depthwise and 1x1, batched and unbatched, in float32,
float64 and bfloat16, at one and two threads; and the fake kernels agree with the real ones.
Not compared: depthwise convs with 1x1 results, whose size-1 strides follow torch's backend."""
import itertools

import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

FORMATS = {2: torch.channels_last, 3: torch.channels_last_3d}
KINDS = ["dense", "grouped", "depthwise", "pointwise", "big_kernel", "transpose"]


def _case(dims, kind, batch, channels, size, dtype, input_format, weight_format):
    spatial = (size,) * dims
    x = torch.randn(*((batch,) if batch else ()), channels, *spatial, dtype=dtype)
    k = {"pointwise": 1, "big_kernel": 5}.get(kind, 3)
    k = min(k, size)
    groups = {"grouped": 2, "depthwise": channels}.get(kind, 1)
    if kind == "transpose":
        w = torch.randn(channels, 4, *(k,) * dims, dtype=dtype)
    else:
        w = torch.randn(8, channels // groups, *(k,) * dims, dtype=dtype)
    if input_format and batch:
        x = x.to(memory_format=FORMATS[dims])
    if weight_format:
        w = w.to(memory_format=FORMATS[dims])
    name = f"conv_transpose{dims}d" if kind == "transpose" else f"conv{dims}d"
    kwargs = {} if kind == "transpose" else {"groups": groups}
    return name, x, w, kwargs


@pytest.mark.parametrize("dims,kind", list(itertools.product([2, 3], KINDS)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("threads", [1, 2])
def test_result_strides_match_torch(dims, kind, dtype, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for batch, channels, size, input_format, weight_format in itertools.product(
                [0, 1, 2], [4], [1, 6], [False, True], [False, True]):
            if kind == "depthwise" and size == 1:
                # torch's slow paths compute groups apart and concatenate: the strides of the
                # size-1 dims of a 1x1 result then depend on its backend choice.
                continue
            name, x, w, kwargs = _case(dims, kind, batch, channels, size, dtype, input_format,
                                       weight_format)
            expected = getattr(F, name)(x, w, **kwargs)
            got = getattr(CF, name)(x, w, **kwargs)
            assert got.stride() == expected.stride(), (
                f"{name} batch {batch} size {size} input_cl {input_format} "
                f"weight_cl {weight_format}: torch {expected.stride()}, ours {got.stride()}")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("weight_format", [False, True])
def test_fake_result_strides_match_real(dims, weight_format):
    from torch._subclasses.fake_tensor import FakeTensorMode

    name, x, w, kwargs = _case(dims, "dense", 2, 4, 6, torch.float32, False, weight_format)
    args = ([1] * dims, [0] * 2 * dims, [1] * dims, 1)  # stride, padding (before, after), ...
    real = torch.ops.convpool.conv(x, w, None, *args)
    with FakeTensorMode() as mode:
        fake = torch.ops.convpool.conv(mode.from_tensor(x), mode.from_tensor(w), None, *args)
    assert fake.stride() == real.stride()
