"""Property-based tests of the pooling family against torch (hypothesis): max, average, adaptive
average / max and max unpooling, 1-d to 3-d, random shapes, kernel, stride, padding (also wider
than allowed, 'same', 'valid'), dilation, ceil_mode, count_include_pad, divisor_override, output
sizes, return_indices, memory layouts, batched and unbatched inputs, an empty batch. Forward
(values and indices) and the input gradient in float64; where torch raises, ours raises the same
exception type."""
import reference
import torch
import torch.nn.functional as F
from fuzz_support import compare, leaves, per_dim, size_arg, tensors
from hypothesis import given
from hypothesis import strategies as st

import torch_convpool.functional as CF

EXACT = dict(rtol=0, atol=0)
TOL = dict(rtol=1e-12, atol=1e-12)


@st.composite
def pool_input(draw, max_len=7):
    dims = draw(st.integers(1, 3))
    batched = draw(st.booleans())
    batch = (draw(st.sampled_from([1, 2, 2, 0])),) if batched else ()
    spatial = [draw(st.integers(1, max_len if dims < 3 else 5)) for _ in range(dims)]
    x = draw(tensors((*batch, draw(st.integers(1, 3)), *spatial)))
    return dims, x


def max_pool_reference_grads(x, dims, indices, keep):
    """The input gradient of max pooling from torch's indices, credited only where `keep`: what
    torch's backward computes, without running it on windows it mishandles (an empty window's
    out-of-plane index makes torch's CPU backward write out of bounds)."""
    def grads(g):
        n = x.shape[x.dim() - dims:].numel()
        planes = x.numel() // n if n else 0
        want = torch.zeros(planes, n, dtype=x.dtype)
        idx = indices.reshape(planes, -1)
        k = keep.expand_as(g).reshape(planes, -1)
        rows = torch.arange(planes).unsqueeze(1).expand_as(idx)
        want.index_put_((rows[k], idx[k]), g.reshape(planes, -1)[k], accumulate=True)
        return (want.view(x.shape),)
    return grads


@given(pool_input(), st.data())
def test_max_pool_matches_torch(case, data):
    dims, x = case
    draw = data.draw
    kernel = size_arg(draw, dims, 1, 4)
    stride = draw(st.one_of(st.none(), st.just(()), st.integers(1, 3),
                            st.tuples(*[st.integers(1, 3)] * dims)))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 1),
                             st.integers(0, 3), st.tuples(*[st.integers(0, 2)] * dims)))
    dilation = size_arg(draw, dims, 1, 3)
    ceil_mode = draw(st.booleans())
    return_indices = draw(st.booleans())
    ours_fn, theirs_fn = CF.__dict__[f"max_pool{dims}d"], F.__dict__[f"max_pool{dims}d"]
    if draw(st.booleans()):  # without a gradient (and indices) ours computes the values alone
        leaves([x])
    if padding == "same":
        # Beyond torch: TensorFlow's rule written out in reference.py (values and gradients;
        # the reference's indices count the padding, so they are not compared).
        s = None if stride == () else stride
        compare(lambda x: ours_fn(x, kernel, s, "same", dilation, ceil_mode),
                lambda x: reference.max_pool_same(x.contiguous(), dims, kernel, s, dilation), [x],
                **EXACT)
        return
    # 'valid' is ours beyond torch (padding 0 to it)
    torch_padding = 0 if padding == "valid" else padding
    kw = dict(kernel_size=kernel, stride=stride, padding=torch_padding, dilation=dilation,
              ceil_mode=ceil_mode, return_indices=True)
    probe, error = None, None
    try:
        probe = layout_blind(theirs_fn, torch.zeros_like(x), **kw)
    except Exception as e:  # noqa: BLE001
        error = e
    extra = {}
    if error is None and x.numel() > 0:
        # torch's forward is -inf exactly where a window holds no element (padding is -inf to it)
        keep = probe[0] != -float("inf")
        _, indices = layout_blind(theirs_fn, x.detach(), **kw)
        extra = dict(index_mask=keep)
        if not keep.all():
            extra["reference_grads"] = max_pool_reference_grads(x, dims, indices, keep)
    kw["return_indices"] = return_indices
    if not return_indices:
        extra.pop("index_mask", None)
    ours_kw = dict(kw, padding=padding)
    compare(lambda x: ours_fn(x, **ours_kw), lambda x: layout_blind(theirs_fn, x, **kw), [x],
            **EXACT, **extra)


