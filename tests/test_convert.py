"""convert(): torch.nn conv/pool layers swapped for ours, the model's behaviour unchanged."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.testing import assert_close

import torch_convpool.nn as cnn
from torch_convpool.convert import CONVERTIBLE, conversion_report, convert


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return torch.relu(out)


class ResNetStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        self.layers = nn.ModuleList([BasicBlock(8, 8), BasicBlock(8, 16, stride=2)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def vgg_style() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 5),
    )


def mobilenet_style() -> nn.Module:
    def separable(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        separable(8, 16, 1), separable(16, 32, 2),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 5),
    )


class EncoderDecoder1d(nn.Module):
    """The 1d families, conv-transpose and max unpooling included."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool1d(2, return_indices=True)
        self.unpool = nn.MaxUnpool1d(2)
        self.up = nn.ConvTranspose1d(4, 2, 3, padding=1)
        self.avg = nn.AvgPool1d(3, stride=1, padding=1)
        self.head = nn.AdaptiveAvgPool1d(4)

    def forward(self, x):
        pooled, indices = self.pool(torch.relu(self.conv(x)))
        return self.head(self.avg(self.up(self.unpool(pooled, indices))))


def volumetric() -> nn.Module:
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
                         nn.ConvTranspose3d(4, 2, 2, stride=2), nn.AvgPool3d(2),
                         nn.AdaptiveMaxPool3d(2))


MODELS = {
    "resnet": (ResNetStyle, (2, 3, 32, 32)),
    "vgg": (vgg_style, (2, 3, 16, 16)),
    "mobilenet": (mobilenet_style, (2, 3, 32, 32)),
    "encoder_decoder_1d": (EncoderDecoder1d, (2, 2, 16)),
    "volumetric": (volumetric, (2, 1, 8, 8, 8)),
}


def build(name):
    torch.manual_seed(0)
    factory, size = MODELS[name]
    return factory(), torch.randn(size)


def converted_type(module: nn.Module):
    """What convert() should make of ``module``'s type: ours when it converts, else its own."""
    name = type(module).__name__
    if name in CONVERTIBLE and type(module) is getattr(nn, name) and hasattr(cnn, name):
        return getattr(cnn, name)
    return type(module)


@pytest.mark.parametrize("name", MODELS)
def test_converted_model_gives_the_same_outputs_and_gradients(name):
    model, x = build(name)
    fast = convert(model)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = fast(x1), model(x2)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    out.square().sum().backward()
    expected.square().sum().backward()
    assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
    theirs = dict(model.named_parameters())
    for key, p in fast.named_parameters():
        assert_close(p.grad, theirs[key].grad, rtol=1e-4, atol=1e-4, msg=key)


@pytest.mark.parametrize("name", MODELS)
def test_every_convertible_layer_becomes_ours(name):
    model, _ = build(name)
    fast = convert(model)
    originals = dict(model.named_modules())
    for key, module in fast.named_modules():
        assert type(module) is converted_type(originals[key]), key
        if isinstance(module, _ConvNd):  # the conv families exist now, so none may stay torch's
            assert type(module).__module__.startswith("torch_convpool"), key


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_keys_and_values_are_unchanged(name):
    model, _ = build(name)
    before = model.state_dict()
    after = convert(model).state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("name", MODELS)
def test_inplace_false_leaves_the_original_untouched(name):
    model, _ = build(name)
    types = {key: type(m) for key, m in model.named_modules()}
    params = {key: p for key, p in model.named_parameters()}
    fast = convert(model, inplace=False)
    assert fast is not model
    assert {key: type(m) for key, m in model.named_modules()} == types
    for key, p in fast.named_parameters():
        assert p is not params[key] and torch.equal(p, params[key])


@pytest.mark.parametrize("name", MODELS)
def test_inplace_true_swaps_layers_inside_the_model_sharing_parameters(name):
    model, _ = build(name)
    params = {key: p for key, p in model.named_parameters()}
    originals = {key: converted_type(m) for key, m in model.named_modules()}
    assert convert(model, inplace=True) is model
    assert {key: type(m) for key, m in model.named_modules()} == originals
    assert all(p is params[key] for key, p in model.named_parameters())


