"""Plain-torch references for our ops (torch's built-ins, plus explicit padding where we go
beyond torch)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from torch_convpool._args import ntuple, same_padding


def torch_pad_list(before, after):
    """[before..., after...] per spatial dim as F.pad's last-dim-first list."""
    return [p for d in reversed(range(len(before))) for p in (before[d], after[d])]


def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch's conv{1,2,3}d; 'same' with a stride is TensorFlow's rule, applied as an explicit pad."""
    dims = weight.dim() - 2
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    stride_l = ntuple(stride, dims, "stride", "ref")
    if padding == "same" and any(s != 1 for s in stride_l):
        dilation_l = ntuple(dilation, dims, "dilation", "ref")
        pad = same_padding(input.shape[-dims:], weight.shape[2:], stride_l, dilation_l)
        input = F.pad(input, torch_pad_list(pad[:dims], pad[dims:]))
        padding = 0
    return fn(input, weight, bias, stride, padding, dilation, groups)


def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1):
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[weight.dim() - 2]
    return fn(input, weight, bias, stride, padding, output_padding, groups, dilation)
