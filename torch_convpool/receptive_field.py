"""Receptive-field analysis: which input pixels a model's output units can see.

The arithmetic is the standard one (Araujo et al., "Computing Receptive Fields of Convolutional
Neural Networks", Distill 2019), per spatial dim, input pixel centres at 0, 1, 2, ...:

- ``rf``: the field's width in input pixels;
- ``jump``: the distance, in input pixels, between neighbouring units of a feature map;
- ``start``: the centre of the field of a feature map's first unit, so unit ``i`` sees the input
  interval ``[start + i*jump - (rf-1)/2, start + i*jump + (rf-1)/2]``.

Through a layer of kernel ``k``, dilation ``d`` (effective kernel ``ke = d*(k-1)+1``), stride ``s``
and before-padding ``p``::

    rf_out    = rf_in + (ke - 1) * jump_in
    jump_out  = jump_in * s
    start_out = start_in + ((ke - 1)/2 - p) * jump_in

The fields are followed along the data flow, not the module order: every tensor the model makes
carries the field of its units (a ``TorchFunctionMode`` passes it through the operations between the
spatial layers, which are treated as pointwise; an operation of several tensors, a residual add or
a concatenation, gets the union of their fields). So a ResNet's shortcut branch does not compound
with the main branch it runs beside, and a U-Net's skip connections are accounted for.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.nn.modules.pooling import (
    _AdaptiveAvgPoolNd,
    _AdaptiveMaxPoolNd,
    _AvgPoolNd,
    _MaxPoolNd,
    _MaxUnpoolNd,
)
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from ._args import conv_padding, ntuple

__all__ = ["receptive_field", "ReceptiveFieldReport", "LayerField"]

Number = Union[int, float]

_SPATIAL = (_ConvNd, _MaxPoolNd, _AvgPoolNd, _AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd, _MaxUnpoolNd)
_ADAPTIVE = (_AdaptiveAvgPoolNd, _AdaptiveMaxPoolNd)
# Pool modules do not say how many spatial dims they have (kernel_size may be a bare int).
_VERIFY_INPUTS = 4

# Layers whose gradient need not reach the field's edges, and why.
_EDGES_UNCHECKED = {
    "max pooling": "max pooling passes gradient to its argmax only",
    "conv-transpose": "a conv-transpose field is an upper bound (stuffed zeros)",
    "max unpooling": "max unpooling places each value at its argmax only",
}
_POOL_DIMS = {
    1: (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.MaxUnpool1d),
    2: (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxUnpool2d),
    3: (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d, nn.MaxUnpool3d),
}


class LayerField(NamedTuple):
    """One spatial layer call: its geometry and the field of its output units.

    Every field is a tuple with one entry per spatial dim. ``padding`` is the before-padding
    actually applied (a ``'same'`` padding resolved against the observed input size); ``rf``,
    ``jump`` and ``start`` are ints where they are whole, floats otherwise (conv-transpose and
    adaptive pooling make fractions). For a conv-transpose, ``stride`` is the module's stride ``s``:
    its output units are ``jump/s`` apart. ``approximate`` marks adaptive pools, whose windows vary
    in size and spacing.
    """

    name: str
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    rf: tuple
    jump: tuple
    start: tuple
    layer_type: str = ""
    approximate: bool = False


@dataclass
class ReceptiveFieldReport:
    """What :func:`receptive_field` found.

    Attributes:
        layers: one :class:`LayerField` per spatial layer call, in execution order.
        rf, jump, start: the field of the model's output units, one entry per spatial dim (for a
            plain chain of layers, the last row's values; ``1``, ``1``, ``0`` without spatial
            layers).
        input_size: the analysed input size, batch dim excluded.
        verified: ``True`` when the gradient check agreed with the arithmetic, ``False`` when it
            did not, ``None`` when it was not run (adaptive pooling, an output without spatial dims,
            ``verify=False``, or a model that could not be differentiated).
        message: what the check did and found.
    """

    layers: list[LayerField]
    rf: tuple
    jump: tuple
    start: tuple
    input_size: tuple
    verified: Optional[bool] = None
    message: str = ""
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        headers = ("layer", "type", "kernel", "stride", "padding", "dilation", "rf", "jump",
                   "start")
        rows = [
            (row.name or "(model)", row.layer_type + (" ~" if row.approximate else ""),
             *(_fmt(v) for v in (row.kernel, row.stride, row.padding, row.dilation, row.rf,
                                 row.jump, row.start)))
            for row in self.layers
        ]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        out = [f"receptive field for input size {self.input_size} (batch dim excluded)",
               line(headers), line(["-" * w for w in widths])]
        out += [line(r) for r in rows] or ["(no spatial layers)"]
        if any(row.approximate for row in self.layers):
            out.append("~ adaptive pooling: kernel = largest window, stride = input/output size")
        out.append(f"rf: {_fmt(self.rf)}  jump: {_fmt(self.jump)}  start: {_fmt(self.start)}")
        out += self.notes
        verdict = {True: "consistent", False: "INCONSISTENT", None: "not checked"}[self.verified]
        out.append(f"verification: {verdict}: {self.message}")
        return "\n".join(out)


def receptive_field(model: nn.Module, input_size: Sequence[int],
                    device: Union[str, torch.device] = "cpu", *,
                    verify: bool = True) -> ReceptiveFieldReport:
    r"""The receptive field of every spatial layer of ``model``, and of its output.

    Runs ``model`` once on a batch of one random input (under ``torch.no_grad``), with forward hooks
    on every leaf convolution, conv-transpose, max/avg pooling, adaptive pooling and max unpooling
    layer (torch's and ours: ours subclass torch's); every other operation (``F.interpolate``
    included) counts as spatially pointwise. See the
    module docstring for the arithmetic. Beyond the textbook rules:

    - ``padding='same'`` (any stride) uses the before-padding actually applied, TensorFlow's rule
      on the observed input length: ``total = max((ceil(L/s)-1)*s + (k-1)*d + 1 - L, 0)``,
      ``before = total // 2``. ``padding_mode`` does not change the field.
    - A conv-transpose of stride ``s`` is read as a stride-1 convolution over the input with
      ``s - 1`` zeros stuffed between its pixels (a fractional stride): ``jump_out = jump_in / s``,
      ``rf_out = rf_in + (ke-1) * jump_out`` and, the stuffed grid being padded by ``ke-1-p``,
      ``start_out = start_in + (p - (ke-1)/2) * jump_out``. The field bounds the pixels a unit
      depends on; the zeros make the true span up to ``(s-1)/s`` of a jump narrower. Max
      unpooling has the same geometry (an output pixel can receive the value of any input pixel
      whose pooling window covers it).
    - An adaptive pool from ``L`` to ``n`` (windows ``[floor(i*L/n), ceil((i+1)*L/n))``) counts as a
      pool with the largest window as kernel and stride ``L/n``, its first window giving ``start``;
      its row is marked approximate.

    Then, unless the model has adaptive pooling or its output has no spatial dims, the arithmetic is
    checked against autograd on a float64 deep copy in eval mode (the model itself is left as is):
    the gradient of the output location nearest the centre (summed over channels, over a few random
    inputs) must be non-zero only inside the predicted field, and reach the field's bounds where
    they lie inside the input. Max pooling passes gradient to its argmax only, and a conv-transpose
    field is an upper bound (max unpooling likewise), so with these only the inside half is
    checked. A failed check is
    reported, never raised.

    Args:
        model (nn.Module): the model; any module whose forward takes one tensor.
        input_size (sequence of int): one input's size without the batch dim, e.g.
            ``(3, 224, 224)``.
        device (str or torch.device, optional): where the input is made (where the model lives).
            Default: ``'cpu'``
        verify (bool, optional): run the gradient check. Default: ``True``

    Returns:
        ReceptiveFieldReport: ``layers`` (a row per spatial layer call), ``rf``, ``jump``, ``start``
        for the output, ``verified`` and ``message``; ``str(report)`` is a table.

    Shape:
        - ``input_size``: :math:`(C, *)` with one or more spatial dims: the model is run on
          :math:`(1, C, *)`.

    Examples::

        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Conv2d(8, 8, 3, padding=1))
        >>> report = receptive_field(model, (3, 32, 32))
        >>> report.rf, report.jump, report.start
        ((7, 7), (2, 2), (0, 0))
        >>> report.verified
        True
        >>> print(report)  # doctest: +SKIP
    """
    input_size = tuple(int(n) for n in input_size)
    if len(input_size) < 2:
        raise ValueError(f"input_size must be (channels, *spatial) without the batch dim, "
                         f"got {input_size}")
    dims = len(input_size) - 1
    param = next(iter(model.parameters()), None)
    floating = param is not None and param.is_floating_point()
    dtype = param.dtype if floating else torch.get_default_dtype()
    generator = torch.Generator().manual_seed(0)  # leave the user's RNG stream alone
    x = torch.randn((1, *input_size), generator=generator, dtype=dtype).to(device)

    # The passes run on an eval-mode copy: a forward in train mode would update BatchNorm's
    # running statistics (and fail on a batch of one with 1x1 maps), and eval BatchNorm and
    # Dropout are pointwise, which the arithmetic assumes.
    try:
        probe = copy.deepcopy(model)
    except Exception:  # not copyable: the model itself, in eval mode, restored after
        probe = None
    tracer = _FieldTracer(probe if probe is not None else model)
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad():
            (probe if probe is not None else model).eval()
            output = tracer.run(x, _Field.identity(dims))
    finally:
        for module, training in modes.items():
            module.training = training

    out_tensor = next((t for t in tree_leaves(output) if isinstance(t, Tensor)), None)
    out_field = tracer.fields.get(out_tensor) if out_tensor is not None else None
    notes = list(tracer.notes)
    if out_field is None or out_field.dims != dims:
        if tracer.rows:
            out_field = tracer.last_field
            notes.append("note: the output's field could not be followed; showing the last layer's")
        else:
            out_field = _Field.identity(dims)
    report = ReceptiveFieldReport(
        layers=tracer.rows, rf=out_field.public("rf"), jump=out_field.public("jump"),
        start=out_field.public("start"), input_size=input_size, notes=notes,
    )

    if not verify:
        report.message = "verify=False"
    elif any(row.approximate for row in tracer.rows):
        report.message = "adaptive pooling makes the field approximate"
    elif out_tensor is None or out_tensor.dim() != dims + 2:
        report.message = "the output has no spatial dims to pick a unit from"
    elif probe is None:
        report.message = "the model could not be deep-copied for the gradient check"
    else:
        inside_only = [why for kind, why in _EDGES_UNCHECKED.items() if kind in tracer.kinds]
        report.verified, report.message = _verify(probe, input_size, out_field, device, inside_only)
    return report


# --------------------------------------------------------------------------------------------------
# Field arithmetic (exact, in fractions: conv-transpose and adaptive pools make them)


@dataclass(frozen=True)
class _Field:
    rf: tuple
    jump: tuple
    start: tuple

    @property
    def dims(self) -> int:
        return len(self.rf)

    @staticmethod
    def identity(dims: int) -> _Field:
        return _Field((Fraction(1),) * dims, (Fraction(1),) * dims, (Fraction(0),) * dims)

    def bounds(self, index: Sequence[int]) -> list[tuple[Fraction, Fraction]]:
        """The input interval unit ``index`` sees, per dim."""
        return [(s + i * j - (r - 1) / 2, s + i * j + (r - 1) / 2)
                for r, j, s, i in zip(self.rf, self.jump, self.start, index)]

    def public(self, name: str) -> tuple:
        return tuple(_number(v) for v in getattr(self, name))


def _union(fields: list[_Field]) -> _Field:
    """The field of a tensor computed elementwise from tensors of these fields (a residual add,
    a concatenation): each unit sees what its counterparts together see."""
    dims = fields[0].dims
    fields = [f for f in fields if f.dims == dims]
    if len(fields) == 1:
        return fields[0]
    rf, jump, start = [], [], []
    for d in range(dims):
        lo = min(f.start[d] - (f.rf[d] - 1) / 2 for f in fields)
        hi = max(f.start[d] + (f.rf[d] - 1) / 2 for f in fields)
        rf.append(hi - lo + 1)
        start.append((lo + hi) / 2)
        # Operands of one elementwise op have the same spatial size, hence (normally) one jump;
        # the coarsest is the safe pick if a model resamples one of them.
        jump.append(max(f.jump[d] for f in fields))
    return _Field(tuple(rf), tuple(jump), tuple(start))


def _number(value: Fraction) -> Number:
    return int(value) if value.denominator == 1 else float(value)


def _fmt(values: tuple) -> str:
    def one(v) -> str:
        if isinstance(v, Fraction):
            v = _number(v)
        return f"{v:g}" if isinstance(v, float) else str(v)
    return "x".join(one(v) for v in values)


def _layer_geometry(module: nn.Module, in_sizes: Sequence[int], out_sizes: Sequence[int]):
    """(kernel, stride, before-padding, dilation, approximate, kind, first window) of one call,
    per dim; stride as a Fraction (adaptive pools have fractional strides); the first window's
    size for adaptive pools, else None."""
    dims = len(in_sizes)
    if isinstance(module, _ADAPTIVE):
        kernel, stride, start_window = [], [], []
        for length, n in zip(in_sizes, out_sizes):
            windows = [-(-(i + 1) * length // n) - (i * length // n) for i in range(n)]
            kernel.append(max(windows))
            stride.append(Fraction(length, n))
            start_window.append(windows[0])
        return (tuple(kernel), tuple(stride), (0,) * dims, (1,) * dims, True, "adaptive pooling",
                tuple(start_window))
    op = type(module).__name__
    kernel = ntuple(module.kernel_size, dims, "kernel_size", op)
    # pools: a stride of None or () means kernel_size
    stride = kernel if module.stride in (None, ()) else ntuple(module.stride, dims, "stride", op)
    dilation = ntuple(getattr(module, "dilation", 1), dims, "dilation", op)  # AvgPool has none
    # 'same' is TensorFlow's rule (torch's own with stride 1), as our layers apply it.
    padding = conv_padding(module.padding, dims, in_sizes, kernel, stride, dilation, op)[:dims]
    kind = ("conv-transpose" if isinstance(module, _ConvTransposeNd) else
            "max unpooling" if isinstance(module, _MaxUnpoolNd) else
            "conv" if isinstance(module, _ConvNd) else
            "max pooling" if isinstance(module, _MaxPoolNd) else "avg pooling")
    return (tuple(kernel), tuple(Fraction(s) for s in stride), tuple(padding), tuple(dilation),
            False, kind, None)


def _apply(module: nn.Module, name: str, field_in: _Field, in_sizes,
           out_sizes) -> tuple[_Field, LayerField, str]:
    kernel, stride, padding, dilation, approximate, kind, first_window = _layer_geometry(
        module, in_sizes, out_sizes)
    rf, jump, start = [], [], []
    for d in range(field_in.dims):
        ke = dilation[d] * (kernel[d] - 1) + 1
        r, j, s = field_in.rf[d], field_in.jump[d], field_in.start[d]
        if kind in ("conv-transpose", "max unpooling"):
            # Fractional stride: see receptive_field's docstring. Max unpooling has the same
            # geometry: output o can receive input i's value when o is in i's pooling window.
            j_out = j / stride[d]
            rf.append(r + (ke - 1) * j_out)
            jump.append(j_out)
            start.append(s + (padding[d] - Fraction(ke - 1, 2)) * j_out)
        else:
            rf.append(r + (ke - 1) * j)
            jump.append(j * stride[d])
            # An adaptive pool's first window is [0, ceil(L/n)): its centre, not the largest
            # window's, places unit 0.
            lead = Fraction(first_window[d] - 1, 2) if first_window else Fraction(ke - 1, 2)
            start.append(s + (lead - padding[d]) * j)
    out = _Field(tuple(rf), tuple(jump), tuple(start))
    row = LayerField(
        name=name, kernel=tuple(kernel), stride=tuple(_number(s) for s in stride),
        padding=tuple(padding), dilation=tuple(dilation), rf=out.public("rf"),
        jump=out.public("jump"), start=out.public("start"), layer_type=type(module).__name__,
        approximate=approximate,
    )
    return out, row, kind


def _spatial_dims(module: nn.Module) -> int:
    if isinstance(module, _ConvNd):
        return len(module.kernel_size)
    for dims, classes in _POOL_DIMS.items():
        if isinstance(module, classes):
            return dims
    raise TypeError(f"not a spatial layer: {type(module).__name__}")


# --------------------------------------------------------------------------------------------------
# Following the fields through a forward pass


class _FieldTracer(TorchFunctionMode):
    """Gives every tensor made from the input the field of its units: spatial layers by their
    arithmetic (forward hooks), every other torch operation as the union of its inputs' fields."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.fields: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.rows: list[LayerField] = []
        self.kinds: set[str] = set()
        self.notes: list[str] = []
        self.last_field: Optional[_Field] = None
        # Inside a spatial layer its own forward hook sets the output's field; what its internals
        # do (padding copies, our ops) must not be mistaken for pointwise steps.
        self._inside = 0
        self._pending: list[tuple[_Field, tuple]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._inside == 0:
            fields = [self.fields[t] for t in tree_leaves((args, kwargs))
                      if isinstance(t, Tensor) and t in self.fields]
            if fields:
                merged = _union(fields)
                for t in tree_leaves(out):
                    if isinstance(t, Tensor):
                        self.fields[t] = merged
        return out

    def run(self, x: Tensor, field_in: _Field) -> Any:
        handles = []
        for name, module in self.model.named_modules():
            if isinstance(module, _SPATIAL) and next(module.children(), None) is None:
                handles.append(module.register_forward_pre_hook(self._pre_hook))
                handles.append(module.register_forward_hook(self._make_post_hook(name)))
        self.fields[x] = field_in
        try:
            with self:
                return self.model(x)
        finally:
            for handle in handles:
                handle.remove()

    def _pre_hook(self, module: nn.Module, args: tuple) -> None:
        dims = _spatial_dims(module)
        x = args[0] if args else None
        field_in = self.fields.get(x) if isinstance(x, Tensor) else None
        if field_in is None or field_in.dims != dims:
            if field_in is not None:
                self.notes.append(f"note: a {dims}-d layer got a {field_in.dims}-d field; "
                                  "restarted from its input")
            field_in = _Field.identity(dims)
        in_sizes = tuple(x.shape[-dims:]) if isinstance(x, Tensor) else ()
        self._pending.append((field_in, in_sizes))
        self._inside += 1

    def _make_post_hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self._inside -= 1
            field_in, in_sizes = self._pending.pop()
            dims = field_in.dims
            first = next((t for t in tree_leaves(output) if isinstance(t, Tensor)), None)
            out_sizes = tuple(first.shape[-dims:]) if first is not None else in_sizes
            field_out, row, kind = _apply(module, name, field_in, in_sizes, out_sizes)
            self.rows.append(row)
            self.kinds.add(kind)
            self.last_field = field_out
            for t in tree_leaves(output):
                # return_indices: the indices tensor is as spatial as the values.
                if isinstance(t, Tensor):
                    self.fields[t] = field_out
        return hook


# --------------------------------------------------------------------------------------------------
# The gradient check


def _verify(probe: nn.Module, input_size: tuple, field_out: _Field, device,
            inside_only: list[str]) -> tuple[Optional[bool], str]:
    """Checks the field against autograd; ``probe`` is a copy of the model in eval mode."""
    dims = field_out.dims
    seen = None
    try:
        # float64: a gradient that is tiny but not zero must not round away.
        probe = probe.double()
        generator = torch.Generator().manual_seed(1)
        # Several random inputs, gradients summed in absolute value: a ReLU that is dead for one
        # input rarely is for all, so the field's edges show up. One at a time: the analysis ran
        # a batch of one, and some models hard-code it.
        for _ in range(_VERIFY_INPUTS):
            x = torch.randn((1, *input_size), generator=generator, dtype=torch.float64).to(device)
            x.requires_grad_(True)
            with torch.enable_grad():
                out = next(t for t in tree_leaves(probe(x)) if isinstance(t, Tensor))
                centre = tuple(n // 2 for n in out.shape[-dims:])
                out[(0, slice(None), *centre)].sum().backward()
            if x.grad is None:
                return None, "the output does not depend on the input through autograd"
            hit = x.grad[0].abs().sum(dim=0) != 0  # spatial mask over the input
            seen = hit if seen is None else seen | hit
    except Exception as error:  # the analysis stands without the check
        return None, f"the gradient check could not run ({type(error).__name__}: {error})"

    lengths = input_size[1:]
    predicted = field_out.bounds(centre)
    unit = "x".join(str(c) for c in centre)
    if not seen.any():
        return None, f"output unit {unit} has zero gradient for every input pixel"
    problems, checked_edges = [], not inside_only
    for d, (lo, hi) in enumerate(predicted):
        other = tuple(i for i in range(dims) if i != d)
        hit = seen.any(dim=other) if other else seen
        where = torch.nonzero(hit).flatten()
        obs_lo, obs_hi = int(where.min()), int(where.max())
        if obs_lo < lo or obs_hi > hi:
            problems.append(f"dim {d}: gradient on [{obs_lo}, {obs_hi}] outside the predicted "
                            f"[{_fmt((lo,))}, {_fmt((hi,))}]")
        elif checked_edges:
            if 0 <= lo <= lengths[d] - 1 and obs_lo != lo:
                problems.append(f"dim {d}: gradient starts at {obs_lo}, predicted {_fmt((lo,))}")
            if 0 <= hi <= lengths[d] - 1 and obs_hi != hi:
                problems.append(f"dim {d}: gradient ends at {obs_hi}, predicted {_fmt((hi,))}")
    field_text = ", ".join(f"[{_fmt((lo,))}, {_fmt((hi,))}]" for lo, hi in predicted)
    if problems:
        return False, f"output unit {unit}, predicted field {field_text}: " + "; ".join(problems)
    if inside_only:
        return True, (f"gradient of output unit {unit} lies inside the predicted field "
                      f"{field_text}; edges not checked: {'; '.join(inside_only)}")
    return True, (f"gradient of output unit {unit} fills the predicted field {field_text} "
                  f"(clipped to the input)")
