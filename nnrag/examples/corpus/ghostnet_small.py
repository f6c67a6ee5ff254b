"""GhostNet-small: Ghost bottlenecks (cheap depthwise "ghost" maps), optional hard-sigmoid SE.

Han, Wang, Tian, Guo, Xu & Xu, "GhostNet: More Features from Cheap Operations", CVPR 2020
(the first six bottlenecks of GhostNet 1.0x, 256-channel head).
"""

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KINDS = {"image"}
# (kernel, expansion size, output channels, use SE, stride)
CONFIG = (
    (3, 16, 16, False, 1),
    (3, 48, 24, False, 2),
    (3, 72, 24, False, 1),
    (5, 72, 40, True, 2),
    (5, 120, 40, True, 1),
    (3, 240, 80, False, 2),
)
HEAD_CHANNELS = 256


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class GhostModule(nn.Module):
    """A primary 1x1 conv makes half the maps; a cheap 3x3 depthwise conv makes the "ghosts"."""

    def __init__(self, in_ch: int, out_ch: int, relu: bool) -> None:
        super().__init__()
        self.out_ch = out_ch
        init_ch = math.ceil(out_ch / 2)
        act: list[nn.Module] = [nn.ReLU(inplace=True)] if relu else []
        self.primary = nn.Sequential(
            nn.Conv2d(in_ch, init_ch, 1, bias=False), nn.BatchNorm2d(init_ch), *act
        )
        self.cheap = nn.Sequential(
            nn.Conv2d(init_ch, init_ch, 3, 1, 1, groups=init_ch, bias=False),
            nn.BatchNorm2d(init_ch),
            *act,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary(x)
        return torch.cat([primary, self.cheap(primary)], dim=1)[:, : self.out_ch]


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = max(4, channels // 4)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.relu(self.reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * F.hardsigmoid(gate)


class GhostBottleneck(nn.Module):
    """Ghost module (ReLU) -> [depthwise stride-2] -> [SE] -> ghost module (linear) + shortcut."""

    def __init__(
        self, in_ch: int, mid_ch: int, out_ch: int, kernel: int, stride: int, use_se: bool
    ) -> None:
        super().__init__()
        self.ghost1 = GhostModule(in_ch, mid_ch, relu=True)
        self.dw: nn.Module = nn.Identity()
        if stride > 1:
            self.dw = nn.Sequential(
                nn.Conv2d(mid_ch, mid_ch, kernel, stride, kernel // 2, groups=mid_ch, bias=False),
                nn.BatchNorm2d(mid_ch),
            )
        self.se: nn.Module = SqueezeExcite(mid_ch) if use_se else nn.Identity()
        self.ghost2 = GhostModule(mid_ch, out_ch, relu=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, in_ch, kernel, stride, kernel // 2, groups=in_ch, bias=False),
                nn.BatchNorm2d(in_ch),
                nn.Conv2d(in_ch, out_ch, 1, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost2(self.se(self.dw(self.ghost1(x))))
        return out + self.shortcut(x)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"GhostNet expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        stem_stride = 2 if size >= 8 else 1  # the paper's stride-2 stem, except on tiny inputs
        size = (size + 1) // 2 if stem_stride == 2 else size
        layers: list[nn.Module] = [
            nn.Conv2d(channels, 16, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        ]
        in_ch = 16
        for kernel, mid_ch, out_ch, use_se, stride in CONFIG:
            stride = stride if size >= 4 else 1
            size = (size + 1) // 2 if stride == 2 else size
            layers.append(GhostBottleneck(in_ch, mid_ch, out_ch, kernel, stride, use_se))
            in_ch = out_ch
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, HEAD_CHANNELS, 1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Dropout(dropout),
        ]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
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
        return self.classifier(self.features(x))
