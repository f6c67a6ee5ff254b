"""Res2Net-lite: bottlenecks whose 3x3 stage is split into 4 hierarchically connected scales.

Gao, Cheng, Zhao, Zhang, Yang & Torr, "Res2Net: A New Multi-scale Backbone Architecture",
TPAMI 2021 (scale 4, CIFAR layout, 3 stages of one block, expansion 4).
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KINDS = {"image"}
SCALE, EXPANSION = 4, 4
PLANES, DEPTHS = (8, 16, 32), (1, 1, 1)


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum"}


class Bottle2neck(nn.Module):
    """1x1 -> split into SCALE groups; y1 = x1, yi = K_i(x_i + y_{i-1}) -> concat -> 1x1.

    A stage's first block ("stage" type) convolves each split independently and average-pools
    the last one instead, since its input and output resolutions differ.
    """

    def __init__(self, in_ch: int, planes: int, stride: int, first: bool) -> None:
        super().__init__()
        width = planes // 2
        out_ch = planes * EXPANSION
        self.width, self.first = width, first
        self.conv1 = nn.Conv2d(in_ch, width * SCALE, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * SCALE)
        self.convs = nn.ModuleList(
            [nn.Conv2d(width, width, 3, stride, 1, bias=False) for _ in range(SCALE - 1)]
        )
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(SCALE - 1)])
        self.pool: nn.Module = nn.AvgPool2d(3, stride, 1) if first else nn.Identity()
        self.conv3 = nn.Conv2d(width * SCALE, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        splits = torch.split(out, self.width, dim=1)
        outputs: list[torch.Tensor] = []
        previous: torch.Tensor | None = None
        for index, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            part = splits[index] if self.first or previous is None else splits[index] + previous
            previous = F.relu(bn(conv(part)))
            outputs.append(previous)
        outputs.append(self.pool(splits[-1]))
        out = self.bn3(self.conv3(torch.cat(outputs, dim=1)))
        return F.relu(out + self.shortcut(x))


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"Res2Net expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        in_ch = 16
        for stage, (planes, depth) in enumerate(zip(PLANES, DEPTHS, strict=True)):
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 and size >= 4 else 1
                size = (size + 1) // 2 if stride == 2 else size
                blocks.append(Bottle2neck(in_ch, planes, stride, first=index == 0))
                in_ch = planes * EXPANSION
        self.layers = nn.Sequential(*blocks)
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
        return self.fc(self.layers(self.stem(x)).mean(dim=(2, 3)))
