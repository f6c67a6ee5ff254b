import torch
from torch import nn
import torch.nn.functional as F

class Offsets(nn.Module):
    # ``reference_points`` has no telling name or annotation: the probe passes None first
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, reference_points):
        return self.proj(x + reference_points.sigmoid())
