"""1-D ResNet for signals: conv stem, three stages of two 1-D basic residual blocks, global pooling.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016; 1-D form as in
Wang, Yan & Oates, "Time Series Classification from Scratch with Deep Neural Networks", 2017.
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KINDS = {"signal"}
WIDTHS = (16, 32, 64)
BLOCKS_PER_STAGE = 2


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum"}


class BasicBlock1d(nn.Module):
    """Two kernel-5 convs with BN; 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_ch, out_ch, 5, stride=stride, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm1d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"ResNet-1D expects signal input (B, C, L); got in_shape={in_shape}")
        self.device = device
        channels, length = int(in_shape[1]), int(in_shape[2])
        num_classes = int(out_shape[0])
        self.stem = nn.Sequential(
            nn.Conv1d(channels, WIDTHS[0], 7, padding=3, bias=False),
            nn.BatchNorm1d(WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_ch = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for index in range(BLOCKS_PER_STAGE):
                stride = 2 if stage > 0 and index == 0 and length >= 8 else 1
                length = (length + 1) // 2 if stride == 2 else length
                blocks.append(BasicBlock1d(in_ch, width, stride))
                in_ch = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(in_ch, num_classes)

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
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))
