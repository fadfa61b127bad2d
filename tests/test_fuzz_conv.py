"""Property-based tests of conv{1,2,3}d and conv_transpose{1,2,3}d against torch (hypothesis):
random shapes, strides, padding (wider than the input too, 'same', 'valid'), dilation, groups,
output_padding, bias, memory layouts, batched and unbatched inputs, an empty batch. Forward and
the gradients of input, weight and bias in float64; where torch raises, ours raises the same type.
Through the public functional API, each example under a drawn CPU algorithm (set_conv_algorithm:
auto, the GEMM engine, Winograd where it applies, im2col); a dedicated test draws the 3x3 stride-1
shapes Winograd computes, at its edges."""
import pytest
import reference
import torch.nn.functional as F
from fuzz_support import compare, leaves, per_dim, size_arg, tensors
from hypothesis import given
from hypothesis import strategies as st

import torch_convpool as tc
import torch_convpool.functional as CF

TOL = dict(rtol=1e-10, atol=1e-10)


@st.composite
def conv_case(draw, transpose):
    dims = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    if draw(st.integers(0, 19)) == 0:  # now and then a channel count torch rejects
        cin += 1
    batched = draw(st.booleans())
    batch = draw(st.sampled_from([1, 2, 2, 0])) if batched else None
    spatial = [draw(st.integers(1, 6 if dims < 3 else 4)) for _ in range(dims)]
    kernel = [draw(st.integers(1, 4 if dims < 3 else 3)) for _ in range(dims)]
    stride = size_arg(draw, dims, 1, 3)
    dilation = size_arg(draw, dims, 1, 3)
    if transpose:
        padding = size_arg(draw, dims, 0, 4)
        # Mostly output_padding < stride (valid); now and then anything up to 3.
        output_padding = (size_arg(draw, dims, 0, 3) if draw(st.integers(0, 4)) == 0 else
                          [draw(st.integers(0, s - 1)) for s in per_dim(stride, dims)])
        w_shape = (cin, cout // groups, *kernel)
    else:
        padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 5),
                                 st.tuples(*[st.integers(0, 5)] * dims)))
        output_padding = None
        w_shape = (cout, cin // groups if cin % groups == 0 else cin, *kernel)
    x_shape = ((batch,) if batched else ()) + (cin, *spatial)
    x = draw(tensors(x_shape))
    w = draw(tensors(w_shape))
    b = draw(tensors((cout,))) if draw(st.booleans()) else None
    return dict(dims=dims, x=x, w=w, b=b, stride=stride, padding=padding, dilation=dilation,
                groups=groups, output_padding=output_padding, algorithm=draw(ALGORITHMS))


ALGORITHMS = st.sampled_from(list(tc.algorithms.CONV_ALGORITHMS))


@given(conv_case(transpose=False))
def test_conv_matches_torch(case):
    dims, stride, padding, dilation, groups = (case[k] for k in ("dims", "stride", "padding",
                                                                 "dilation", "groups"))
    ours_fn = CF.__dict__[f"conv{dims}d"]
    strided_same = padding == "same" and any(s != 1 for s in per_dim(stride, dims))
    # 'same' with a stride is ours beyond torch: TensorFlow's rule written out in reference.py.
    theirs_fn = reference.conv if strided_same else F.__dict__[f"conv{dims}d"]
    x, w, b = case["x"], case["w"], case["b"]
    leaves((x, w, b))
    with tc.set_conv_algorithm(case["algorithm"]):
        compare(lambda x, w, b: ours_fn(x, w, b, stride, padding, dilation, groups),
                lambda x, w, b: theirs_fn(x, w, b, stride, padding, dilation, groups),
                (x, w, b), **TOL)


@given(conv_case(transpose=True))
def test_conv_transpose_matches_torch(case):
    dims = case["dims"]
    args = (case["stride"], case["padding"], case["output_padding"], case["groups"],
            case["dilation"])
    x, w, b = case["x"], case["w"], case["b"]
    leaves((x, w, b))
    with tc.set_conv_algorithm(case["algorithm"]):
        compare(lambda x, w, b: CF.__dict__[f"conv_transpose{dims}d"](x, w, b, *args),
                lambda x, w, b: F.__dict__[f"conv_transpose{dims}d"](x, w, b, *args),
                (x, w, b), **TOL)


@given(data=st.data())
def test_winograd_shapes_match_torch(data):
    """3x3 (or 1x3x3) stride-1 convs and their transposes, where F(4x4, 3x3) computes the forward
    and both gradients: outputs that are not a multiple of the 4x4 tile, channel counts across the
    vector width, padding wider than a tile's overlap, both layouts, batch 1 and unbatched; larger
    kernels (3x3 blocks of taps) and dilations (phases tiled on their own)."""
    dims = data.draw(st.sampled_from([2, 2, 3]))
    cin, cout = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 20))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = ([data.draw(st.integers(1, 3))] if dims == 3 else []) + [
        data.draw(st.integers(1, 13)) for _ in range(2)]
    kernel = ([1] if dims == 3 else []) + list(data.draw(st.sampled_from([(3, 3), (3, 3), (5, 5),
                                                                         (3, 5)])))
    padding = tuple(([0] if dims == 3 else []) + [data.draw(st.integers(0, 4)) for _ in range(2)])
    dilation = tuple(([1] if dims == 3 else []) + [data.draw(st.sampled_from([1, 1, 2, 3]))
                                                   for _ in range(2)])
    transpose = data.draw(st.booleans())
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial)))
    w = data.draw(tensors((cin, cout, *kernel) if transpose else (cout, cin, *kernel)))
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    name = f"conv_transpose{dims}d" if transpose else f"conv{dims}d"
    with tc.set_conv_algorithm("winograd"):
        compare(lambda x, w, b: CF.__dict__[name](x, w, b, 1, padding, dilation=dilation),
                lambda x, w, b: F.__dict__[name](x, w, b, 1, padding, dilation=dilation), (x, w, b),
                **TOL)


