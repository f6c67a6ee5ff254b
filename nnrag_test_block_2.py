import torch
from torch import nn
import torch.nn.functional as F

class Stages(nn.Module):
    # per-stage lists: a scalar guess for ``depths`` breaks at ``for d in depths``
    def __init__(self, dims, depths, layout=2, mlp_ratio=None):
        super().__init__()
        blocks = []
        for d in layout:
            blocks += [nn.Linear(dims, dims) for _ in range(d)]
        self.blocks = nn.Sequential(*blocks)
        self.hidden = nn.Linear(dims, int(dims * mlp_ratio))

    def forward(self, x):
        return self.hidden(self.blocks(x))
