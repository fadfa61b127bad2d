"""The cache our large CPU outputs come from (torch_convpool.memory): reuse, limits, and that a
reused block never shows through in a result."""
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import torch_convpool as tc
import torch_convpool.functional as CF
from torch_convpool.testing import poison_outputs

# [4, 64, 64, 64] float32: 4 MiB, over the 1 MiB from which outputs are cached.
BIG = (4, 64, 64, 64)


@pytest.fixture
def fresh_cache():
    limit = tc.memory.cache_info().limit_bytes
    tc.memory.set_cache_limit(256 << 20)
    tc.memory.empty_cache()
    yield
    tc.memory.set_cache_limit(limit)


def test_a_freed_output_serves_the_next_one_of_its_size(fresh_cache):
    x = torch.randn(BIG)
    y = CF.max_pool2d(x, 3, stride=1, padding=1)
    address = y.data_ptr()
    del y
    assert tc.memory.cache_info().cached_bytes >= x.numel() * 4
    hits = tc.memory.cache_info().hits
    z = CF.max_pool2d(x, 3, stride=1, padding=1)
    assert z.data_ptr() == address
    assert tc.memory.cache_info().hits == hits + 1
    assert_close(z, F.max_pool2d(x, 3, stride=1, padding=1), rtol=0, atol=0)


def test_of_equal_blocks_the_most_recently_freed_is_reused(fresh_cache):
    # Its lines may still be in cache; the oldest have gone cold.
    x = torch.randn(BIG)
    first, second = CF.max_pool2d(x, 1), CF.max_pool2d(x, 1)
    addresses = [first.data_ptr(), second.data_ptr()]
    del first
    del second
    assert CF.max_pool2d(x, 1).data_ptr() == addresses[1]


def test_live_outputs_never_share_memory(fresh_cache):
    x = torch.randn(BIG)
    outputs = [CF.avg_pool2d(x * i, 3, stride=1, padding=1) for i in range(4)]
    assert len({o.data_ptr() for o in outputs}) == len(outputs)
    for i, o in enumerate(outputs):
        assert_close(o, F.avg_pool2d(x * i, 3, stride=1, padding=1))


@pytest.mark.parametrize("channels_last", [False, True])
def test_reused_blocks_hold_no_trace_of_earlier_tensors(fresh_cache, channels_last):
    # Without poisoning: whatever a reused block held must be overwritten by every kernel.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(BIG).to(memory_format=fmt)
    w = torch.randn(64, 64, 3, 3)
    with poison_outputs(False):
        for _ in range(2):
            garbage = CF.max_pool2d(torch.full(BIG, 1e30), 1)
            del garbage
            y = CF.conv2d(x, w, padding=1)
            assert_close(y, F.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-3)
            assert y.is_contiguous(memory_format=fmt)
            del y
            garbage = CF.max_pool2d(torch.full(BIG, -1e30), 1)
            del garbage
            p = CF.avg_pool2d(x, 2, ceil_mode=True)
            assert_close(p, F.avg_pool2d(x, 2, ceil_mode=True))


def test_a_cached_output_resizes_and_outlives_the_cache(fresh_cache):
    x = torch.randn(BIG)
    y = CF.max_pool2d(x, 1)
    expected = x.clone()
    tc.memory.empty_cache()
    assert tc.memory.cache_info().cached_bytes == 0
    assert_close(y, expected, rtol=0, atol=0)
    y.resize_(2 * x.numel())
    assert_close(y[: x.numel()].view(BIG), expected, rtol=0, atol=0)


def test_limit_zero_caches_nothing_and_the_limit_evicts_oldest_first(fresh_cache):
    x = torch.randn(BIG)
    tc.memory.set_cache_limit(0)
    y = CF.max_pool2d(x, 1)
    del y
    assert tc.memory.cache_info().cached_bytes == 0
    one_block = x.numel() * 4
    tc.memory.set_cache_limit(one_block)
    a, b = CF.max_pool2d(x, 1), CF.max_pool2d(x, 1)
    b_address = b.data_ptr()
    del a, b  # a first: the limit keeps b
    assert tc.memory.cache_info().cached_bytes == one_block
    assert CF.max_pool2d(x, 1).data_ptr() == b_address


def test_small_outputs_bypass_the_cache(fresh_cache):
    before = tc.memory.cache_info()
    y = CF.max_pool2d(torch.randn(1, 4, 16, 16), 2)
    del y
    after = tc.memory.cache_info()
    assert (after.hits, after.misses, after.cached_bytes) == (before.hits, before.misses,
                                                              before.cached_bytes)


def test_negative_limit_is_rejected():
    with pytest.raises(ValueError, match="limit_bytes"):
        tc.memory.set_cache_limit(-1)


def test_a_cached_output_moves_to_shared_memory_and_forks(fresh_cache):
    import torch.multiprocessing as mp
    x = torch.randn(BIG)
    y = CF.max_pool2d(x, 1)
    y.share_memory_()
    assert y.is_shared()
    assert_close(y, x, rtol=0, atol=0)
    del y
    # A forked child (as a DataLoader worker) uses the cache too.
    context = mp.get_context("fork")
    with context.Pool(1) as pool:
        in_child = pool.apply(_child_pools_and_sums)
    threads = torch.get_num_threads()
    try:
        assert in_child == pytest.approx(_child_pools_and_sums(), rel=1e-5)
    finally:
        torch.set_num_threads(threads)


def _child_pools_and_sums() -> float:
    torch.set_num_threads(1)  # as DataLoader workers: OpenMP's pool does not survive a fork
    torch.manual_seed(3)
    x = torch.randn(BIG)
    return float(CF.avg_pool2d(x, 3, stride=1, padding=1).double().sum())
