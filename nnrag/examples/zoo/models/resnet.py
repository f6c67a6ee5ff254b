from torch import nn

from ..layers import ConvNormAct, SqueezeExcite


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, use_se=False):
        super().__init__()
        self.conv1 = ConvNormAct(inplanes, planes, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
        self.se = SqueezeExcite(planes) if use_se else nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or inplanes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.se(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNetTiny(nn.Module):
    """A ResNet-8-like network that adapts to input channels and class count."""

    def __init__(self, in_chans=3, num_classes=10, widths=(16, 32, 64), block=BasicBlock):
        super().__init__()
        self.stem = ConvNormAct(in_chans, widths[0])
        layers, prev = [], widths[0]
        for i, w in enumerate(widths):
            layers.append(block(prev, w, stride=1 if i == 0 else 2, use_se=i == len(widths) - 1))
            prev = w
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(prev, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.head(x.mean((2, 3)))
