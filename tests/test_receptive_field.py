"""receptive_field() against hand-derived fields, and its gradient check.

Notation: after a layer of kernel k, dilation d (ke = d*(k-1)+1), stride s, before-padding p:
rf += (ke-1)*jump; start += ((ke-1)/2 - p)*jump; jump *= s. Input pixel centres at 0, 1, 2, ...;
output unit i sees [start + i*jump - (rf-1)/2, start + i*jump + (rf-1)/2].
"""
import subprocess
import sys
from pathlib import Path

import pytest
import rf_models
import torch
from torch import nn

import torch_convpool.nn as cnn
from torch_convpool.__main__ import main
from torch_convpool.nn.separable import DepthwiseSeparableConv2d
from torch_convpool.receptive_field import LayerField, ReceptiveFieldReport, receptive_field

ROOT = Path(__file__).resolve().parent.parent


def seq(*layers):
    return lambda: nn.Sequential(*layers)


# (id, model factory, input size, rf, jump, start), rf/jump/start for every spatial dim alike.
CASES = [
    # 3x3, no padding: unit 0 sees pixels 0..2, centred on 1.
    ("conv3_pad0", seq(nn.Conv2d(1, 4, 3)), (1, 9, 9), 3, 1, 1),
    # 3x3, pad 1: unit 0 sees pixels -1..1, centred on 0.
    ("conv3_pad1", seq(nn.Conv2d(1, 4, 3, padding=1)), (1, 9, 9), 3, 1, 0),
    # 3 + 2 = 5.
    ("two_conv3", seq(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)),
     (1, 12, 12), 5, 1, 0),
    # 3 + 2 + 2 = 7.
    ("three_conv3", seq(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)), (1, 12, 12), 7, 1, 0),
    # 3x3 s2 p1: rf 3, jump 2, start 0; then 3x3 p1: 3 + 2*2 = 7, jump 2.
    ("conv3_s2_then_conv3", seq(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                nn.Conv2d(4, 4, 3, padding=1)), (1, 16, 16), 7, 2, 0),
    # ke = 2*(3-1)+1 = 5 with pad 2: rf 5, start (5-1)/2 - 2 = 0.
    ("dilated_conv3", seq(nn.Conv2d(1, 4, 3, dilation=2, padding=2)), (1, 11, 11), 5, 1, 0),
    # 3 then ke 5: 3 + 4 = 7.
    ("conv3_then_dilated", seq(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(4, 4, 3, dilation=2, padding=2)), (1, 13, 13), 7, 1, 0),
    # conv rf 3; pool 2/2: 3 + 1 = 4, jump 2, start 0 + (1/2 - 0)*1 = 0.5.
    ("conv3_then_maxpool2", seq(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2)), (1, 12, 12),
     4, 2, 0.5),
    # See rf_models for the derivations.
    ("resnet_stem_stack", rf_models.resnet_stem_stack, (3, 64, 64), 27, 4, 0),
    ("vgg_like", rf_models.vgg_like, (3, 32, 32), 16, 4, 1.5),
    ("resnet_like", rf_models.resnet_like, (3, 64, 64), 51, 8, 0),
    # 1d: k5 s2 p2: rf 5, jump 2, start 0; k3 p1: 5 + 2*2 = 9.
    ("conv1d_stack", seq(nn.Conv1d(2, 4, 5, stride=2, padding=2), nn.ReLU(),
                         nn.Conv1d(4, 4, 3, padding=1)), (2, 20), 9, 2, 0),
    # 1d: k3 p0: rf 3, start 1; avg pool 3 s2 p1: 3 + 2 = 5, jump 2, start 1 + (1 - 1)*1 = 1.
    ("conv1d_then_avgpool", seq(nn.Conv1d(2, 4, 3), nn.AvgPool1d(3, stride=2, padding=1)),
     (2, 15), 5, 2, 1),
    # 3d: k3 s2 p1: rf 3, jump 2; k3 p1: 3 + 2*2 = 7.
    ("conv3d_stack", seq(nn.Conv3d(1, 2, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv3d(2, 2, 3, padding=1)), (1, 10, 10, 10), 7, 2, 0),
    # conv 3x3 s2 p1: rf 3, jump 2, start 0. Transpose k4 s2 p1 on the zero-stuffed grid of
    # spacing 2/2 = 1: rf 3 + 3*1 = 6, start 0 + (1 - 3/2)*1 = -0.5, jump 1.
    ("conv_then_conv_transpose", seq(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                     nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)),
     (1, 12, 12), 6, 1, -0.5),
    # Transpose k3 s1 p1 is a 3x3 conv with pad 1: rf 3, start 0.
    ("conv_transpose_s1", seq(nn.ConvTranspose2d(1, 2, 3, padding=1)), (1, 9, 9), 3, 1, 0),
    # Transpose 1d k2 s2: jump 1/2, rf 1 + 1*(1/2) = 1.5, start 0 + (0 - 1/2)*(1/2) = -0.25
    # (output 2i and 2i+1 both see input i: [i - 0.5, i] and [i, i + 0.5]).
    ("conv_transpose1d_k2_s2", seq(nn.ConvTranspose1d(1, 2, 2, stride=2)), (1, 10), 1.5, 0.5,
     -0.25),
    # Ours, 'same' with stride 2 on 8: total pad max(3*2 + 3 - 8, 0) = 1, before 0, so start
    # 0 + (1 - 0)*1 = 1; on 9: total max(4*2 + 3 - 9, 0) = 2, before 1, start 0.
    ("strided_same_even", seq(cnn.Conv2d(1, 2, 3, stride=2, padding="same")), (1, 8, 8), 3, 2, 1),
    ("strided_same_odd", seq(cnn.Conv2d(1, 2, 3, stride=2, padding="same")), (1, 9, 9), 3, 2, 0),
    # torch 'same' with an even kernel 4: total 3, before 1: start 3/2 - 1 = 0.5.
    ("same_even_kernel", seq(nn.Conv1d(1, 2, 4, padding="same")), (1, 10), 4, 1, 0.5),
    # padding_mode does not matter: 3x3 p1 reflect is rf 3, start 0.
    ("reflect_padding", seq(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 8, 8),
     3, 1, 0),
    # Separable 3x3 s2 p1 (rf 3, jump 2) then separable 3x3 p1 (3 + 2*2 = 7); 1x1s change nothing.
    ("separable_stack", seq(DepthwiseSeparableConv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                            DepthwiseSeparableConv2d(8, 8, 3, padding=1)), (3, 16, 16), 7, 2, 0),
]


