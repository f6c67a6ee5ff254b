import torch.nn as nn
import torch.nn.functional as F

from ..helpers import make_divisible
from .activations import get_act_layer


class ConvNormAct(nn.Sequential):
    """Conv -> BatchNorm -> activation, the most common CNN stem."""

    def __init__(self, in_chs, out_chs, kernel_size=3, stride=1, groups=1, act_layer="relu"):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_chs),
            get_act_layer(act_layer)(),
        )


class SqueezeExcite(nn.Module):
    def __init__(self, channels, rd_ratio=0.25):
        super().__init__()
        rd = make_divisible(channels * rd_ratio)
        self.reduce = nn.Conv2d(channels, rd, 1)
        self.expand = nn.Conv2d(rd, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.expand(F.relu(self.reduce(s))).sigmoid()
