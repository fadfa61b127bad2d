"""The effective receptive field lies inside the analytic one and fills it where every path
counts (Luo et al. 2016); analytic_box places the centre unit's field."""
import pytest
import torch
from torch import nn

import torch_convpool as tc
from torch_convpool.effective_rf import analytic_box, effective_receptive_field, last_spatial_layer


def _support(heat: torch.Tensor):
    rows, cols = torch.nonzero(heat, as_tuple=True)
    return (rows.min().item(), cols.min().item()), (rows.max().item(), cols.max().item())


@pytest.mark.parametrize("layers", [
    [tc.Conv2d(1, 2, 3, padding=1)],
    [tc.Conv2d(1, 2, 3, padding=1, dilation=1), tc.MaxPool2d(2), tc.Conv2d(2, 2, 3, dilation=2)],
    [tc.Conv2d(1, 2, 5, stride=2, padding=2), tc.AvgPool2d(3, stride=1), tc.Conv2d(2, 1, 3)],
])
def test_linear_positive_nets_fill_exactly_the_analytic_box(layers):
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.1, 1.0)  # no cancellation: every pixel of the field moves the unit
    x = torch.randn(4, 1, 20, 20)
    heat = effective_receptive_field(model, x)
    assert heat.shape == (20, 20) and heat.max() == 1
    report = tc.receptive_field(model, (1, 20, 20))
    box = analytic_box(report, tuple(model(x).shape[2:]))
    low = tuple(max(0, int(v)) for v in box.low)
    high = tuple(min(19, int(v)) for v in box.high)
    if not any(isinstance(m, nn.MaxPool2d) for m in layers):
        assert _support(heat) == (low, high)
    else:  # max pooling passes gradient to its argmax only: inside the box
        (r0, c0), (r1, c1) = _support(heat)
        assert low[0] <= r0 and low[1] <= c0 and r1 <= high[0] and c1 <= high[1]


def test_a_layer_output_is_used_when_given():
    model = nn.Sequential(tc.Conv2d(1, 1, 3, padding=1), tc.Conv2d(1, 1, 3, padding=1),
                          nn.Flatten())
    heat = effective_receptive_field(model, torch.randn(2, 1, 9, 9), layer=model[0])
    assert (heat > 0).sum() <= 9
    with pytest.raises(ValueError, match="spatial"):
        effective_receptive_field(model, torch.randn(2, 1, 9, 9))


def test_last_spatial_layer_skips_adaptive_pooling():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1))
    layer, row = last_spatial_layer(model, (3, 16, 16))
    assert layer is model[2] and row == 1