def spatial(value, size):
    return (value,) * (len(size) - 1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("factory,size,rf,jump,start", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_field_matches_hand_derivation(factory, size, rf, jump, start):
    report = receptive_field(factory(), size)
    assert report.rf == spatial(rf, size)
    assert report.jump == spatial(jump, size)
    assert report.start == spatial(start, size)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("factory,size", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_gradient_check_agrees(factory, size):
    report = receptive_field(factory(), size)
    assert report.verified is True, report.message


CONV_ONLY = ["conv3_pad0", "three_conv3", "conv3_s2_then_conv3", "conv3_then_dilated",
             "conv1d_stack", "conv3d_stack", "strided_same_even", "separable_stack"]


@pytest.mark.parametrize("factory,size", [c[1:3] for c in CASES if c[0] in CONV_ONLY],
                         ids=[c[0] for c in CASES if c[0] in CONV_ONLY])
def test_conv_only_models_have_their_edges_checked(factory, size):
    report = receptive_field(factory(), size)
    assert report.verified is True and "fills the predicted field" in report.message


@pytest.mark.parametrize("factory,size,why", [
    (rf_models.vgg_like, (3, 32, 32), "argmax"),
    (seq(nn.ConvTranspose2d(1, 2, 4, stride=2, padding=1)), (1, 8, 8), "upper bound"),
], ids=["maxpool", "conv_transpose"])
def test_edges_are_not_checked_where_gradient_cannot_reach_them(factory, size, why):
    report = receptive_field(factory(), size)
    assert report.verified is True and "inside the predicted field" in report.message
    assert why in report.message


def test_vgg_rows_follow_the_stack():
    report = receptive_field(rf_models.vgg_like(), (3, 32, 32))
    assert [row.name for row in report.layers] == [
        "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2"]
    assert [row.rf[0] for row in report.layers] == [3, 5, 6, 10, 14, 16]
    assert [row.jump[0] for row in report.layers] == [1, 1, 2, 2, 2, 4]
    assert [row.start[0] for row in report.layers] == [0, 0, 0.5, 0.5, 0.5, 1.5]
    pool = report.layers[2]
    assert (pool.kernel, pool.stride, pool.padding, pool.dilation) == (
        (2, 2), (2, 2), (0, 0), (1, 1))
    assert all(isinstance(row, LayerField) for row in report.layers)


def test_shortcut_branch_runs_beside_the_main_branch():
    report = receptive_field(rf_models.resnet_like(), (3, 64, 64))
    rows = {row.name: row for row in report.layers}
    assert list(rows) == ["conv1", "maxpool", "layer1.conv1", "layer1.conv2", "layer2.conv1",
                          "layer2.conv2", "layer2.downsample.0"]
    # The 1x1 s2 shortcut sees the block input (rf 27, jump 4), not conv2's output.
    assert (rows["layer2.downsample.0"].rf, rows["layer2.downsample.0"].jump) == ((27, 27), (8, 8))
    assert (rows["layer2.conv2"].rf, rows["layer2.conv2"].jump) == ((51, 51), (8, 8))


class TinyUNet(nn.Module):
    """A skip connection (concatenation) around a pool / unpool and a conv-transpose.

    c1 3x3 p1: rf 3, jump 1, start 0 (kept as the skip `a`)
    pool 2/2: rf 4, jump 2, start 0.5;  c2 3x3 p1: rf 8, jump 2, start 0.5
    unpool 2/2 (conv-transpose geometry, k2 s2 p0): jump 1, rf 8 + 1 = 9, start 0.5 - 0.5 = 0
    up (transpose k2 s2 p0): the same, rf 9, jump 1, start 0
    cat(a, unpool, up): union of rf 3 and rf 9 around 0: rf 9;  c3 3x3 p1: rf 11, jump 1, start 0
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.unpool = nn.MaxUnpool2d(2)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.c3 = nn.Conv2d(12, 2, 3, padding=1)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        pooled, indices = self.pool(a)
        b = torch.relu(self.c2(pooled))
        return self.c3(torch.cat([a, self.unpool(b, indices), self.up(b)], dim=1))


def test_skip_connections_take_the_union_of_fields():
    report = receptive_field(TinyUNet(), (1, 16, 16))
    assert (report.rf, report.jump, report.start) == ((11, 11), (1, 1), (0, 0))
    assert [row.name for row in report.layers] == ["c1", "pool", "c2", "unpool", "up", "c3"]
    assert report.layers[3].rf == (9, 9) and report.layers[3].jump == (1, 1)
    assert report.verified is True


def test_anisotropic_3d_kernel_and_pool():
    # (1,3,3) p(0,1,1): rf (1,3,3); max pool 2: rf (2,4,4), jump 2, start 0 + 1/2 = 0.5 each.
    model = nn.Sequential(nn.Conv3d(1, 2, (1, 3, 3), padding=(0, 1, 1)), nn.MaxPool3d(2))
    report = receptive_field(model, (1, 6, 8, 8))
    assert (report.rf, report.jump, report.start) == ((2, 4, 4), (2, 2, 2), (0.5, 0.5, 0.5))
    assert report.verified is True


def test_adaptive_pool_is_approximate_and_not_verified():
    # conv 3x3 p1 on 8x8: rf 3; global pool = an 8x8 window, stride 8: rf 3 + 7 = 10, jump 8,
    # start 0 + (8-1)/2 = 3.5.
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    report = receptive_field(model, (1, 8, 8))
    assert (report.rf, report.jump, report.start) == ((10, 10), (8, 8), (3.5, 3.5))
    assert report.layers[-1].approximate and not report.layers[0].approximate
    assert report.verified is None and "adaptive" in report.message


def test_adaptive_pool_with_uneven_windows():
    # 7 -> 3: windows [0,3), [2,5), [4,7): largest 3, stride 7/3, first window centred on 1.
    report = receptive_field(nn.Sequential(nn.AdaptiveMaxPool1d(3)), (1, 7))
    row = report.layers[0]
    assert row.kernel == (3,) and row.stride == pytest.approx((7 / 3,))
    assert report.rf == (3,) and report.start == (1,) and report.jump == pytest.approx((7 / 3,))


def test_no_spatial_layers_gives_the_unit_field():
    report = receptive_field(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(2)), (2, 5, 5))
    assert report.layers == []
    assert (report.rf, report.jump, report.start) == ((1, 1), (1, 1), (0, 0))
    assert report.verified is True


class Roll(nn.Module):
    """Shifts the map by 3 pixels: spatial, but not a layer the arithmetic knows."""

    def forward(self, x):
        return torch.roll(x, 3, dims=-1)


def test_a_field_the_arithmetic_misses_is_reported_not_raised():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Roll())
    report = receptive_field(model, (1, 12, 12))
    assert report.verified is False and "outside the predicted" in report.message
    assert "INCONSISTENT" in str(report)


def test_output_without_spatial_dims_is_not_verified():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    report = receptive_field(model, (1, 8, 8))
    assert report.rf == (3, 3) and report.verified is None


def test_verify_false_skips_the_check():
    report = receptive_field(rf_models.vgg_like(), (3, 32, 32), verify=False)
    assert report.verified is None and report.rf == (16, 16)


def test_model_weights_mode_dtype_and_rng_are_left_alone():
    model = rf_models.resnet_like().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    receptive_field(model, (3, 32, 32))
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())


def test_str_shows_every_layer_and_the_result():
    report = receptive_field(rf_models.resnet_like(), (3, 64, 64))
    text = str(report)
    for row in report.layers:
        assert row.name in text
    assert "rf: 51x51  jump: 8x8  start: 0x0" in text
    assert "verification: consistent" in text
    assert isinstance(report, ReceptiveFieldReport)


def test_input_size_needs_channels_and_spatial_dims():
    with pytest.raises(ValueError, match="input_size"):
        receptive_field(nn.Conv1d(1, 1, 3), (8,))


def test_cli_prints_the_report(capsys):
    assert main(["rf", "rf_models:vgg_like", "--input-size", "3", "32", "32"]) == 0
    out = capsys.readouterr().out
    assert "conv2_2" in out and "rf: 16x16  jump: 4x4  start: 1.5x1.5" in out


def test_cli_rejects_a_spec_without_callable(capsys):
    assert main(["rf", "rf_models", "--input-size", "3", "32", "32"]) == 2
    assert "MODULE:CALLABLE" in capsys.readouterr().err


def test_cli_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "torch_convpool", "rf", "tests.rf_models:resnet_like",
         "--input-size", "3", "64", "64"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "layer2.downsample.0" in result.stdout and "rf: 51x51" in result.stdout
