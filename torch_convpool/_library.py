"""Loads the compiled operators and registers a fake (meta) kernel for each of them.

The fakes let ``torch.compile(fullgraph=True)``, ``torch.export`` and ``torch.library.opcheck``
reason about our ops without running them.
"""
from __future__ import annotations

import torch

from . import _build_check
from ._shapes import conv_output_shape, conv_transpose_output_shape, pool_output_shape

_C = _build_check.load_compiled_module()

__all__ = ["_C"]


def _like_input(input, shape, dtype=None):
    # Outputs keep the input's memory format (channels_last stays channels_last, as in torch),
    # allocated as the real kernels allocate them.
    from torch._prims_common import suggest_memory_format

    return torch.empty(shape, dtype=dtype if dtype is not None else input.dtype,
                       device=input.device, memory_format=suggest_memory_format(input))


def _cpu_mkldnn_3d(input, weight, stride, dilation, groups):
    # cpu_mkldnn_3d (conv_driver.cpp): whether torch computes a 3-d conv on the CPU with mkldnn.
    if input.dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if input.dtype == torch.float16:
        return torch.ops.mkldnn._is_mkldnn_fp16_supported()
    if input.dtype != torch.float32:
        return False
    strided, dilated = any(s != 1 for s in stride), any(d != 1 for d in dilation)
    kh, kw, n = weight.shape[-2], weight.shape[-1], input.shape[0]
    not_single_threaded_1x1 = (strided or dilated or n >= 16 or kw != 1 or kh != 1
                               or torch.get_num_threads() > 1)
    not_tiny = (groups > 1 or (kw > 3 and kh > 3) or n > 1
                or input.shape[0] * input.shape[1] * input.shape[2] * input.shape[3] > 20480)
    return not_single_threaded_1x1 and not_tiny


def _conv_result(input, weight, shape, stride, dilation, groups):
    # The memory format torch gives a conv's result, as conv_result_format (conv_driver.cpp)
    # decides it: channels_last where the input or the weight suggests it, but contiguous where
    # torch's kernel ignores layouts (3-d convs that are not mkldnn's on the CPU, float64 on
    # CUDA).
    from torch._prims_common import suggest_memory_format

    channels_last = {4: torch.channels_last, 5: torch.channels_last_3d}.get(input.dim())
    format = torch.contiguous_format
    if channels_last is None or (input.is_cuda and input.dtype == torch.float64):
        pass
    elif input.dim() == 5 and not input.is_cuda and not _cpu_mkldnn_3d(input, weight, stride,
                                                                       dilation, groups):
        pass
    elif channels_last in (suggest_memory_format(input), suggest_memory_format(weight)):
        format = channels_last
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=format)


# The fakes run the kernels' own checks (csrc/shape_checks.cpp) wherever the sizes are known;
# symbolic sizes are checked when the kernel runs. So a meta tensor is rejected where a real one
# is, with the same error.
def _known(*values) -> bool:
    return all(type(v) is int for v in values)


def _check_geometry(op, transposed, input, weight, stride, padding, dilation, groups):
    if _known(*input.shape, *weight.shape, *stride, *padding, *dilation, groups):
        _C._check_conv_geometry(op, transposed, list(input.shape), list(weight.shape),
                                list(stride), list(padding), list(dilation), groups)


def _check_pool(op, input, kernel, stride, padding, dilation, ceil_mode, types="floating"):
    if _known(*input.shape, *kernel, *stride, *padding, *dilation):
        _C._check_pool_geometry(op, input, list(kernel), list(stride), list(padding),
                                list(dilation), ceil_mode, types)


def _check_adaptive_pool(op, input, output_size):
    if _known(*input.shape, *output_size):
        _C._check_adaptive_pool_geometry(op, input, list(output_size))


@torch.library.register_fake("convpool::conv")
def _conv_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == weight.dim(), lambda: "convpool::conv: input and weight dims differ")
    _check_geometry("convpool::conv", False, input, weight, stride, padding, dilation, groups)
    shape = conv_output_shape(input.shape, weight.shape, stride, padding, dilation)
    return _conv_result(input, weight, shape, stride, dilation, groups)


@torch.library.register_fake("convpool::conv_transpose")
def _conv_transpose_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(
        input.dim() == weight.dim(), lambda: "convpool::conv_transpose: input and weight dims differ"
    )
    _check_geometry("convpool::conv_transpose", True, input, weight, stride, padding, dilation,
                    groups)
    shape = conv_transpose_output_shape(input.shape, weight.shape, stride, padding, dilation, groups)
    return _conv_result(input, weight, shape, stride, dilation, groups)


