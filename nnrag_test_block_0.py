import torch
from torch import nn
import torch.nn.functional as F

class WindowBias(nn.Module):
    # a relative-position table for one fixed 7x7 window: the probe cannot guess the 49
    def __init__(self, dim):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 49, dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        return self.proj(x + self.bias)
