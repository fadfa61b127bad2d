"""Reliability of every op: several Python threads at once, bitwise determinism (across runs and
across thread counts), NaN and inf as torch treats them, no memory growth over many iterations,
and tensors of more than 2^31 elements (slow: `pytest --run-slow`)."""
import gc
import os
import threading

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool.functional as CF


def _conv(d, transpose=False):
    """Grouped (2 groups), strided, padded; conv_transpose with output_padding."""
    name = f"conv_transpose{d}d" if transpose else f"conv{d}d"
    w_shape = (4, 3, *[3] * d) if transpose else (6, 2, *[3] * d)
    kw = dict(stride=2, padding=1, groups=2, **(dict(output_padding=1) if transpose else {}))

    def make(g):
        return [torch.randn(*shape, generator=g, dtype=torch.float64)
                for shape in ((2, 4, *[7, 6, 5][:d]), w_shape, (6,))]

    return name, make, lambda fn, x, w, b: fn(x, w, b, **kw)


def _pool(name, d, **kw):
    def make(g):
        return [torch.randn(2, 3, *[9, 8, 7][:d], generator=g, dtype=torch.float64)]
    return f"{name}{d}d", make, lambda fn, x: fn(x, **kw)


def _unpool(d):
    def make(g):
        x = torch.randn(2, 3, *[8, 6, 4][:d], generator=g, dtype=torch.float64)
        pooled, idx = F.__dict__[f"max_pool{d}d"](x, 2, return_indices=True)
        return [pooled, idx]
    return f"max_unpool{d}d", make, lambda fn, p, idx: fn(p, idx, 2)


# Every op of the library: (name, inputs from a generator, call(fn, *inputs)).
OPS = [
    *[_conv(d) for d in (1, 2, 3)],
    *[_conv(d, transpose=True) for d in (1, 2, 3)],
    *[_pool("max_pool", d, kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
      for d in (1, 2, 3)],
    *[_pool("avg_pool", d, kernel_size=3, stride=2, padding=1, ceil_mode=True,
            count_include_pad=False) for d in (1, 2, 3)],
    *[_pool("adaptive_avg_pool", d, output_size=4) for d in (1, 2, 3)],
    *[_pool("adaptive_max_pool", d, output_size=4) for d in (1, 2, 3)],
    *[_unpool(d) for d in (1, 2, 3)],
]
IDS = [op[0] for op in OPS]


def run(op, fn_module, inputs, grad_seed=1):
    """Forward and every gradient (as a flat list of tensors) of op on `inputs`."""
    name, _, call = op
    leaves = [t.detach().clone().requires_grad_() if t.is_floating_point() else t for t in inputs]
    out = call(fn_module.__dict__[name], *leaves)
    diff = [t for t in leaves if t.requires_grad]
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=out.dtype)
    return [out.detach(), *torch.autograd.grad(out, diff, g)]


def inputs_of(op, seed=0):
    return op[1](torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_matches_torch_forward_and_gradients(op):
    inputs = inputs_of(op)
    for a, e in zip(run(op, CF, inputs), run(op, F, inputs)):
        assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op", OPS, ids=IDS)
def test_bitwise_deterministic_across_runs_and_thread_counts(op):
    inputs = inputs_of(op)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first, second = run(op, CF, inputs), run(op, CF, inputs)
        torch.set_num_threads(1)
        single = run(op, CF, inputs)
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(first, second, single):
        assert torch.equal(a, b), "two runs differ"
        assert torch.equal(a, c), "1 and 2 threads differ"


def test_concurrent_python_threads_give_correct_results():
    """Every op from 4 Python threads at once (each also using ATen's intra-op threads), each
    result bitwise equal to the one computed alone."""
    expected = {op[0]: run(op, CF, inputs_of(op)) for op in OPS}
    failures = []

    def worker(k):
        try:
            for repeat in range(3):
                for op in OPS[k % 2::2] if repeat % 2 else OPS:
                    got = run(op, CF, inputs_of(op))
                    if not all(torch.equal(a, b) for a, b in zip(got, expected[op[0]])):
                        failures.append(f"{op[0]} in thread {k}")
        except Exception as e:  # noqa: BLE001  (reported below, not lost in the thread)
            failures.append(f"thread {k}: {e!r}")

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not failures, failures


@pytest.mark.parametrize("op", OPS, ids=IDS)
@pytest.mark.parametrize("where", ["input", "weight"])
def test_nan_and_inf_as_torch(op, where):
    inputs = inputs_of(op)
    position = 0 if where == "input" else 1
    if position >= len(inputs) or not inputs[position].is_floating_point():
        pytest.skip("no weight")
    t = inputs[position].clone()
    flat = t.view(-1)
    flat[::7] = float("nan")
    flat[3::11] = float("inf")
    flat[5::13] = -float("inf")
    inputs[position] = t
    for a, e in zip(run(op, CF, inputs), run(op, F, inputs)):
        assert_close(a, e, rtol=1e-10, atol=1e-10, equal_nan=True)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(os.environ.get("CONVPOOL_SANITIZE") == "1",
                    reason="ASan's quarantine holds freed memory: RSS grows by design")
def test_no_memory_growth_over_1000_iterations():
    x = torch.randn(2, 3, 12, 12, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)

    def step():
        y = CF.conv2d(x, w, None, 1, 1)
        y = CF.max_pool2d(y, 2) + CF.avg_pool2d(y, 2) + CF.adaptive_avg_pool2d(y, 6)
        y = CF.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1)
        y.square().sum().backward()

    for _ in range(100):  # warm-up: allocator caches, lazy initialisation
        step()
    gc.collect()
    before = _rss_bytes()
    for _ in range(1000):
        step()
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1000 iterations"


@pytest.mark.slow
def test_more_than_2_to_the_31_elements():
    """max_pool1d (indices too) and avg_pool1d over one plane of 2^31 + 64 float16 elements:
    every offset and index past 2^31 must be 64-bit. ~16 GB peak: the max-pool line kernel keeps
    per-line running maxima and indices as large as the (single, 2^29-long) output line."""
    n = 2**31 + 64
    x = torch.empty(1, 1, n, dtype=torch.float16)
    for start in range(0, n, 1 << 26):  # in chunks: no float32 temporary of the whole signal
        x[0, 0, start:start + (1 << 26)].uniform_(-1, 1)
    x[0, 0, -3] = 100.0  # the maximum of the last window [n - 4, n)
    out, idx = CF.max_pool1d(x, 4, 4, return_indices=True)
    assert out.shape == (1, 1, n // 4)
    assert idx[0, 0, -1].item() == n - 3 and out[0, 0, -1].item() == 100.0
    tail = x[..., -4096:]
    expected, expected_idx = F.max_pool1d(tail, 4, 4, return_indices=True)
    assert torch.equal(out[..., -1024:], expected)
    assert torch.equal(idx[..., -1024:], expected_idx + (n - 4096))
    del out, idx
    avg = CF.avg_pool1d(x, 4, 4)
    assert torch.equal(avg[..., -1024:], F.avg_pool1d(tail, 4, 4))