@given(data=st.data())
def test_winograd_strided_transpose_phases(data):
    """Strided conv_transposes whose phases read input offsets -1..1 (4x4 stride 2 padding 1, 8x8
    stride 4 padding 2): one 3x3 Winograd conv with interleaved outputs where the output channels
    fill whole vectors and the phases tile the output; the neighbours (output_padding, other
    padding, 3x3 stride 2, other channel counts) by the GEMM engine."""
    kernel, stride, padding = data.draw(st.sampled_from([(4, 2, 1), (4, 2, 1), (8, 4, 2), (4, 2, 0),
                                                         (3, 2, 1)]))
    cin, cout = data.draw(st.integers(1, 20)), data.draw(st.sampled_from([8, 16, 5]))
    batch = data.draw(st.sampled_from([None, 1, 2]))
    spatial = [data.draw(st.integers(1, 9)) for _ in range(2)]
    output_padding = data.draw(st.sampled_from([0, 0, stride - 1]))
    x = data.draw(tensors(((batch,) if batch else ()) + (cin, *spatial)))
    w = data.draw(tensors((cin, cout, kernel, kernel)))
    b = data.draw(tensors((cout,)))
    leaves((x, w, b))
    args = (stride, padding, output_padding)
    with tc.set_conv_algorithm(data.draw(st.sampled_from(["winograd", "auto"]))):
        compare(lambda x, w, b: CF.conv_transpose2d(x, w, b, *args),
                lambda x, w, b: F.conv_transpose2d(x, w, b, *args), (x, w, b), **TOL)


@pytest.mark.parametrize("dims", [1, 2, 3])
@given(data=st.data())
def test_conv_wide_padding_with_dilation(dims, data):
    """The ground of the SIGSEGV of issue 10, searched densely: padding at least the input's
    length, dilation > 1, several input channels per group."""
    groups = data.draw(st.integers(1, 2))
    cin = groups * data.draw(st.integers(2, 3))
    spatial = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    padding = tuple(data.draw(st.integers(n, n + 3)) for n in spatial)
    dilation = size_arg(data.draw, dims, 2, 4)
    kernel = [data.draw(st.integers(2, 3)) for _ in range(dims)]
    stride = size_arg(data.draw, dims, 1, 3)
    x = data.draw(tensors((2, cin, *spatial)))
    w = data.draw(tensors((2, cin // groups, *kernel)))
    leaves((x, w))
    compare(lambda x, w: CF.__dict__[f"conv{dims}d"](x, w, None, stride, padding, dilation, groups),
            lambda x, w: F.__dict__[f"conv{dims}d"](x, w, None, stride, padding, dilation, groups),
            (x, w), **TOL)
