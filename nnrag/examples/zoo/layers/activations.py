import torch
from torch import nn

try:
    from torch.nn import Hardswish as HardSwish
except ImportError:  # very old torch

    class HardSwish(nn.Module):
        def forward(self, x):
            return x * torch.clamp(x + 3, 0, 6) / 6


_ACT_LAYERS = dict(relu=nn.ReLU, gelu=nn.GELU, hard_swish=HardSwish, silu=nn.SiLU)


def get_act_layer(name="relu"):
    if not isinstance(name, str):
        return name
    return _ACT_LAYERS[name]
