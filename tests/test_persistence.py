"""What users do with models of our layers: torch.save / torch.load, state_dict, deepcopy."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import torch_convpool as tc


def _ours() -> nn.Module:
    return nn.Sequential(
        tc.Conv2d(3, 8, 3, stride=2, padding="same"), nn.ReLU(),
        tc.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        tc.DepthwiseSeparableConv2d(8, 16, 3, padding=1, depth_multiplier=2), nn.ReLU(),
        tc.AvgPool2d(2, count_include_pad=False), tc.ConvTranspose2d(16, 8, 2, stride=2),
        tc.AdaptiveMaxPool2d(3), tc.GlobalAvgPool2d(flatten=True), nn.Linear(8, 4),
    )


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.conv(x), 2)


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def _same_model(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
    assert repr(a) == repr(b)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(pa, pb)
    assert torch.equal(a(x), b(x))


def test_whole_model_save_and_load():
    model, x = _ours(), torch.randn(2, 3, 20, 20)
    _same_model(_roundtrip(model), model, x)


def test_state_dict_saves_and_loads_into_ours_and_torchs():
    model, x = _ours(), torch.randn(2, 3, 20, 20)
    fresh = _ours()
    fresh.load_state_dict(_roundtrip(model.state_dict()))
    _same_model(fresh, model, x)
    # and into a torch.nn model of the same layers (strided 'same' is ours only: stride 1 here)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    ours = tc.convert(plain)
    plain.load_state_dict(_roundtrip(ours.state_dict()))
    assert_close(plain(x), ours(x), rtol=1e-5, atol=1e-5)


def test_deepcopy_is_independent_and_equal():
    model, x = _ours(), torch.randn(2, 3, 20, 20)
    twin = copy.deepcopy(model)
    _same_model(twin, model, x)
    with torch.no_grad():
        twin[0].weight.add_(1)
    assert not torch.equal(twin[0].weight, model[0].weight)


@pytest.mark.parametrize("persist", [copy.deepcopy, _roundtrip], ids=["deepcopy", "save_load"])
def test_a_converted_model_keeps_its_rerouting(persist):
    model, x = _Functional(), torch.randn(1, 3, 10, 10)
    fast = persist(tc.convert(model))
    assert fast.forward.args[0] is fast  # the wrapper follows the copy, not the original
    with torch.profiler.profile() as prof:
        out = fast(x)
    assert_close(out, model(x), rtol=1e-5, atol=1e-5)
    assert not [e.name for e in prof.events() if e.name.startswith("aten::adaptive")]
    assert tc.conversion_report(fast).rerouted["F.adaptive_avg_pool2d"] == 1
