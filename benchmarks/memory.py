"""What autograd keeps for the backward: bytes of saved tensors, ours against torch's.

Per op (max pooling saves a one-byte window position per output where torch saves the input and
int64 indices) and per training step of whole torchvision models converted with
torch_convpool.convert() (the activations a step holds until its backward).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import torch_convpool
import torch_convpool.functional as CF


def saved_bytes(fn, *args) -> int:
    """Bytes of the tensors autograd saves while fn(*args) runs, each storage counted once."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return sum(storages.values())


POOL_SHAPE = (32, 64, 112, 112)
OPS = [
    ("max_pool2d 2/2", "max_pool2d", dict(kernel_size=2, stride=2)),
    ("max_pool2d 3/2 pad 1", "max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("adaptive_max_pool2d(7)", "adaptive_max_pool2d", dict(output_size=7)),
    ("max_pool3d 2/2", "max_pool3d", dict(kernel_size=2)),
]


def op_rows() -> list[tuple]:
    """(name, torch MB, ours MB, ratio) for each max-pooling op, on a fresh input."""
    rows = []
    for name, fn, kw in OPS:
        shape = (4, 32, 32, 56, 56) if fn.endswith("3d") else POOL_SHAPE
        x = torch.randn(shape, requires_grad=True)
        t = saved_bytes(lambda a: getattr(F, fn)(a, **kw), x) / 2**20
        o = saved_bytes(lambda a: getattr(CF, fn)(a, **kw), x) / 2**20
        rows.append((f"{name}, input {list(shape)}", t, o, t / o))
    return rows


def model_rows(names=("resnet18", "mobilenet_v2"), batch: int = 8, size: int = 224) -> list[tuple]:
    """(name, torch MB, ours MB, ratio): saved tensors of one forward of a training step."""
    import torchvision

    rows = []
    for name in names:
        torch.manual_seed(0)
        theirs = getattr(torchvision.models, name)()
        ours = torch_convpool.convert(copy.deepcopy(theirs))
        x = torch.randn(batch, 3, size, size)
        t = saved_bytes(lambda m: m(x).sum(), theirs) / 2**20
        o = saved_bytes(lambda m: m(x).sum(), ours) / 2**20
        rows.append((f"{name} N{batch} {size}x{size}, training forward", t, o, t / o))
    return rows


def to_markdown(rows) -> str:
    lines = [
        "",
        "Saved for backward (`benchmarks/memory.py`): bytes of the tensors autograd keeps, each "
        "storage once; ratio = torch / ours.",
        "",
        "| what | torch MB | ours MB | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {n} | {t:.1f} | {o:.1f} | {r:.2f} |" for n, t, o, r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for row in op_rows() + model_rows():
        print(f"{row[0]:55s} torch {row[1]:8.1f} MB  ours {row[2]:8.1f} MB  x{row[3]:5.2f}")
