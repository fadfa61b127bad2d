"""Side-by-side speed of torch_convpool's ops and torch's own, in one run.

For each case: median wall time over repeats (after warm-up) of torch's op and ours, forward
and forward+backward, and the ratio torch / ours (> 1: ours is faster). Writes the table to
BENCHMARKS.md (or --output) with the command and the machine it ran on.

    python benchmarks/run.py                   # CPU, all cases
    python benchmarks/run.py --device cuda     # CUDA
    python benchmarks/run.py --filter pool --repeats 5
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

import torch_convpool.functional as CF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_info  # noqa: E402  (benchmarks/cpu_info.py)
import memory  # noqa: E402  (benchmarks/memory.py)
import models  # noqa: E402  (benchmarks/models.py)


@dataclass
class Case:
    name: str
    make: Callable[[str], tuple]  # device -> (input, extra args...)
    ours: Callable
    theirs: Callable
    flops: float = 0.0  # forward multiply-adds x 2 (dense convolutions), for GFLOP/s
    floor: bool = False  # memory-bound (pooling): also time the memory floor


def _x(*shape, channels_last=False, dtype=torch.float32):
    def make(device):
        x = torch.randn(*shape, device=device, dtype=dtype)
        if channels_last and x.dim() == 4:
            x = x.to(memory_format=torch.channels_last)
        elif channels_last and x.dim() == 5:
            x = x.to(memory_format=torch.channels_last_3d)
        return x
    return make


_CONV = {1: (CF.conv1d, F.conv1d), 2: (CF.conv2d, F.conv2d), 3: (CF.conv3d, F.conv3d)}


def _conv_case(name, n, c, size, out, k, stride=1, padding=0, dilation=1, groups=1,
               channels_last=False, dims=2, dtype=torch.float32):
    spatial = (size,) * dims if isinstance(size, int) else tuple(size)

    def make(device):
        x = _x(n, c, *spatial, channels_last=channels_last, dtype=dtype)(device)
        w = torch.randn(out, c // groups, *([k] * dims), device=device, dtype=dtype)
        return x, w
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    outputs = 1
    for length in spatial:
        outputs *= (length + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    flops = 2.0 * n * out * (c // groups) * k ** dims * outputs
    layout = " channels_last" if channels_last else ""
    ours, theirs = _CONV[dims]
    return Case(name + layout, make, lambda x, w: ours(x, w, **kw), lambda x, w: theirs(x, w, **kw),
                flops)


def _both_layouts(name, *args, **kw):
    return [_conv_case(name, *args, **kw), _conv_case(name, *args, channels_last=True, **kw)]


def _conv_transpose_case(name, n, c, hw, out, k, stride, padding, channels_last=False):
    def make(device):
        return (_x(n, c, hw, hw, channels_last=channels_last)(device),
                torch.randn(c, out, k, k, device=device))
    kw = dict(stride=stride, padding=padding)
    flops = 2.0 * n * c * out * k * k * hw * hw
    return Case(name + (" channels_last" if channels_last else ""), make,
                lambda x, w: CF.conv_transpose2d(x, w, **kw),
                lambda x, w: F.conv_transpose2d(x, w, **kw), flops)


def _pool_case(name, fn, shape, channels_last=False, **kw):
    def make(device):
        return (_x(*shape, channels_last=channels_last)(device),)
    return Case(name + (" channels_last" if channels_last else ""), make,
                lambda x: getattr(CF, fn)(x, **kw), lambda x: getattr(F, fn)(x, **kw), floor=True)


def _pool_both(name, fn, shape, **kw):
    return [_pool_case(name, fn, shape, **kw), _pool_case(name, fn, shape, channels_last=True, **kw)]


def _floor(x, out):
    """The memory floor of a pooling op: reading its input once and allocating and writing its
    output (forward); for forward+backward also writing and reading grad_output and allocating
    and writing grad_input."""
    def forward():
        x.sum()
        torch.empty_like(out).fill_(0)

    def forward_backward():
        forward()
        torch.empty_like(out).fill_(1).sum()
        torch.empty_like(x).fill_(0)
    return forward, forward_backward


POOL_SHAPE = (32, 64, 112, 112)
CASES = [
    *_both_layouts("conv 3x3, N8 C64 56x56 -> 64", 8, 64, 56, 64, 3, padding=1),
    *_both_layouts("conv 3x3, N8 C128 28x28 -> 128", 8, 128, 28, 128, 3, padding=1),
    *_both_layouts("conv 3x3, N8 C256 14x14 -> 256", 8, 256, 14, 256, 3, padding=1),
    *_both_layouts("conv 3x3, N8 C512 7x7 -> 512", 8, 512, 7, 512, 3, padding=1),
    *_both_layouts("conv 3x3 stride 2, N8 C64 56x56 -> 128", 8, 64, 56, 128, 3, stride=2, padding=1),
    *_both_layouts("conv 1x1, N8 C256 14x14 -> 1024", 8, 256, 14, 1024, 1),
    # Weights of megabytes on maps of a few dozen pixels: ResNet's last stages
    *_both_layouts("conv 1x1, N8 C2048 7x7 -> 512 (ResNet-50 layer4)", 8, 2048, 7, 512, 1),
    *_both_layouts("conv 3x3 stride 2, N8 C256 14x14 -> 512 (ResNet-18 layer4)", 8, 256, 14, 512,
                   3, stride=2, padding=1),
    *_both_layouts("conv 3x3 dilation 2, N8 C64 56x56", 8, 64, 56, 64, 3, padding=2, dilation=2),
    # DeepLabV3's ASPP: windows far into the padding (GFLOP/s count every tap, live or not)
    *_both_layouts("conv 3x3 dilation 12 (ASPP), N8 C256 28x28 -> 256", 8, 256, 28, 256, 3,
                   padding=12, dilation=12),
    *_both_layouts("conv 5x5, N8 C64 28x28 -> 64", 8, 64, 28, 64, 5, padding=2),
    *_both_layouts("conv 7x7 stride 2 (stem), N8 C3 224x224 -> 64", 8, 3, 224, 64, 7, stride=2,
                   padding=3),
    _conv_case("conv1d k3 dilation 8, N8 C64 L16000", 8, 64, 16000, 64, 3, padding=8, dilation=8,
               dims=1),
    *_both_layouts("conv3d 3x3x3, N2 C32 16x56x56", 2, 32, (16, 56, 56), 32, 3, padding=1, dims=3),
    # bfloat16: ours through a bfloat16 GEMM (AMX / AVX512-BF16), torch's through oneDNN's
    *_both_layouts("conv 3x3 bfloat16, N8 C64 56x56 -> 64", 8, 64, 56, 64, 3, padding=1,
                   dtype=torch.bfloat16),
    *_both_layouts("conv 3x3 bfloat16, N8 C512 7x7 -> 512", 8, 512, 7, 512, 3, padding=1,
                   dtype=torch.bfloat16),
    *_both_layouts("conv 1x1 bfloat16, N8 C256 14x14 -> 1024", 8, 256, 14, 1024, 1,
                   dtype=torch.bfloat16),
    # The stem's input gradient (computed here, never in a model) is the GEMM engine's
    *_both_layouts("conv 7x7 stride 2 bfloat16 (stem), N8 C3 224x224 -> 64", 8, 3, 224, 64, 7,
                   stride=2, padding=3, dtype=torch.bfloat16),
    # Few output channels: an image decoder's last layer (CycleGAN / pix2pix), a style network's
    *_both_layouts("conv 7x7 into 3 channels (decoder), N4 C64 128x128 -> 3", 4, 64, 128, 3, 7,
                   padding=3),
    *_both_layouts("conv 9x9 into 3 channels (style transfer), N4 C32 224x224 -> 3", 4, 32, 224, 3,
                   9, padding=4),
    *_both_layouts("grouped 3x3 (16 per group into 1), N4 C512 56x56 -> 32", 4, 512, 56, 32, 3,
                   padding=1, groups=32),
    _conv_transpose_case("conv_transpose 4x4 stride 2, N8 C64 28x28 -> 32", 8, 64, 28, 32, 4, 2, 1),
    _conv_transpose_case("conv_transpose 4x4 stride 2, N8 C64 28x28 -> 32", 8, 64, 28, 32, 4, 2, 1,
                         channels_last=True),
    *_both_layouts("depthwise 3x3, N8 C256 28x28", 8, 256, 28, 256, 3, padding=1, groups=256),
    *_both_layouts("depthwise 3x3 stride 2, N8 C256 28x28", 8, 256, 28, 256, 3, stride=2,
                   padding=1, groups=256),
    *_both_layouts("depthwise 5x5, N8 C256 28x28", 8, 256, 28, 256, 5, padding=2, groups=256),
    *_both_layouts("depthwise 3x3, N8 C128 56x56", 8, 128, 56, 128, 3, padding=1, groups=128),
    *_both_layouts("depthwise 3x3 stride 2, N8 C128 56x56", 8, 128, 56, 128, 3, stride=2,
                   padding=1, groups=128),
    *_both_layouts("depthwise 5x5, N8 C128 56x56", 8, 128, 56, 128, 5, padding=2, groups=128),
    *_both_layouts("grouped 3x3 (16 per group, RegNet), N8 C128 28x28", 8, 128, 28, 128, 3,
                   padding=1, groups=8),
    *_both_layouts("grouped 3x3 (8 per group, regnet_y_400mf), N8 C208 14x14", 8, 208, 14, 208, 3,
                   padding=1, groups=26),
    *_both_layouts("grouped 3x3 (8 per group, regnet_y_400mf), N8 C440 7x7", 8, 440, 7, 440, 3,
                   padding=1, groups=55),
    *_both_layouts("grouped 3x3 stride 2 (8 per group), N8 C208 28x28", 8, 208, 28, 208, 3,
                   stride=2, padding=1, groups=26),
    *_both_layouts("grouped 3x3 (4 per group, ResNeXt), N8 C128 56x56", 8, 128, 56, 128, 3,
                   padding=1, groups=32),
    *_both_layouts("grouped 3x3 bfloat16 (4 per group, ResNeXt), N8 C128 56x56", 8, 128, 56, 128,
                   3, padding=1, groups=32, dtype=torch.bfloat16),
    *_both_layouts("grouped 3x3 bfloat16 (8 per group, regnet_y_400mf), N8 C208 14x14", 8, 208,
                   14, 208, 3, padding=1, groups=26, dtype=torch.bfloat16),
    *_pool_both("max_pool2d 2/2, N32 C64 112x112", "max_pool2d", POOL_SHAPE, kernel_size=2,
                stride=2),
    *_pool_both("max_pool2d 3/2 pad 1, N32 C64 112x112", "max_pool2d", POOL_SHAPE, kernel_size=3,
                stride=2, padding=1),
    *_pool_both("avg_pool2d 2/2, N32 C64 112x112", "avg_pool2d", POOL_SHAPE, kernel_size=2,
                stride=2),
    *_pool_both("avg_pool2d 3/1 pad 1, N32 C64 112x112", "avg_pool2d", POOL_SHAPE, kernel_size=3,
                stride=1, padding=1),
    *_pool_both("adaptive_avg_pool2d(1), N32 C64 112x112", "adaptive_avg_pool2d", POOL_SHAPE,
                output_size=1),
    *_pool_both("adaptive_avg_pool2d(7), N32 C64 112x112", "adaptive_avg_pool2d", POOL_SHAPE,
                output_size=7),
    *_pool_both("adaptive_max_pool2d(7), N32 C64 112x112", "adaptive_max_pool2d", POOL_SHAPE,
                output_size=7),
    _pool_case("max_pool3d 2/2, N4 C32 32x56x56", "max_pool3d", (4, 32, 32, 56, 56), kernel_size=2),
]


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _time_pair(theirs, ours, device, repeats, warmup=3) -> tuple[float, float]:
    """Median ms of each, timed alternately so that drift on a shared machine hits both alike."""
    for _ in range(warmup):
        theirs()
        ours()
    _sync(device)
    samples = ([], [])
    for _ in range(repeats):
        for fn, out in ((theirs, samples[0]), (ours, samples[1])):
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append(time.perf_counter() - start)
    return statistics.median(samples[0]) * 1e3, statistics.median(samples[1]) * 1e3


def _forward_backward(op, args):
    def run():
        leaves = [a.detach().requires_grad_() if a.is_floating_point() else a for a in args]
        out = op(*leaves)
        out.backward(torch.ones_like(out))
    return run


def run(device: str, repeats: int, name_filter: str) -> list[tuple]:
    rows = []
    for case in CASES:
        if name_filter and name_filter not in case.name:
            continue
        args = case.make(device)
        with torch.no_grad():
            theirs_fwd, ours_fwd = _time_pair(lambda: case.theirs(*args), lambda: case.ours(*args),
                                              device, repeats)
        theirs_bwd, ours_bwd = _time_pair(_forward_backward(case.theirs, args),
                                          _forward_backward(case.ours, args), device, repeats)
        gflops = (case.flops / ours_fwd / 1e6, case.flops / theirs_fwd / 1e6) if case.flops else None
        floor = None
        if case.floor:
            with torch.no_grad():
                fwd_floor, bwd_floor = _floor(args[0], case.ours(*args))
                _, floor_fwd = _time_pair(lambda: None, fwd_floor, device, repeats)
                _, floor_bwd = _time_pair(lambda: None, bwd_floor, device, repeats)
            floor = (floor_fwd, floor_bwd)
        row = (case.name, theirs_fwd, ours_fwd, theirs_fwd / ours_fwd, theirs_bwd, ours_bwd,
               theirs_bwd / ours_bwd, gflops, floor)
        rate = f"  ours {gflops[0]:5.0f} GFLOP/s (torch {gflops[1]:4.0f})" if gflops else ""
        if floor:
            rate = (f"  floor {floor[0]:.1f} / {floor[1]:.1f} ms: ours x{ours_fwd / floor[0]:.2f}"
                    f" / x{ours_bwd / floor[1]:.2f}")
        print(f"{row[0]:62s} fwd {row[1]:8.2f} / {row[2]:8.2f} ms  x{row[3]:5.2f}   "
              f"fwd+bwd {row[4]:8.2f} / {row[5]:8.2f} ms  x{row[6]:5.2f}{rate}", flush=True)
        rows.append(row)
    return rows


def matmul_peak(device: str, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a float32 size^3 torch.mm on this machine now: what a dense conv is bound by."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    _, t = _time_pair(lambda: None, lambda: torch.mm(a, b), device, repeats)
    return 2.0 * size ** 3 / t / 1e6


def section_name(device: str) -> str:
    return "CUDA" if device == "cuda" else f"CPU ({cpu_info.vector_isa()})"


def to_markdown(rows, device: str, repeats: int, command: str, peak: float,
                model_rows=()) -> str:
    machine = (torch.cuda.get_device_name() if device == "cuda"
               else f"{cpu_info.model()} ({cpu_info.low_precision_flags()}), "
                    f"{torch.get_num_threads()} threads")
    lines = [
        f"## {section_name(device)}: {machine}",
        "",
        f"torch {torch.__version__}, float32 unless a case names bfloat16, median of {repeats} "
        f"after warm-up, "
        f"{datetime.date.today().isoformat()}. Command: `{command}`",
        "",
        f"float32 matmul peak measured in the same run (torch.mm 2048^3): {peak:.0f} GFLOP/s.",
        "ratio = torch time / our time (> 1: ours is faster); GFLOP/s of the forward (ours / torch's)"
        " for the dense convolutions; for pooling, the memory floor measured in the same run "
        "(reading the input once, allocating and writing the output; with the backward also "
        "grad_output and grad_input) and our time as a multiple of it (fwd / fwd+bwd).",
        "",
        "| case | torch fwd ms | ours fwd ms | ratio | torch fwd+bwd ms | ours fwd+bwd ms | ratio "
        "| fwd GFLOP/s ours / torch, or floor ms (ours x floor) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, tf, of, rf, tb, ob, rb, gflops, floor in rows:
        rate = f"{gflops[0]:.0f} / {gflops[1]:.0f}" if gflops else ""
        if floor:
            rate = (f"{floor[0]:.1f} / {floor[1]:.1f} (x{of / floor[0]:.2f} / "
                    f"x{ob / floor[1]:.2f})")
        lines.append(f"| {name} | {tf:.2f} | {of:.2f} | {rf:.2f} | {tb:.2f} | {ob:.2f} | {rb:.2f} "
                     f"| {rate} |")
    if model_rows:
        lines += [
            "",
            "Whole models: torchvision's, converted with `torch_convpool.convert()`, against the "
            "unconverted model (`benchmarks/models.py`).",
            "",
            "| model | torch ms | ours ms | ratio |",
            "|---|---:|---:|---:|",
        ]
        for name, t, o, r in model_rows:
            lines.append(f"| {name} | {t:.1f} | {o:.1f} | {r:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--filter", default="")
    parser.add_argument("--no-models", action="store_true", help="skip the whole-model rows")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "..", "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    command = "python " + " ".join([os.path.relpath(__file__, os.getcwd())] + (argv or sys.argv[1:]))
    peak = matmul_peak(args.device)
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s", flush=True)
    rows = run(args.device, args.repeats, args.filter)
    model_rows = []
    if not args.no_models and args.device == "cpu" and models.available():
        model_rows = models.run(max(3, args.repeats // 2), args.filter)
    section = to_markdown(rows, args.device, args.repeats, command, peak, model_rows)
    if args.device == "cpu" and not args.filter:
        memory_rows = memory.op_rows() + (memory.model_rows() if models.available() else [])
        section += memory.to_markdown(memory_rows)
    if args.output != "-":
        _write_section(args.output, args.device, section)
    return 0


def _write_section(path: str, device: str, section: str) -> None:
    """Replaces this device's (for the CPU: this vector ISA's) section of BENCHMARKS.md, keeping
    the others."""
    header = (
        "# Benchmarks: torch_convpool against torch's own kernels\n\n"
        "Written by `benchmarks/run.py` (also `python -m torch_convpool bench`). Each pair is timed "
        "alternately in one run, so drift on a shared machine hits both alike; still, on the 2-core "
        "development VMs single numbers move by 20-50 % between runs (torch's own depthwise NCHW "
        "forward flips between ~0.6 and ~9 ms): read the ratios, and re-run before concluding.\n\n"
    )
    sections = {}
    if os.path.exists(path):
        text = open(path).read()
        for part in text.split("\n## ")[1:]:
            sections[part.split(":", 1)[0].strip().lower()] = "## " + part.rstrip() + "\n"
    sections[section_name(device).lower()] = section
    order = sorted(sections, key=lambda name: (name == "cuda", name))
    with open(path, "w") as f:
        f.write(header + "\n".join(sections[name] for name in order))


if __name__ == "__main__":
    sys.exit(main())
