"""RegNetY-style tiny net: stages of Y blocks (1x1, grouped 3x3 with group width 8, SE, 1x1).

Radosavovic, Kosaraju, Girshick, He & Dollar, "Designing Network Design Spaces", CVPR 2020
(bottleneck ratio 1, SE ratio 0.25, widths 16/32/64/128, depths 1/1/2/1).
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KINDS = {"image"}
WIDTHS, DEPTHS, GROUP_WIDTH, SE_RATIO = (16, 32, 64, 128), (1, 1, 2, 1), 8, 0.25


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    )


class YBlock(nn.Module):
    """X block (1x1 -> group conv 3x3 -> 1x1, residual) with squeeze-and-excitation."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        groups = out_ch // GROUP_WIDTH
        se_ch = max(1, int(in_ch * SE_RATIO))
        self.a = conv_bn(in_ch, out_ch, 1)
        self.b = conv_bn(out_ch, out_ch, 3, stride, groups)
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_ch, se_ch, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(se_ch, out_ch, 1),
            nn.Sigmoid(),
        )
        self.c = conv_bn(out_ch, out_ch, 1)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = conv_bn(in_ch, out_ch, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.a(x))
        out = F.relu(self.b(out))
        out = self.c(out * self.se(out))
        return F.relu(out + self.shortcut(x))


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"RegNet expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        stem_stride = 2 if size >= 8 else 1  # the paper's stride-2 stem, except on tiny inputs
        size = (size + 1) // 2 if stem_stride == 2 else size
        self.stem = nn.Sequential(conv_bn(channels, 16, 3, stem_stride), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        in_ch = 16
        for stage, (width, depth) in enumerate(zip(WIDTHS, DEPTHS, strict=True)):
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 and size >= 4 else 1
                size = (size + 1) // 2 if stride == 2 else size
                blocks.append(YBlock(in_ch, width, stride))
                in_ch = width
        self.trunk = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_ch, num_classes),
        )
        # channels_last: oneDNN's depthwise / grouped convs and pooling run much faster in NHWC.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

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
        x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.trunk(self.stem(x)))
