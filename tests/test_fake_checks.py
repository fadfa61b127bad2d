"""The fake (meta) kernels run the real kernels' shape and argument checks: a meta tensor is
rejected exactly where a CPU tensor is, with the same message, and otherwise gets the same
result shape. Random sizes around the edges (empty dims, kernels larger than the input, output
sizes of 0)."""
import itertools
import random

import pytest
import torch
import torch.nn.functional as F

import torch_convpool.functional as CF


def _call(name, dims, x, rng_args):
    k, s, p, dil, ceil_mode = rng_args
    if name == "max_pool":
        return getattr(CF, f"max_pool{dims}d")(x, k, s, p, dil, ceil_mode=ceil_mode)
    if name == "avg_pool":
        return getattr(CF, f"avg_pool{dims}d")(x, k, s, p, ceil_mode=ceil_mode)
    if name.startswith("adaptive"):
        return getattr(CF, f"{name}{dims}d")(x, [v - 1 for v in k])
    channels = max(x.shape[1], 1)
    if name == "conv":
        w = torch.zeros([3, channels] + k, device=x.device)
        return getattr(CF, f"conv{dims}d")(x, w, None, s, p, dil)
    w = torch.zeros([channels, 3] + k, device=x.device)
    return getattr(CF, f"conv_transpose{dims}d")(x, w, None, s, p, 0, 1, dil)


def _outcome(fn):
    try:
        return tuple(fn().shape)
    except Exception as e:  # noqa: BLE001 (the outcome is the exception itself)
        return type(e).__name__, str(e)


@pytest.mark.parametrize("name", ["max_pool", "avg_pool", "adaptive_max_pool",
                                  "adaptive_avg_pool", "conv", "conv_transpose"])
def test_meta_outcome_equals_cpu_outcome(name):
    rng = random.Random(name)
    for _ in range(150):
        dims = rng.choice([1, 2, 3])
        shape = [rng.choice([0, 1, 2]), rng.choice([0, 2])] + [rng.randint(0, 5)
                                                                for _ in range(dims)]
        args = ([rng.randint(1, 4) for _ in range(dims)], [rng.randint(1, 3) for _ in range(dims)],
                [rng.randint(0, 2) for _ in range(dims)], [rng.randint(1, 2) for _ in range(dims)],
                rng.random() < 0.5)
        x = torch.randn(shape)
        cpu = _outcome(lambda: _call(name, dims, x, args))
        meta = _outcome(lambda: _call(name, dims, x.to("meta"), args))
        assert meta == cpu, (shape, args)


@pytest.mark.parametrize("batch,channels,length",
                         list(itertools.product([0, 1], [0, 2], [0, 1, 3])))
def test_conv_transpose_of_empty_inputs_as_torch(batch, channels, length):
    # torch gives an empty batch its output shape where that is >= 0, never a negative one
    for k, s, p, op in itertools.product([1, 2, 3], [1, 2], [0, 1, 2], [0, 1]):
        if op >= s:
            continue
        x = torch.randn(batch, channels, length)
        w = torch.zeros(channels, 3, k)
        want = _outcome(lambda: F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op))
        got = _outcome(lambda: CF.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op))
        assert type(got) is type(want) and got[0] == want[0], (k, s, p, op, want, got)
