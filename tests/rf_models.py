"""Small models with hand-derived receptive fields, for test_receptive_field and the ``rf`` CLI
(``python -m torch_convpool rf tests.rf_models:resnet_like --input-size 3 64 64``).

Notation per layer: rf, jump, start after it (input pixel centres at 0, 1, 2, ...), from
rf += (ke-1)*jump, start += ((ke-1)/2 - pad)*jump, jump *= stride.
"""
from collections import OrderedDict

from torch import nn


def vgg_like() -> nn.Sequential:
    """Two 3x3 convs and a 2x2 pool, twice (VGG's first two stages).

    conv1_1 3x3 p1: rf 3,  jump 1, start 0
    conv1_2 3x3 p1: rf 5,  jump 1, start 0
    pool1   2x2 s2: rf 6,  jump 2, start 0 + (1/2 - 0)*1 = 0.5
    conv2_1 3x3 p1: rf 10, jump 2, start 0.5
    conv2_2 3x3 p1: rf 14, jump 2, start 0.5
    pool2   2x2 s2: rf 16, jump 4, start 0.5 + (1/2)*2 = 1.5   (VGG16's pool2 field is 16 too)
    """
    return nn.Sequential(OrderedDict([
        ("conv1_1", nn.Conv2d(3, 8, 3, padding=1)), ("relu1_1", nn.ReLU()),
        ("conv1_2", nn.Conv2d(8, 8, 3, padding=1)), ("relu1_2", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2_1", nn.Conv2d(8, 16, 3, padding=1)), ("relu2_1", nn.ReLU()),
        ("conv2_2", nn.Conv2d(16, 16, 3, padding=1)), ("relu2_2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
    ]))


def resnet_stem_stack() -> nn.Sequential:
    """ResNet's stem, then plain 3x3 convs (no shortcuts).

    conv1   7x7 s2 p3: rf 7,  jump 2, start 0 + (3 - 3)*1 = 0
    maxpool 3x3 s2 p1: rf 7 + 2*2 = 11,  jump 4, start 0 + (1 - 1)*2 = 0
    conv2   3x3 p1:    rf 11 + 2*4 = 19, jump 4, start 0
    conv3   3x3 p1:    rf 19 + 2*4 = 27, jump 4, start 0
    """
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)), ("bn1", nn.BatchNorm2d(8)),
        ("relu", nn.ReLU()), ("maxpool", nn.MaxPool2d(3, stride=2, padding=1)),
        ("conv2", nn.Conv2d(8, 8, 3, padding=1)), ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(8, 8, 3, padding=1)),
    ]))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs plus a shortcut (1x1 strided conv when downsampling)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetLike(nn.Module):
    """The stem of resnet_stem_stack, then a basic block and a downsampling basic block.

    conv1, maxpool:        rf 11, jump 4, start 0 (as in resnet_stem_stack)
    layer1.conv1/conv2:    rf 19, 27, jump 4; shortcut = identity (rf 11): the sum sees rf 27
    layer2.conv1 3x3 s2 p1: rf 27 + 2*4 = 35, jump 8, start 0
    layer2.conv2 3x3 p1:    rf 35 + 2*8 = 51, jump 8, start 0
    layer2.downsample.0 1x1 s2: rf 27, jump 8, start 0 (it runs beside conv1/conv2, not after
                            them: a plain chain would wrongly make the jump 16)
    output = conv path + shortcut: rf 51, jump 8, start 0
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer2(self.layer1(x))


def resnet_like() -> ResNetLike:
    return ResNetLike()