def test_training_flag_and_hooks_are_kept():
    model, x = build("vgg")
    model.eval()
    calls = []
    handle = model[0].register_forward_hook(lambda m, args, out: calls.append(type(m)))
    convert(model, inplace=True)
    assert not any(m.training for m in model.modules())
    model(x)
    assert calls == [cnn.Conv2d]
    handle.remove()  # the handle taken on the torch layer removes it from ours
    model(x)
    assert len(calls) == 1


def test_a_single_layer_is_converted_and_returned():
    layer = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    copied = convert(layer)
    assert type(copied) is cnn.Conv2d and type(layer) is nn.Conv2d
    assert copied.weight is not layer.weight
    assert_close(copied(x), layer(x), rtol=1e-4, atol=1e-4)
    shared = convert(layer, inplace=True)
    assert type(shared) is cnn.Conv2d and shared.weight is layer.weight


def test_subclasses_and_other_layers_are_left_alone():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(3, 4, 3), nn.BatchNorm2d(4), cnn.Conv2d(4, 4, 3), nn.ReLU())
    fast = convert(model)
    assert [type(m) for m in fast] == [MyConv, nn.BatchNorm2d, cnn.Conv2d, nn.ReLU]


def test_a_shared_layer_stays_shared():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    fast = convert(model)
    assert type(fast[0]) is cnn.Conv2d and fast[0] is fast[2]
    assert len(list(fast.parameters())) == 2


def test_converting_twice_changes_nothing_more():
    model, x = build("resnet")
    once = convert(model)
    twice = convert(once)
    assert [type(m) for m in twice.modules()] == [type(m) for m in once.modules()]
    assert_close(twice(x), once(x))


def test_not_a_module_is_a_type_error():
    with pytest.raises(TypeError, match="nn.Module"):
        convert(copy)


def test_torchvision_resnet18():
    models = pytest.importorskip("torchvision.models")
    model = models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    fast = convert(model)
    assert all(type(m).__module__.startswith("torch_convpool")
               for m in fast.modules() if isinstance(m, _ConvNd))
    with torch.no_grad():
        assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


class GoogLeNetStyle(nn.Module):
    """An inception block written with functional calls (weights as parameters, no conv or pool
    modules): only the rerouting can make it ours."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Parameter(torch.randn(8, 3, 7, 7) * 0.1)
        self.branch1 = nn.Parameter(torch.randn(4, 8, 1, 1) * 0.3)
        self.branch3 = nn.Parameter(torch.randn(4, 8, 3, 3) * 0.1)
        self.branch5 = nn.Parameter(torch.randn(4, 8, 5, 5) * 0.1)
        self.pool_proj = nn.Parameter(torch.randn(4, 8, 1, 1) * 0.3)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.max_pool2d(F.relu(F.conv2d(x, self.stem, stride=2, padding=3)), 3, 2, ceil_mode=True)
        branches = [
            F.conv2d(x, self.branch1),
            F.conv2d(x, self.branch3, padding=1),
            F.conv2d(x, self.branch5, padding=2),
            F.conv2d(F.max_pool2d(x, 3, 1, padding=1), self.pool_proj),
        ]
        x = F.avg_pool2d(torch.cat(branches, 1), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _torchvision(name):
    models = pytest.importorskip("torchvision.models")
    return getattr(models, name)(num_classes=5)


# (model factory, the calls its forward makes outside modules)
WHOLE_MODELS = {
    "resnet18": (lambda: _torchvision("resnet18"), {}),
    "mobilenet_v2": (lambda: _torchvision("mobilenet_v2"), {"F.adaptive_avg_pool2d": 1}),
    "densenet121": (lambda: _torchvision("densenet121"), {"F.adaptive_avg_pool2d": 1}),
    "googlenet_style": (GoogLeNetStyle, {"F.conv2d": 5, "F.max_pool2d": 2, "F.avg_pool2d": 1,
                                         "F.adaptive_avg_pool2d": 1}),
}


def _profiled_step(net: nn.Module, x: torch.Tensor):
    """One training step's output and gradients, and the torch conv/pool ops it ran."""
    net.zero_grad()
    with torch.profiler.profile() as prof:
        out = net(x)
        out.square().sum().backward()
    ops = {e.name for e in prof.events()
           if e.name.startswith("aten::") and ("conv" in e.name or "pool" in e.name)}
    return out, {k: p.grad for k, p in net.named_parameters()}, ops


