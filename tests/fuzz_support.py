"""Shared pieces of the property-based tests (test_fuzz_*.py): strategies for shapes, layouts and
arguments, and the one comparison every family makes against torch.

The contract checked: where torch raises, ours raises an exception of the same type; where torch
answers, ours answers the same (float64, tight tolerances), forward and every gradient."""
from __future__ import annotations

import warnings

import torch
from hypothesis import event
from hypothesis import strategies as st
from torch.testing import assert_close

LAYOUTS = ["contiguous", "channels_last", "strided", "permuted"]


def apply_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values in another memory layout (a fresh leaf, so it can require grad)."""
    x = x.detach()
    if layout == "channels_last" and x.dim() in (4, 5):
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else
                            torch.channels_last_3d)
    if layout == "strided" and x.dim() >= 1:  # every other element of a wider buffer
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if layout == "permuted" and x.dim() >= 2:  # the first two dims swapped in memory
        return x.transpose(0, 1).contiguous().transpose(0, 1)
    return x.clone()


@st.composite
def tensors(draw, shape, layout=None):
    """A float64 tensor of `shape` in a drawn layout, values N(0, 1) from a drawn seed."""
    seed = draw(st.integers(0, 2**31 - 1))
    layout = layout or draw(st.sampled_from(LAYOUTS))
    g = torch.Generator().manual_seed(seed)
    return apply_layout(torch.randn(*shape, generator=g, dtype=torch.float64), layout)


def size_arg(draw, dims, lo, hi):
    """An int or a per-dim tuple, as users write them."""
    if draw(st.booleans()):
        return draw(st.integers(lo, hi))
    return tuple(draw(st.integers(lo, hi)) for _ in range(dims))


def per_dim(value, dims):
    return [value] * dims if isinstance(value, int) else list(value)


def outcome(fn):
    """(result, None) or (None, exception)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(), None
    except Exception as e:  # noqa: BLE001  (the type is compared with ours)
        return None, e


def same_error_type(ours_error, theirs_error, what):
    assert ours_error is not None, f"{what}: torch raised {theirs_error!r}, ours answered"
    assert isinstance(ours_error, type(theirs_error)), (
        f"{what}: torch raised {type(theirs_error).__name__}({theirs_error}), ours raised "
        f"{type(ours_error).__name__}({ours_error})")


def leaves(tensors_):
    return [t.requires_grad_() for t in tensors_ if t is not None]


def compare(*args, **kwargs):
    """See _compare; records the outcome ("error" / "answer") in hypothesis' statistics."""
    result = _compare(*args, **kwargs)
    event(result)
    return result


def _compare(ours, theirs, inputs, *, rtol, atol, grad_mask=None, reference_grads=None,
            index_mask=None):
    """Runs ours(*inputs) and theirs(*inputs) (each returns a tensor or (tensor, indices)) and
    checks the contract. `grad_mask` zeroes the output gradient where torch's backward must not
    run; `reference_grads(outputs, grad)` replaces torch's backward altogether."""
    theirs_out, theirs_error = outcome(lambda: theirs(*inputs))
    ours_out, ours_error = outcome(lambda: ours(*inputs))
    if theirs_error is not None:
        same_error_type(ours_error, theirs_error, "forward")
        return f"both raise {type(theirs_error).__name__}"
    assert ours_error is None, f"torch answered, ours raised {ours_error!r}"
    if isinstance(theirs_out, tuple):
        (out, idx), (expected, expected_idx) = ours_out, theirs_out
        keep = index_mask if index_mask is not None else torch.ones_like(idx, dtype=torch.bool)
        assert torch.equal(idx[keep], expected_idx[keep]), "indices differ"
    else:
        out, expected = ours_out, theirs_out
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert_close(out, expected, rtol=rtol, atol=atol, equal_nan=True)
    diff = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    if not diff or expected.numel() == 0 and not out.requires_grad:
        return "same answer (forward only)"
    g = torch.randn_like(expected)
    if grad_mask is not None:
        g = g * grad_mask
    got, got_error = outcome(lambda: torch.autograd.grad(out, diff, g, allow_unused=True))
    if reference_grads is not None:
        want, want_error = reference_grads(g), None
    else:
        want, want_error = outcome(lambda: torch.autograd.grad(expected, diff, g, allow_unused=True))
    if want_error is not None:
        same_error_type(got_error, want_error, "backward")
        return f"backward: both raise {type(want_error).__name__}"
    assert got_error is None, f"torch's backward answered, ours raised {got_error!r}"
    for i, (a, e) in enumerate(zip(got, want)):
        if e is None:
            assert a is None or not a.abs().any()
            continue
        assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m: f"gradient of input {i}: {m}")
    return "same answer and gradients"
