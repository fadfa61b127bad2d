"""torch.autocast: every op gives torch's output dtype under autocast (convolutions in the
autocast dtype, pooling following its input or, where torch's CPU autocast says so, float32),
values within the output dtype's rounding, and gradients of a model trained under autocast.

The reference is torch itself, run under the same autocast: no policy is written down here.
"""
import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

INPUT_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
SPATIAL = {1: (12,), 2: (8, 10), 3: (6, 8, 6)}


def _conv(dims, transpose):
    name = f"conv_transpose{dims}d" if transpose else f"conv{dims}d"

    def make(device, dtype):
        x = torch.randn(2, 4, *SPATIAL[dims], device=device, dtype=dtype)
        w_shape = (4, 6) if transpose else (6, 4)
        w = torch.randn(*w_shape, *([3] * dims), device=device)  # float32 parameters
        return x, w, torch.randn(6, device=device)
    kw = dict(stride=2, padding=1)
    return name, make, lambda x, w, b: getattr(CF, name)(x, w, b, **kw), \
        lambda x, w, b: getattr(F, name)(x, w, b, **kw)


def _pool(name, dims, **kw):
    def make(device, dtype):
        return (torch.randn(2, 3, *SPATIAL[dims], device=device, dtype=dtype),)
    label = name + "".join(f" {k}={v}" for k, v in kw.items() if k != "output_size")
    return label, make, lambda x: getattr(CF, name)(x, **kw), lambda x: getattr(F, name)(x, **kw)


def _unpool(dims):
    name = f"max_unpool{dims}d"

    def make(device, dtype):
        x = torch.randn(2, 3, *SPATIAL[dims], device=device)
        pooled, indices = getattr(F, f"max_pool{dims}d")(x, 2, return_indices=True)
        return pooled.to(dtype), indices
    return name, make, lambda x, i: getattr(CF, name)(x, i, 2), lambda x, i: getattr(F, name)(x, i, 2)


OPS = {}
for _dims in (1, 2, 3):
    for _op in (_conv(_dims, False), _conv(_dims, True),
                _pool(f"max_pool{_dims}d", _dims, kernel_size=2),
                _pool(f"max_pool{_dims}d", _dims, kernel_size=2, return_indices=True),
                _pool(f"avg_pool{_dims}d", _dims, kernel_size=2),
                _pool(f"adaptive_avg_pool{_dims}d", _dims, output_size=3),
                _pool(f"adaptive_max_pool{_dims}d", _dims, output_size=3),
                _pool(f"adaptive_max_pool{_dims}d", _dims, output_size=3, return_indices=True),
                _unpool(_dims)):
        OPS[_op[0]] = _op[1:]


def _run(fn, args, device, autocast_dtype):
    with torch.autocast(device, dtype=autocast_dtype):
        try:
            return fn(*args), None
        except Exception as error:  # noqa: BLE001  (compared with torch's below)
            return None, error


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _tolerance(name, args, out_dtype):
    """Elementwise bound on |ours - torch's| when both are rounded results of the same exact sum:
    2 eps of the output dtype times the sum of the magnitudes (a conv's |x| * |w| + |b|; an
    average's or a maximum's largest input)."""
    eps = torch.finfo(out_dtype).eps
    if name.startswith("conv"):
        x, w, b = (a.detach().double().abs() for a in args)
        magnitude = getattr(F, name)(x, w, b, stride=2, padding=1)
        return 2 * eps * magnitude + 1e-30
    return 2 * eps * args[0].detach().double().abs().max()


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("input_dtype", INPUT_DTYPES, ids=str)
def test_autocast_output_dtype_and_values_match_torch(device, name, input_dtype):
    make, ours, theirs = OPS[name]
    autocast_dtypes = [torch.bfloat16, torch.float16] if device == "cpu" else [torch.float16]
    for autocast_dtype in autocast_dtypes:
        args = make(device, input_dtype)
        expected, torch_error = _run(theirs, args, device, autocast_dtype)
        got, our_error = _run(ours, args, device, autocast_dtype)
        if torch_error is not None:
            assert type(our_error) is type(torch_error), (autocast_dtype, torch_error, our_error)
            continue
        assert our_error is None, (autocast_dtype, our_error)
        for g, e in zip(got if isinstance(got, tuple) else (got,),
                        expected if isinstance(expected, tuple) else (expected,)):
            assert g.dtype == e.dtype, f"autocast {autocast_dtype}: {g.dtype} vs torch's {e.dtype}"
            assert g.shape == e.shape
        g, e = _first(got), _first(expected)
        if "max_pool" in name or "unpool" in name:
            assert torch.equal(g, e)
        else:
            error = (g.double() - e.double()).abs()
            assert (error <= _tolerance(name, args, e.dtype)).all(), (autocast_dtype, error.max())


