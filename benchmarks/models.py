"""Whole-model rows of the benchmark: torchvision models converted with torch_convpool.convert(),
timed against the unconverted model in the same process, alternately (inference and a training
step, NCHW and channels_last; in float32, and resnet18 also under
torch.autocast("cpu", dtype=torch.bfloat16) against torch's under the same autocast). Needs
torchvision matched to the installed torch; skipped without.
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time
from typing import Callable

import cpu_info  # benchmarks/cpu_info.py, beside this file
import torch

import torch_convpool

MODELS = {
    "resnet18": dict(batch=8, size=224, autocast=True),
    "mobilenet_v2": dict(batch=8, size=224, autocast=False),
    "regnet_y_400mf": dict(batch=8, size=224, autocast=True),
    "resnext50_32x4d": dict(batch=4, size=224, autocast=True),
}


def available() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001  (an ImportError, or torchvision built for another torch)
        return False
    return True


def _alternate(theirs: Callable, ours: Callable, repeats: int, warmup: int = 2):
    for _ in range(warmup):
        theirs()
        ours()
    samples = ([], [])
    for _ in range(repeats):
        for fn, out in ((theirs, samples[0]), (ours, samples[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(samples[0]) * 1e3, statistics.median(samples[1]) * 1e3


def _autocast(dtype):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _inference(model, x, autocast=None):
    model.eval()  # BatchNorm with its running statistics, as deployed models run

    def run():
        with torch.no_grad(), _autocast(autocast):
            model(x)
    return run


def _training_step(model, x, autocast=None):
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(autocast):
            loss = model(x).float().sum()
        loss.backward()
        optimizer.step()
    return run


def run(repeats: int, name_filter: str = "") -> list[tuple]:
    """Rows (name, torch ms, ours ms, ratio) for every model x layout x mode."""
    import torchvision

    rows = []
    for name, cfg in MODELS.items():
        for layout in ("NCHW", "channels_last"):
            label = f"{name} N{cfg['batch']} {cfg['size']}x{cfg['size']} {layout}"
            if name_filter and name_filter not in label and name_filter != "model":
                continue
            torch.manual_seed(0)
            theirs = getattr(torchvision.models, name)()
            ours = torch_convpool.convert(copy.deepcopy(theirs))
            x = torch.randn(cfg["batch"], 3, cfg["size"], cfg["size"])
            if layout == "channels_last":
                theirs = theirs.to(memory_format=torch.channels_last)
                ours = ours.to(memory_format=torch.channels_last)
                x = x.to(memory_format=torch.channels_last)
            # bfloat16 rows only where the CPU multiplies bfloat16 natively: elsewhere torch's own
            # bfloat16 convs are emulated (a resnet18 inference took 10 s on an AVX2 EPYC).
            autocast = cfg["autocast"] and cpu_info.native_bfloat16()
            precisions = [None] + ([torch.bfloat16] if autocast else [])
            for autocast in precisions:
                suffix = ", bfloat16 autocast" if autocast is not None else ""
                for mode, make in (("inference", _inference), ("training step", _training_step)):
                    t, o = _alternate(make(theirs, x, autocast), make(ours, x, autocast), repeats)
                    row = (f"{label}{suffix}, {mode}", t, o, t / o)
                    print(f"{row[0]:72s} {t:8.1f} / {o:8.1f} ms  x{t / o:5.2f}", flush=True)
                    rows.append(row)
    return rows
