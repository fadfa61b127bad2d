"""Max, average, adaptive and unpooling with ``torch.nn.functional``'s signatures, plus
``padding='same'`` (TensorFlow's rule, any stride) for max and average pooling."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .._args import IntOrTuple, check_batched, ntuple, same_padding
from .._eager import direct, outside_passthrough_modes
from .._library import _C
from . import _pool_taps as pool_taps
from ._conv_taps import transforms_active

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
]

PoolPadding = Union[str, IntOrTuple]
# the output, or (output, indices) with return_indices=True
MaybeIndices = Union[Tensor, tuple[Tensor, Tensor]]
OutputSize = Union[int, None, Sequence[Optional[int]]]


def _window(op: str, dims: int, x: Tensor, kernel_size, stride, padding, dilation):
    """kernel, stride, [before..., after...] padding, dilation and whether the padding is 'same'."""
    kernel = ntuple(kernel_size, dims, "kernel_size", op)
    if stride is None or (not isinstance(stride, (int, torch.SymInt)) and len(stride) == 0):
        stride = kernel
    stride = ntuple(stride, dims, "stride", op)
    dilation = ntuple(dilation, dims, "dilation", op)
    for name, values in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        if any(v <= 0 for v in values):
            raise RuntimeError(f"{op}: {name} should be greater than zero, but got {name}={values}")
    if isinstance(padding, str):
        if padding == "valid":
            return kernel, stride, [0] * (2 * dims), dilation, False
        if padding == "same":
            return kernel, stride, same_padding(x.shape[2:], kernel, stride, dilation), dilation, True
        raise RuntimeError(f"{op}: invalid padding string {padding!r} (expected 'valid', 'same' or ints)")
    pad = ntuple(padding, dims, "padding", op)
    for p, k in zip(pad, kernel):
        if p < 0 or p > k // 2:
            raise RuntimeError(
                f"{op}: pad should be at most half of effective kernel size, but got "
                f"pad={p}, kernel_size={k} (padding={pad}, kernel_size={kernel})"
            )
    return kernel, stride, pad + pad, dilation, False


@outside_passthrough_modes
def _max_pool(op, dims, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    batched = check_batched(input, dims, op)
    x = input if batched else input.unsqueeze(0)
    kernel, stride, pad, dilation, _ = _window(op, dims, x, kernel_size, stride, padding, dilation)
    if not return_indices:
        if dims == 1 and not input.is_floating_point():
            # torch's max_pool1d takes integer tensors only when it returns indices.
            raise NotImplementedError(f'"max_pool1d_impl" not implemented for {input.dtype}')
        # No indices to return: the op computes none, and saves for backward only each
        # maximum's one-byte position in its window (see window_offsets.h).
        if transforms_active():  # torch.func: our ops' C++ autograd cannot run there
            out = pool_taps.max_pool("convpool::max_pool_values", x, kernel, stride, pad,
                                     dilation, bool(ceil_mode), False)
            return out if batched else out.squeeze(0)
        op = _C._eager_max_pool_values if direct(x) else torch.ops.convpool.max_pool_values.default
        out = op(x, kernel, stride, pad, dilation, bool(ceil_mode))
        return out if batched else out.squeeze(0)
    if transforms_active():
        out, indices = pool_taps.max_pool("convpool::max_pool", x, kernel, stride, pad, dilation,
                                          bool(ceil_mode), True)
    else:
        out, indices = torch.ops.convpool.max_pool.default(x, kernel, stride, pad, dilation,
                                                           bool(ceil_mode))
    if not batched:
        out, indices = out.squeeze(0), indices.squeeze(0)
    return (out, indices) if return_indices else out


@outside_passthrough_modes
def _avg_pool(op, dims, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    if dims == 2 and input.dim() < 3:
        raise _dimension_out_of_range(input, -3)  # as torch's avg_pool2d, which reads size(-3) first
    batched = check_batched(input, dims, op)
    x = input if batched else input.unsqueeze(0)
    kernel, stride, pad, _, same = _window(op, dims, x, kernel_size, stride, padding, 1)
    if dims == 3 and not same and any(n < k for n, k in zip(x.shape[2:], kernel)):
        # torch's avg_pool3d (only it) wants the unpadded input to hold a whole kernel.
        (t, h, w), (kt, kh, kw) = x.shape[2:], kernel
        raise RuntimeError(f"input image (T: {t} H: {h} W: {w}) smaller than kernel size "
                           f"(kT: {kt} kH: {kh} kW: {kw})")
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError(f"{op}: divisor must be not zero")
    # 'same' padding never counts in an average (TensorFlow's rule): count_include_pad is ignored.
    if transforms_active():
        out = pool_taps.avg_pool("convpool::avg_pool", x, kernel, stride, pad, bool(ceil_mode),
                                 bool(count_include_pad) and not same, divisor_override)
        return out if batched else out.squeeze(0)
    plain = divisor_override is None or type(divisor_override) is int
    op = _C._eager_avg_pool if plain and direct(x) else torch.ops.convpool.avg_pool.default
    out = op(x, kernel, stride, pad, bool(ceil_mode), bool(count_include_pad) and not same,
             divisor_override)
    return out if batched else out.squeeze(0)


def _output_size(op: str, dims: int, x: Tensor, output_size: OutputSize) -> list:
    if output_size is None or isinstance(output_size, (int, torch.SymInt)):
        sizes = [output_size] * dims
    else:
        sizes = list(output_size)
        if len(sizes) == 1 and dims > 1:
            sizes = sizes * dims
    if len(sizes) != dims:
        raise RuntimeError(f"{op}: output_size must have {dims} entries, but got {output_size}")
    sizes = [x.shape[2 + d] if s is None else s for d, s in enumerate(sizes)]
    if any(s < 0 for s in sizes):
        raise RuntimeError(
            f"{op}: elements of output_size must be greater than or equal to 0 but received {sizes}"
        )
    return sizes


def _dimension_out_of_range(input: Tensor, dim: int) -> IndexError:
    """torch's error for a dim the tensor lacks (its ops index dims before checking the rank)."""
    n = max(input.dim(), 1)
    return IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")


