"""Xception-small: entry / middle / exit flows of depthwise-separable convs with residual links.

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017
(widths 16-128 instead of 32-2048, two middle-flow blocks instead of eight).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
ENTRY_WIDTHS, MIDDLE_BLOCKS, EXIT_WIDTH = (32, 64), 2, 128


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class SeparableConv(nn.Sequential):
    """3x3 depthwise conv followed by a 1x1 pointwise conv, then BatchNorm."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )


class XceptionBlock(nn.Module):
    """[ReLU-SepConv] x reps, optional 3x3 stride-2 max pool; 1x1 (strided) conv shortcut."""

    def __init__(self, in_ch: int, out_ch: int, reps: int, stride: int, first_relu: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(reps):
            if index > 0 or first_relu:
                layers.append(nn.ReLU(inplace=False))
            layers.append(SeparableConv(in_ch if index == 0 else out_ch, out_ch))
        if stride > 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.body = nn.Sequential(*layers)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.skip = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"Xception expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))

        def stride(minimum: int = 4) -> int:
            nonlocal size
            if size < minimum:
                return 1
            size = (size + 1) // 2
            return 2

        layers: list[nn.Module] = [
            nn.Conv2d(channels, 16, 3, stride(minimum=8), 1, bias=False),  # stride 2 from 8x8 up
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 24, 3, padding=1, bias=False),
            nn.BatchNorm2d(24),
            nn.ReLU(inplace=True),
        ]
        in_ch = 24
        for index, width in enumerate(ENTRY_WIDTHS):  # entry flow
            layers.append(XceptionBlock(in_ch, width, 2, stride(), first_relu=index > 0))
            in_ch = width
        for _ in range(MIDDLE_BLOCKS):  # middle flow
            layers.append(XceptionBlock(in_ch, in_ch, 3, 1, first_relu=True))
        layers.append(XceptionBlock(in_ch, EXIT_WIDTH, 2, stride(), first_relu=True))  # exit flow
        layers += [
            SeparableConv(EXIT_WIDTH, EXIT_WIDTH),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
        ]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(EXIT_WIDTH, num_classes)
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
        return self.fc(self.features(x))
