"""Temporal Convolutional Network: stacked residual blocks of dilated causal 1-D convolutions.

Bai, Kolter & Koltun, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks
for Sequence Modeling", arXiv:1803.01271, 2018 (weight norm omitted; 32 channels, dilations 1-8).
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KINDS = {"signal"}
CHANNELS, KERNEL, LEVELS = 32, 3, 4  # receptive field 1 + 2 * (K - 1) * (2^LEVELS - 1) = 61


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class CausalConv1d(nn.Conv1d):
    """Conv1d left-padded so output t only sees inputs <= t."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int) -> None:
        super().__init__(in_ch, out_ch, kernel, dilation=dilation)
        self.left_pad = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class TemporalBlock(nn.Module):
    """Two dilated causal convs with ReLU and dropout, plus a (1x1) residual connection."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            CausalConv1d(in_ch, out_ch, KERNEL, dilation),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            CausalConv1d(out_ch, out_ch, KERNEL, dilation),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.downsample: nn.Module = (
            nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.net(x) + self.downsample(x))


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"TCN expects signal input (B, C, L); got in_shape={in_shape}")
        self.device = device
        channels = int(in_shape[1])
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        blocks: list[nn.Module] = []
        for level in range(LEVELS):
            blocks.append(TemporalBlock(channels, CHANNELS, 2**level, dropout))
            channels = CHANNELS
        self.tcn = nn.Sequential(*blocks)
        self.fc = nn.Linear(CHANNELS, num_classes)

    def train_setup(self, prm: dict) -> None:
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.train()
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            outputs = self(inputs)
            loss = self.criteria[0](outputs, labels)
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 3)
            self.optimizer.step()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.tcn(x)[:, :, -1])  # the last step sees the whole receptive field