def _ones(output_size) -> bool:
    return (output_size == 1 if isinstance(output_size, int)
            else output_size is not None and all(type(s) is int and s == 1 for s in output_size))


def _check_output_size_type(op: str, dims: int, input: Tensor, output_size: OutputSize) -> None:
    """torch's Python-level errors for an output_size of the wrong kind (before any shape check)."""
    if dims == 1:
        if output_size is None:
            raise TypeError(f"{op}(): argument 'output_size' (position 2) must be tuple of ints, "
                            "not NoneType")
        if not isinstance(output_size, (int, torch.SymInt)):
            for i, s in enumerate(output_size):
                if s is None:
                    raise TypeError(f"{op}(): argument 'output_size' (position 2) must be tuple of "
                                    f"ints, but found element of type NoneType at pos {i}")
        return
    if output_size is None:
        raise TypeError("object of type 'NoneType' has no len()")
    if not isinstance(output_size, (int, torch.SymInt)) and input.dim() <= len(output_size):
        raise ValueError(f"Input dimension should be at least {len(output_size) + 1}")


@outside_passthrough_modes
def _adaptive(op, dims, input, output_size, maximum: bool, return_indices: bool = False):
    _check_output_size_type(op, dims, input, output_size)
    if not maximum and dims > 1 and _ones(output_size) and input.dim() not in (dims + 1, dims + 2):
        # torch averages into 1s as a mean over the last `dims` dims, of a tensor of any rank.
        if input.dim() < dims:
            raise _dimension_out_of_range(input, -dims)
        spatial = input.shape[input.dim() - dims:]
        out = _adaptive(op, dims, input.reshape(1, -1, *spatial), output_size, maximum=False)
        return out.reshape(*input.shape[:input.dim() - dims], *([1] * dims))
    batched = check_batched(input, dims, op)
    x = input if batched else input.unsqueeze(0)
    sizes = _output_size(op, dims, x, output_size)
    if not maximum and x.numel() == 0 and x.shape[0] > 0 and all(s == 1 for s in sizes):
        # Nothing to pool (zero channels, or an empty window: torch's average of nothing is NaN);
        # torch computes an output of 1s as a mean, which takes these, and so do we.
        out = x.mean(tuple(range(2, x.dim())), keepdim=True)
        return out if batched else out.squeeze(0)
    if not batched and input.shape[0] == 0:
        # Zero channels unbatched: an empty output, whose gradient is the empty input's (the op
        # itself, batched, would see an empty non-batch dim in its backward, as torch's does).
        out = input.sum(tuple(range(1, input.dim())), keepdim=True).expand(0, *sizes)
        if maximum and return_indices:
            return out, torch.empty(out.shape, dtype=torch.long, device=input.device)
        return out
    if (maximum or dims == 3) and batched and x.shape[1] == 0:
        # torch's adaptive max pooling and 3-d average pooling take zero channels unbatched only
        # (its 1-d and 2-d average pooling in both forms).
        raise RuntimeError(
            f"{op}(): Expected input to have non-zero size for non-batch dimensions, but input has "
            f"sizes {list(input.shape)} with dimension 1 being empty")
    if transforms_active():
        name = "convpool::adaptive_max_pool" if maximum else "convpool::adaptive_avg_pool"
        out = pool_taps.adaptive_pool(name, x, sizes, maximum, return_indices)
        if not batched:
            out = tuple(t.squeeze(0) for t in out) if return_indices else out.squeeze(0)
        return out
    if not maximum:
        plain = all(type(s) is int for s in sizes)
        op = (_C._eager_adaptive_avg_pool if plain and direct(x)
              else torch.ops.convpool.adaptive_avg_pool.default)
        out = op(x, sizes)
        return out if batched else out.squeeze(0)
    if not return_indices:
        out = torch.ops.convpool.adaptive_max_pool_values.default(x, sizes)
        return out if batched else out.squeeze(0)
    out, indices = torch.ops.convpool.adaptive_max_pool.default(x, sizes)
    if not batched:
        out, indices = out.squeeze(0), indices.squeeze(0)
    return (out, indices) if return_indices else out


