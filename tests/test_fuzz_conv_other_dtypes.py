"""Property-based tests of the complex and integer convolutions (functional/_conv_other_dtypes.py)
against torch: the shapes and arguments of test_fuzz_conv.py's cases (dims 1-3, stride, padding,
dilation, groups, output_padding, layouts, unbatched inputs, empty batches) in complex128,
complex64 and the five integer dtypes. Where torch raises, ours raises the same type; integer
results are exactly torch's (wrapping around as torch's do), complex ones within rounding, with
every gradient in complex128."""
import torch
import torch.nn.functional as F
from fuzz_support import compare, leaves, outcome, per_dim, same_error_type
from hypothesis import assume, event, given
from hypothesis import strategies as st
from test_fuzz_conv import conv_case

import torch_convpool.functional as CF

INTEGER_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8]


def _conv_args(case):
    if case["output_padding"] is not None:
        return (case["stride"], case["padding"], case["output_padding"], case["groups"],
                case["dilation"])
    return case["stride"], case["padding"], case["dilation"], case["groups"]


def _functions(case):
    dims = case["dims"]
    name = f"conv_transpose{dims}d" if case["output_padding"] is not None else f"conv{dims}d"
    return getattr(CF, name), getattr(F, name)


def _strided_same(case):
    return case["padding"] == "same" and any(s != 1 for s in per_dim(case["stride"], case["dims"]))


def _as_complex(t, dtype):
    """t + i * (t reversed along its last dim), in t's layout where it is dense."""
    return None if t is None else torch.complex(t, t.flip(-1)).to(dtype)


def _as_integer(t, dtype):
    """Small integers from t (in [0, 6] for uint8), so that the narrow types wrap only rarely."""
    if t is None:
        return None
    values = (t * 2).round().clamp(-3, 3)
    return (values + 3 if dtype == torch.uint8 else values).to(dtype)


@given(st.booleans().flatmap(conv_case), st.sampled_from([torch.complex128, torch.complex64]))
def test_complex_conv_matches_torch(case, dtype):
    assume(not _strided_same(case))
    ours_fn, theirs_fn = _functions(case)
    args = _conv_args(case)
    x, w, b = (_as_complex(case[k], dtype) for k in ("x", "w", "b"))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.complex128 else dict(rtol=1e-4, atol=1e-4)
    if dtype == torch.complex128:
        leaves((x, w, b))
    compare(lambda x, w, b: ours_fn(x, w, b, *args), lambda x, w, b: theirs_fn(x, w, b, *args),
            (x, w, b), **tol)


@given(st.booleans().flatmap(conv_case), st.sampled_from(INTEGER_DTYPES))
def test_integer_conv_matches_torch(case, dtype):
    assume(not _strided_same(case))
    ours_fn, theirs_fn = _functions(case)
    args = _conv_args(case)
    x, w, b = (_as_integer(case[k], dtype) for k in ("x", "w", "b"))
    expected, theirs_error = outcome(lambda: theirs_fn(x, w, b, *args))
    got, ours_error = outcome(lambda: ours_fn(x, w, b, *args))
    if theirs_error is not None:
        same_error_type(ours_error, theirs_error, "forward")
        event(f"both raise {type(theirs_error).__name__}")
        return
    assert ours_error is None, f"torch answered, ours raised {ours_error!r}"
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected)
    event("same answer")