def layout_blind(fn, x, **kw):
    """torch's max_pool3d rejects an unbatched (4-d) input whose strides look channels_last
    ("Unsupported memory format"): a layout limit, not a rule about the arguments, which ours
    does not copy; the reference then sees the same values contiguous."""
    try:
        return fn(x, **kw)
    except RuntimeError as e:
        if "Unsupported memory format" not in str(e):
            raise
        return fn(x.contiguous(), **kw)


@given(pool_input(), st.data())
def test_avg_pool_matches_torch(case, data):
    dims, x = case
    draw = data.draw
    kernel = size_arg(draw, dims, 1, 4)
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * dims)))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                             st.tuples(*[st.integers(0, 2)] * dims)))
    ceil_mode, count_include_pad = draw(st.booleans()), draw(st.booleans())
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
              count_include_pad=count_include_pad)
    if dims > 1 and padding != "same":
        kw["divisor_override"] = draw(st.sampled_from([None, None, None, 1, 3, 7, 0, -2]))
    ours_fn, theirs_fn = CF.__dict__[f"avg_pool{dims}d"], F.__dict__[f"avg_pool{dims}d"]
    leaves([x])
    if padding == "same":
        compare(lambda x: ours_fn(x, **kw),
                lambda x: reference.avg_pool_same(x.contiguous(), dims, kernel, stride), [x], **TOL)
        return
    torch_kw = dict(kw, padding=0 if padding == "valid" else padding)  # 'valid': ours only
    compare(lambda x: ours_fn(x, **kw), lambda x: theirs_fn(x, **torch_kw), [x], **TOL)


@given(pool_input(), st.data())
def test_adaptive_pool_matches_torch(case, data):
    dims, x = case
    draw = data.draw
    sizes = st.sampled_from([-1, 0] + list(range(1, 9)) * 3)
    if dims == 1:  # torch's 1-d adaptive pooling takes no None
        output_size = draw(st.one_of(sizes, st.tuples(sizes)))
    else:
        output_size = draw(st.one_of(sizes, st.tuples(*[st.one_of(sizes, st.none())] * dims)))
    kind = draw(st.sampled_from(["adaptive_avg_pool", "adaptive_max_pool"]))
    ours_fn, theirs_fn = CF.__dict__[f"{kind}{dims}d"], F.__dict__[f"{kind}{dims}d"]
    leaves([x])
    if kind == "adaptive_max_pool":
        return_indices = draw(st.booleans())
        compare(lambda x: ours_fn(x, output_size, return_indices),
                lambda x: theirs_fn(x, output_size, return_indices), [x], **EXACT)
    else:
        compare(lambda x: ours_fn(x, output_size), lambda x: theirs_fn(x, output_size), [x], **TOL)


@given(pool_input(), st.data())
def test_max_unpool_matches_torch(case, data):
    dims, x = case
    draw = data.draw
    kernel = [draw(st.integers(1, min(3, n))) for n in x.shape[-dims:]]
    stride = draw(st.one_of(st.none(), st.integers(1, 3)))
    padding = [draw(st.integers(0, k // 2)) for k in per_dim(kernel, dims)]
    try:
        pooled, indices = F.__dict__[f"max_pool{dims}d"](x, kernel, stride, padding,
                                                         return_indices=True)
    except RuntimeError:
        return  # no pooled input to unpool
    if draw(st.integers(0, 4)) == 0 and indices.numel():  # now and then a bad or repeated index
        at = torch.unravel_index(torch.tensor(draw(st.integers(0, indices.numel() - 1))),
                                 indices.shape)
        indices[at] = draw(st.integers(-2, x.shape[-1] * 4))
    ks, ss = per_dim(kernel, dims), per_dim(stride if stride is not None else kernel, dims)
    lengths = pooled.shape[-dims:]
    default = [(n - 1) * s + k - 2 * p for n, s, k, p in zip(lengths, ss, ks, padding)]
    output_size = draw(st.one_of(
        st.none(),
        st.just([d + draw(st.integers(-2, 2)) for d in default]),
        st.just(list(x.shape[-dims:]))))
    if output_size is not None and draw(st.booleans()):
        output_size = list(pooled.shape[:-dims]) + output_size  # the (N, C, ...) form
    pooled = pooled.detach().clone()
    leaves([pooled])
    args = (kernel, stride, padding, output_size)
    compare(lambda p: CF.__dict__[f"max_unpool{dims}d"](p, indices, *args),
            lambda p: single_threaded(F.__dict__[f"max_unpool{dims}d"], p, indices, *args),
            [pooled], **EXACT)


def single_threaded(fn, *args):
    """torch's CPU max_unpool splits the elements, not the planes, between threads, so which of
    two repeated indices wins depends on timing; on one thread the last wins, as in ours."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(threads)