def unpool_output_size(op: str, dims: int, x: Tensor, kernel: list, stride: list, pad: list,
                       output_size) -> list:
    """torch's rule: the default size inverts max pooling; a given size must lie strictly within
    one stride of it (any other would not hold the pooled windows)."""
    default = [(x.shape[2 + d] - 1) * stride[d] + kernel[d] - 2 * pad[d] for d in range(dims)]
    if output_size is None:
        return _non_negative(default)
    sizes = list(output_size)
    if len(sizes) == dims + 2:
        sizes = sizes[2:]
    if len(sizes) != dims:
        raise ValueError(
            f"output_size should be a sequence containing {dims} or {dims + 2} elements, but it has "
            f"a length of '{len(sizes)}'"
        )
    for d in range(dims):
        low, high = default[d] - stride[d], default[d] + stride[d]
        if not low < sizes[d] < high:
            raise ValueError(
                f'invalid output_size "{list(output_size)}" (dim {d} must be between {low} and {high})'
            )
    return _non_negative(sizes)


def _non_negative(sizes: list) -> list:
    for d, size in enumerate(sizes):
        if size < 0:
            raise ValueError("max_unpooling: output_size must contain non-negative spatial "
                             f"dimensions, but got output_size[{d}]={size}")
    return sizes


@outside_passthrough_modes
def _max_unpool(op, dims, input, indices, kernel_size, stride, padding, output_size):
    batched = check_batched(input, dims, op)
    x = input if batched else input.unsqueeze(0)
    idx = indices if batched else indices.unsqueeze(0)
    kernel = ntuple(kernel_size, dims, "kernel_size", op)
    stride = kernel if stride is None else ntuple(stride, dims, "stride", op)
    pad = ntuple(padding, dims, "padding", op)
    sizes = unpool_output_size(op, dims, x, kernel, stride, pad, output_size)
    if transforms_active():
        out = pool_taps.max_unpool(x, idx, sizes)
    else:
        out = torch.ops.convpool.max_unpool.default(x, idx, sizes)
    return out if batched else out.squeeze(0)


