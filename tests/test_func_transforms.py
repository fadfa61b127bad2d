"""torch.func transforms over our convolutions: grad, vjp, jacrev, hessian and per-sample
gradients (vmap of grad) equal torch's. Our op's C++ autograd cannot run inside them, so the
functional API computes the same convolution tap by tap in tensor operations there
(functional/_conv_taps.py)."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jacrev, vjp, vmap
from torch.testing import assert_close

import torch_convpool.functional as CF

CASES = list(itertools.product(
    [1, 2, 3],                        # dims
    [False, True],                    # transposed
    [(1, 0, 1, 1), (2, 1, 2, 2), (3, 2, 1, 1)],  # stride, padding, dilation, groups
))


def _fn(lib, transposed, dims):
    return getattr(lib, f"conv_transpose{dims}d" if transposed else f"conv{dims}d")


def _case(dims, transposed, groups, dtype=torch.float64):
    x = torch.randn((2, 4) + (5,) * dims, dtype=dtype)
    w = torch.randn(((4, 6 // groups) if transposed else (6, 4 // groups)) + (3,) * dims,
                    dtype=dtype)
    return x, w, torch.randn(6, dtype=dtype)


def _kwargs(transposed, stride, padding, dilation, groups):
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if transposed and stride > 1:
        kw["output_padding"] = 1
    return kw


@pytest.mark.parametrize("dims,transposed,args", CASES)
def test_grad_and_per_sample_grad_match_torch(dims, transposed, args):
    x, w, b = _case(dims, transposed, args[3])
    kw = _kwargs(transposed, *args)

    def loss(lib):
        return lambda w, b, x: _fn(lib, transposed, dims)(x, w, b, **kw).pow(2).sum()

    for argnums in (0, 1, 2):
        assert_close(grad(loss(CF), argnums)(w, b, x), grad(loss(F), argnums)(w, b, x))
    per_sample = vmap(grad(loss(CF)), in_dims=(None, None, 0))
    expected = vmap(grad(loss(F)), in_dims=(None, None, 0))
    assert_close(per_sample(w, b, x[:, None]), expected(w, b, x[:, None]))


@pytest.mark.parametrize("transposed", [False, True])
def test_vjp_jacrev_hessian_match_torch(transposed):
    x, w, b = _case(2, transposed, 2)
    x = x[:1, :, :4, :4]
    kw = _kwargs(transposed, 2, 1, 1, 2)
    ours = lambda x, w: _fn(CF, transposed, 2)(x, w, b, **kw)  # noqa: E731
    theirs = lambda x, w: _fn(F, transposed, 2)(x, w, b, **kw)  # noqa: E731
    out, pull = vjp(ours, x, w)
    want, pull_want = vjp(theirs, x, w)
    assert_close(out, want)
    cotangent = torch.randn_like(out)
    for a, e in zip(pull(cotangent), pull_want(cotangent)):
        assert_close(a, e)
    assert_close(jacrev(ours, argnums=(0, 1))(x, w), jacrev(theirs, argnums=(0, 1))(x, w))
    small = x[:, :, :2, :2]
    assert_close(hessian(lambda x: ours(x, w).pow(3).sum())(small),
                 hessian(lambda x: theirs(x, w).pow(3).sum())(small))


def test_transforms_keep_torch_errors_and_dtypes():
    x, w, _ = _case(2, False, 1)
    with pytest.raises(RuntimeError, match="kernel size can't be greater"):
        grad(lambda w: CF.conv2d(x[:, :, :2], w).sum())(w)
    with pytest.raises(RuntimeError, match="should be the same"):
        grad(lambda w: CF.conv2d(x.float(), w).sum())(w)
    c = torch.randn(1, 4, 5, 5, dtype=torch.complex128)
    wc = torch.randn(6, 4, 3, 3, dtype=torch.complex128)
    assert_close(vjp(lambda w: CF.conv2d(c, w), wc)[1](torch.ones(1, 6, 3, 3,
                                                                  dtype=torch.complex128))[0],
                 vjp(lambda w: F.conv2d(c, w), wc)[1](torch.ones(1, 6, 3, 3,
                                                                 dtype=torch.complex128))[0])


POOLS = [  # (name, dims, kwargs)
    ("max_pool", 1, dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool", 2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool", 2, dict(kernel_size=2, dilation=2)),
    ("max_pool", 3, dict(kernel_size=2, stride=1, padding=1)),
    ("avg_pool", 1, dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool", 2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                         count_include_pad=False)),
    ("avg_pool", 2, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool", 2, dict(kernel_size=2, divisor_override=3)),
    ("avg_pool", 3, dict(kernel_size=2, stride=1, padding=1)),
    ("adaptive_avg_pool", 1, dict(output_size=3)),
    ("adaptive_avg_pool", 2, dict(output_size=(3, 7))),
    ("adaptive_avg_pool", 3, dict(output_size=(2, 1, 3))),
    ("adaptive_max_pool", 1, dict(output_size=4)),
    ("adaptive_max_pool", 2, dict(output_size=(3, 2))),
    ("adaptive_max_pool", 3, dict(output_size=2)),
]


@pytest.mark.parametrize("name,dims,kw", POOLS)
def test_pooling_under_transforms_matches_torch(name, dims, kw):
    x = torch.randn((3, 2) + (7, 6, 5)[:dims], dtype=torch.float64)

    def loss(lib):
        return lambda x: getattr(lib, f"{name}{dims}d")(x, **kw).pow(2).sum()

    assert_close(grad(loss(CF))(x), grad(loss(F))(x))
    assert_close(vmap(grad(loss(CF)))(x), vmap(grad(loss(F)))(x))  # per sample (unbatched)
    if "max" in name:
        fn = f"{name}{dims}d"
        got = vmap(lambda x: getattr(CF, fn)(x, **kw, return_indices=True))(x)
        want = vmap(lambda x: getattr(F, fn)(x, **kw, return_indices=True))(x)
        for a, e in zip(got, want):
            assert_close(a, e)
        # max_unpool of those indices, differentiated through
        if name == "max_pool":
            values, indices = want
            unpool = lambda lib: lambda v, i: getattr(lib, f"max_unpool{dims}d")(  # noqa: E731
                v, i, kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                output_size=x.shape[2:]).pow(2).sum()
            if kw.get("dilation", 1) == 1 and not kw.get("ceil_mode", False):
                assert_close(vmap(grad(unpool(CF)))(values, indices),
                             vmap(grad(unpool(F)))(values, indices))


def test_cnn_per_sample_gradients_match_torch():
    from torch.func import functional_call

    import torch_convpool as tc
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 4)).double()
    ours = tc.convert(theirs)
    params = {k: v.detach() for k, v in theirs.named_parameters()}
    x = torch.randn(5, 3, 12, 12, dtype=torch.float64)

    def per_sample(model):
        loss = lambda p, xi: functional_call(model, p, (xi[None],)).pow(2).sum()  # noqa: E731
        return vmap(grad(loss), in_dims=(None, 0))(params, x)

    got, want = per_sample(ours), per_sample(theirs)
    for k in want:
        assert_close(got[k], want[k])