@torch.library.register_fake("convpool::conv_weight_grad")
def _conv_weight_grad_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    # In the input's memory format, as the real kernels write it (a channels_last model's weights
    # are channels_last).
    return _like_input(input, list(weight_size))


@torch.library.register_fake("convpool::max_pool")
def _max_pool_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool("convpool::max_pool", input, kernel_size, stride, padding, dilation, ceil_mode,
                "integral")
    shape = pool_output_shape(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _like_input(input, shape), _like_input(input, shape, torch.long)


@torch.library.register_fake("convpool::max_pool_backward")
def _max_pool_backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation,
                            ceil_mode):
    return _like_input(input, input.shape)


@torch.library.register_fake("convpool::max_pool_values")
def _max_pool_values_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool("convpool::max_pool_values", input, kernel_size, stride, padding, dilation, ceil_mode,
                "integral")
    shape = pool_output_shape(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _like_input(input, shape)


@torch.library.register_fake("convpool::max_pool_positions")
def _max_pool_positions_fake(input, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool("convpool::max_pool_positions", input, kernel_size, stride, padding, dilation, ceil_mode,
                "integral")
    shape = pool_output_shape(input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _like_input(input, shape), _like_input(input, shape, torch.uint8)


def _grad_from_positions(grad_output, input_size, channels_last):
    # The forward input's sizes and memory format, as the real kernels allocate it.
    if not channels_last:
        memory_format = torch.contiguous_format
    elif len(input_size) == 5:
        memory_format = torch.channels_last_3d
    else:
        memory_format = torch.channels_last
    return torch.empty(list(input_size), dtype=grad_output.dtype, device=grad_output.device,
                       memory_format=memory_format)


@torch.library.register_fake("convpool::max_pool_positions_backward")
def _max_pool_positions_backward_fake(grad_output, positions, input_size, channels_last,
                                      kernel_size, stride, padding, dilation, ceil_mode):
    return _grad_from_positions(grad_output, input_size, channels_last)


@torch.library.register_fake("convpool::avg_pool")
def _avg_pool_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                   divisor_override):
    _check_pool("convpool::avg_pool", input, kernel_size, stride, padding, [1] * len(kernel_size),
                ceil_mode, "int64")
    torch._check(divisor_override != 0,
                 lambda: "convpool::avg_pool: divisor_override must not be zero")
    shape = pool_output_shape(input.shape, kernel_size, stride, padding, [1] * len(kernel_size),
                              ceil_mode)
    return _like_input(input, shape)


@torch.library.register_fake("convpool::avg_pool_backward")
def _avg_pool_backward_fake(grad_output, input, kernel_size, stride, padding, ceil_mode,
                            count_include_pad, divisor_override):
    return _like_input(input, input.shape)


@torch.library.register_fake("convpool::adaptive_max_pool")
def _adaptive_max_pool_fake(input, output_size):
    _check_adaptive_pool("convpool::adaptive_max_pool", input, output_size)
    shape = [*input.shape[:2], *output_size]
    return _like_input(input, shape), _like_input(input, shape, torch.long)


@torch.library.register_fake("convpool::adaptive_max_pool_backward")
def _adaptive_max_pool_backward_fake(grad_output, input, indices):
    return _like_input(input, input.shape)


@torch.library.register_fake("convpool::adaptive_max_pool_values")
def _adaptive_max_pool_values_fake(input, output_size):
    _check_adaptive_pool("convpool::adaptive_max_pool_values", input, output_size)
    return _like_input(input, [*input.shape[:2], *output_size])


@torch.library.register_fake("convpool::adaptive_max_pool_positions")
def _adaptive_max_pool_positions_fake(input, output_size):
    _check_adaptive_pool("convpool::adaptive_max_pool_positions", input, output_size)
    shape = [*input.shape[:2], *output_size]
    return _like_input(input, shape), _like_input(input, shape, torch.uint8)


@torch.library.register_fake("convpool::adaptive_max_pool_positions_backward")
def _adaptive_max_pool_positions_backward_fake(grad_output, positions, input_size, channels_last):
    return _grad_from_positions(grad_output, input_size, channels_last)


@torch.library.register_fake("convpool::adaptive_avg_pool")
def _adaptive_avg_pool_fake(input, output_size):
    _check_adaptive_pool("convpool::adaptive_avg_pool", input, output_size)
    return _like_input(input, [*input.shape[:2], *output_size])


@torch.library.register_fake("convpool::adaptive_avg_pool_backward")
def _adaptive_avg_pool_backward_fake(grad_output, input):
    return _like_input(input, input.shape)


@torch.library.register_fake("convpool::max_unpool")
def _max_unpool_fake(input, indices, output_size):
    return _like_input(input, [*input.shape[:2], *output_size])