def max_pool1d(input: Tensor, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: PoolPadding = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> MaybeIndices:
    r"""1-d max pooling over :math:`(N, C, L)` or :math:`(C, L)`; as
    :func:`torch.nn.functional.max_pool1d`, plus ``padding='same'`` with any stride."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool2d(input: Tensor, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: PoolPadding = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> MaybeIndices:
    r"""2-d max pooling over :math:`(N, C, H, W)` or :math:`(C, H, W)`; as
    :func:`torch.nn.functional.max_pool2d`, plus ``padding='same'`` with any stride (padded
    elements never win). Indices are flat within each (n, c) plane, usable by ``max_unpool2d``.

    Examples::

        >>> x = torch.randn(1, 3, 7, 7)
        >>> max_pool2d(x, 3, stride=2, padding="same").shape
        torch.Size([1, 3, 4, 4])
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool3d(input: Tensor, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: PoolPadding = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False) -> MaybeIndices:
    r"""3-d max pooling over :math:`(N, C, D, H, W)` or :math:`(C, D, H, W)`; as
    :func:`torch.nn.functional.max_pool3d`, plus ``padding='same'``."""
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def avg_pool1d(input: Tensor, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: PoolPadding = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    r"""1-d average pooling; as :func:`torch.nn.functional.avg_pool1d`, plus ``padding='same'``
    (padded elements never count, whatever ``count_include_pad`` says: TensorFlow's rule)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: PoolPadding = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> Tensor:
    r"""2-d average pooling; as :func:`torch.nn.functional.avg_pool2d`, plus ``padding='same'``
    (padded elements never count, whatever ``count_include_pad`` says: TensorFlow's rule)."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool3d(input: Tensor, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: PoolPadding = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None) -> Tensor:
    r"""3-d average pooling; as :func:`torch.nn.functional.avg_pool3d`, plus ``padding='same'``."""
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def adaptive_avg_pool1d(input: Tensor, output_size: OutputSize) -> Tensor:
    r"""As :func:`torch.nn.functional.adaptive_avg_pool1d`."""
    return _adaptive("adaptive_avg_pool1d", 1, input, output_size, maximum=False)


def adaptive_avg_pool2d(input: Tensor, output_size: OutputSize) -> Tensor:
    r"""As :func:`torch.nn.functional.adaptive_avg_pool2d`; ``None`` in ``output_size`` keeps
    that dim's input size."""
    return _adaptive("adaptive_avg_pool2d", 2, input, output_size, maximum=False)


def adaptive_avg_pool3d(input: Tensor, output_size: OutputSize) -> Tensor:
    r"""As :func:`torch.nn.functional.adaptive_avg_pool3d`."""
    return _adaptive("adaptive_avg_pool3d", 3, input, output_size, maximum=False)


def adaptive_max_pool1d(input: Tensor, output_size: OutputSize,
                        return_indices: bool = False) -> MaybeIndices:
    r"""As :func:`torch.nn.functional.adaptive_max_pool1d`."""
    return _adaptive("adaptive_max_pool1d", 1, input, output_size, True, return_indices)


def adaptive_max_pool2d(input: Tensor, output_size: OutputSize,
                        return_indices: bool = False) -> MaybeIndices:
    r"""As :func:`torch.nn.functional.adaptive_max_pool2d`."""
    return _adaptive("adaptive_max_pool2d", 2, input, output_size, True, return_indices)


def adaptive_max_pool3d(input: Tensor, output_size: OutputSize,
                        return_indices: bool = False) -> MaybeIndices:
    r"""As :func:`torch.nn.functional.adaptive_max_pool3d`."""
    return _adaptive("adaptive_max_pool3d", 3, input, output_size, True, return_indices)


def max_unpool1d(input: Tensor, indices: Tensor, kernel_size: IntOrTuple,
                 stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                 output_size: Optional[Sequence[int]] = None) -> Tensor:
    r"""As :func:`torch.nn.functional.max_unpool1d`: the partial inverse of ``max_pool1d``."""
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input: Tensor, indices: Tensor, kernel_size: IntOrTuple,
                 stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                 output_size: Optional[Sequence[int]] = None) -> Tensor:
    r"""As :func:`torch.nn.functional.max_unpool2d`: the partial inverse of ``max_pool2d``."""
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input: Tensor, indices: Tensor, kernel_size: IntOrTuple,
                 stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                 output_size: Optional[Sequence[int]] = None) -> Tensor:
    r"""As :func:`torch.nn.functional.max_unpool3d`: the partial inverse of ``max_pool3d``."""
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding, output_size)