def _model_step(lib, x, x3, weights, autocast, backward_inside):
    """One training step under autocast of max pool -> conv -> conv_transpose -> avg pool and a
    max pool3d -> conv3d -> avg pool3d branch (3-d pooling is float32 under CPU autocast). The
    max pools see the float32 inputs: pooled after a rounded conv, a one-ulp difference between
    two convolutions can move a near-tie's maximum and its whole gradient."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, x3, *weights)]
    x, x3, w1, b1, w2, w3 = leaves
    with torch.autocast(x.device.type, dtype=autocast):
        y = lib.conv2d(lib.max_pool2d(x, 2), w1, b1, padding=1)
        y = lib.avg_pool2d(lib.conv_transpose2d(F.relu(y), w2, stride=2, padding=1), 2)
        z = lib.avg_pool3d(lib.conv3d(lib.max_pool3d(x3, 2, padding=1), w3), 2)
        loss = y.float().square().mean() + z.float().square().mean()
        if backward_inside:
            loss.backward()
    if not backward_inside:
        loss.backward()
    return loss.detach(), [t.grad for t in leaves], y.dtype, z.dtype


@pytest.mark.parametrize("backward_inside", [False, True])
def test_training_step_under_autocast_matches_torch(device, backward_inside):
    autocast = torch.bfloat16 if device == "cpu" else torch.float16
    x = torch.randn(4, 8, 16, 16, device=device)
    x3 = torch.randn(2, 3, 8, 8, 8, device=device)
    weights = [torch.randn(16, 8, 3, 3, device=device) / 8, torch.randn(16, device=device),
               torch.randn(16, 8, 4, 4, device=device) / 8, torch.randn(4, 3, 3, 3, 3, device=device)]
    ours = _model_step(CF, x, x3, weights, autocast, backward_inside)
    theirs = _model_step(F, x, x3, weights, autocast, backward_inside)
    assert ours[2:] == theirs[2:]  # activation dtypes
    eps = torch.finfo(autocast).eps
    torch.testing.assert_close(ours[0], theirs[0], rtol=4 * eps, atol=0)
    for g, e in zip(ours[1], theirs[1]):
        assert g.dtype == e.dtype == torch.float32
        # a few layers of rounding to the autocast dtype, each within eps of the largest entries
        assert (g - e).abs().max() <= 4 * eps * e.abs().max()


def test_autocast_compiles():
    """The autocast kernels and functional.max_pool3d's return_indices branch trace under
    torch.compile(fullgraph=True) and give the eager dtypes."""
    def f(x, w):
        y = CF.conv2d(x, w, padding=1)
        pooled, indices = CF.max_pool3d(y.unsqueeze(1), 2, return_indices=True)
        return y, CF.avg_pool3d(y.unsqueeze(1), 2), pooled, indices

    x, w = torch.randn(2, 4, 8, 8), torch.randn(4, 4, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager = f(x, w)
        compiled = torch.compile(f, fullgraph=True)(x, w)
    assert [t.dtype for t in compiled] == [t.dtype for t in eager] == [
        torch.bfloat16, torch.float32, torch.bfloat16, torch.int64]
    for c, e in zip(compiled, eager):
        torch.testing.assert_close(c, e)
