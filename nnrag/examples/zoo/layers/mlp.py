from torch import nn as tnn

from ..helpers import to_2tuple


class Mlp(tnn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=tnn.GELU, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        drops = to_2tuple(drop)
        self.fc1 = tnn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = tnn.Dropout(drops[0])
        self.fc2 = tnn.Linear(hidden_features, out_features)
        self.drop2 = tnn.Dropout(drops[1])

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
