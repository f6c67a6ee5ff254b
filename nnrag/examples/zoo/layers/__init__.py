from .activations import get_act_layer
from .attention import Attention
from .conv import ConvNormAct, SqueezeExcite
from .mlp import Mlp

__all__ = ["Attention", "ConvNormAct", "Mlp", "SqueezeExcite", "get_act_layer"]