@pytest.mark.parametrize("name", WHOLE_MODELS)
def test_whole_model_is_ours_with_torchs_outputs_and_gradients(name):
    factory, functional_calls = WHOLE_MODELS[name]
    torch.manual_seed(0)
    # Compared in eval mode: BatchNorm in training over a batch of 1x1 maps amplifies float32
    # rounding differences in the gradients (to ~1e-3 in resnet18); in eval it is pointwise.
    model = factory().eval()
    fast = convert(model)
    x = torch.randn(1, 3, 32, 32)
    expected, expected_grads, torch_ops = _profiled_step(model, x)
    out, grads, ops = _profiled_step(fast, x)
    assert torch_ops and not ops  # torch's run shows its ops, so the check can fail
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    for key, grad in grads.items():
        scale = expected_grads[key].abs().max().item()
        assert_close(grad, expected_grads[key], rtol=1e-3, atol=1e-4 * scale + 1e-6, msg=key)
    # A training step (BatchNorm on batch statistics, Dropout on) runs no torch conv/pool op.
    assert not _profiled_step(fast.train(), torch.randn(2, 3, 32, 32))[2]
    report = conversion_report(fast)
    assert report.kept == [] and not report.left_to_torch
    assert {k: v // 2 for k, v in report.rerouted.items()} == functional_calls  # 2 steps ran
    assert "replaced" in str(report)


def test_the_report_lists_subclasses_and_layers_we_lack():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(3, 4, 3), nn.LPPool2d(2, 2),
                          nn.FractionalMaxPool2d(2, output_size=2), nn.Conv2d(4, 4, 1))
    fast = convert(model, example_inputs=(torch.randn(1, 3, 10, 10),))
    report = conversion_report(fast)
    assert report.replaced == {"nn.Conv2d": 1}
    assert [(k.path, k.type_name) for k in report.kept] == [
        ("0", "MyConv"), ("1", "LPPool2d"), ("2", "FractionalMaxPool2d")]
    # MyConv's functional call is ours; LP and fractional pooling stay torch's
    assert report.rerouted == {"F.conv2d": 1}
    assert sorted(report.left_to_torch) == [
        ("F.fractional_max_pool2d", "no counterpart in torch_convpool"),
        ("F.lp_pool2d", "no counterpart in torch_convpool")]
    text = str(report)
    assert "MyConv" in text and "FractionalMaxPool2d" in text and "rerouted" in text


def test_example_inputs_leave_batchnorm_statistics_alone():
    model, x = build("resnet")
    before = {k: b.clone() for k, b in model.named_buffers()}
    fast = convert(model, inplace=True, example_inputs=(x,))
    assert all(torch.equal(b, before[k]) for k, b in fast.named_buffers())
    assert conversion_report(fast).replaced["nn.Conv2d"] == 6


def test_functional_false_swaps_modules_only():
    model = GoogLeNetStyle()
    fast = convert(model, functional=False)
    assert "forward" not in fast.__dict__
    with torch.profiler.profile() as prof:
        fast(torch.randn(1, 3, 32, 32))
    assert any(e.name.startswith("aten::conv") for e in prof.events())
    assert "not rerouted" in str(conversion_report(fast))


def test_conversion_report_of_an_unconverted_model_is_a_value_error():
    with pytest.raises(ValueError, match="convert"):
        conversion_report(nn.Conv2d(1, 1, 1))


def test_converted_model_compiles_and_exports_with_our_ops():
    torch.manual_seed(0)
    model = GoogLeNetStyle().eval()
    fast, x = convert(model), torch.randn(1, 3, 32, 32)
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    with torch.no_grad():
        assert_close(torch.compile(fast, backend=backend)(x), model(x), rtol=1e-4, atol=1e-4)
    assert {"convpool.conv.default", "convpool.max_pool_values.default", "convpool.avg_pool.default",
            "convpool.adaptive_avg_pool.default"} <= set(targets)
    program = torch.export.export(fast, (x,))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "convpool.conv.default" in ops and not [op for op in ops if "convolution" in op]
    with torch.no_grad():
        assert_close(program.module()(x), model(x), rtol=1e-4, atol=1e-4)
