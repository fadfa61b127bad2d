"""Transposed convolutions whose output is 0 long in some dim, where torch's CPU answers.

torch's own convolutions raise there ("Output size is too small"), except where oneDNN computes
the call: that path returns the empty result. Which calls those are follows torch's choice of
backend (its `use_mkldnn`): float32 by a heuristic of the shapes, stride, dilation, groups and
thread count; bfloat16 and float16 wherever the CPU has oneDNN's kernels for them; complex64
through its float32 parts. A random sweep of 863 such calls (float32, bfloat16, complex64,
float64; dims 1-3, groups, stride, dilation, batch 1-17, 1 and 2 threads) found this rule and
torch's behaviour equal in every one. An empty batch is answered for any dtype by the op itself.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
from torch import Tensor

from .._shapes import conv_transpose_output_shape


@functools.cache
def _cpu_has_fp16_kernels() -> bool:
    if torch.cpu._is_amx_fp16_supported():
        return True
    try:
        with open("/proc/cpuinfo") as f:
            return any("avx512_fp16" in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


def _onednn_computes(x: Tensor, weight: Tensor, stride: Sequence[int], output_padding: list,
                     dilation: Sequence[int], groups: int) -> bool:
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    if any(p >= s for p, s in zip(output_padding, stride)):  # beyond what oneDNN takes
        return False
    if x.dtype == torch.bfloat16:
        return torch.cpu._is_avx512_supported()
    if x.dtype == torch.float16:
        return _cpu_has_fp16_kernels()
    if x.dtype not in (torch.float32, torch.complex64):
        return False
    if x.dim() == 3:  # torch computes 1-d convolutions as 2-d ones of height 1
        x, weight = x.unsqueeze(2), weight.unsqueeze(2)
    n, kh, kw = x.size(0), weight.size(-2), weight.size(-1)
    # 1x1 kernels on one thread, unstrided and undilated, in small batches: torch's own kernels.
    worth_it = (any(s != 1 for s in stride) or any(d != 1 for d in dilation) or n >= 16 or
                kh != 1 or kw != 1 or torch.get_num_threads() > 1)
    large = (groups > 1 or (kh > 3 and kw > 3) or n > 1 or
             n * x.size(1) * x.size(2) * x.size(3) > 20480)
    return worth_it and large


def empty_transpose_result(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                           stride: Sequence[int], pad: Sequence[int], dilation: Sequence[int],
                           groups: int) -> Optional[Tensor]:
    """The empty result torch answers for this conv_transpose (pad as [before..., after...], the
    after side lowered by output_padding; batched x), on the autograd graph of the arguments;
    None where torch computes or raises."""
    dims = x.dim() - 2
    # Meta tensors answer as the CPU's would: fake tensors under torch.compile agree with the
    # kernels they stand for.
    if (x.device.type not in ("cpu", "meta") or x.size(0) == 0 or weight.dim() != x.dim() or
            weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype) or
            groups < 1 or x.size(1) != weight.size(0) or weight.size(0) % groups != 0):
        return None
    shape = conv_transpose_output_shape(x.shape, weight.shape, stride, pad, dilation, groups)
    sizes = shape[2:]
    output_padding = [pad[d] - pad[dims + d] for d in range(dims)]
    if min(sizes) != 0 or not _onednn_computes(x, weight, stride, output_padding, dilation,
                                               groups):
        return None
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    inputs = [t for t in (x, weight, bias) if t is not None and t.requires_grad]
    return out + 0 * sum(t.sum() for t in inputs) if inputs else out
