"""ShuffleNetV2 0.5x (channel split, channel shuffle, two-branch downsampling units), shallower.

Ma, Zhang, Zheng & Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018.
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
STAGE_REPEATS = (2, 2, 2)  # the paper uses (4, 8, 4)
STAGE_CHANNELS = (48, 96, 192)  # 0.5x width
LAST_CHANNELS = 256


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum"}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


def pointwise(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


def depthwise(ch: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False), nn.BatchNorm2d(ch)]


class ShuffleUnit(nn.Module):
    """Basic unit (split in half, transform one half) or downsampling unit (both branches)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.split = stride == 1 and in_ch == out_ch
        branch_ch = out_ch // 2
        main_in = branch_ch if self.split else in_ch
        self.branch2 = nn.Sequential(
            *pointwise(main_in, branch_ch),
            *depthwise(branch_ch, stride),
            *pointwise(branch_ch, branch_ch),
        )
        self.branch1: nn.Module | None = None
        if not self.split:
            self.branch1 = nn.Sequential(*depthwise(in_ch, stride), *pointwise(in_ch, branch_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            left, right = x.chunk(2, dim=1)
            out = torch.cat([left, self.branch2(right)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"ShuffleNetV2 expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        stem_stride = 2 if size >= 8 else 1  # the paper's stride-2 stem, except on tiny inputs
        size = (size + 1) // 2 if stem_stride == 2 else size
        layers: list[nn.Module] = [
            nn.Conv2d(channels, 24, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(24),
            nn.ReLU(inplace=True),
        ]
        if size >= 16:  # the stem's max pool, only where resolution allows
            layers.append(nn.MaxPool2d(3, 2, 1))
            size = (size + 1) // 2
        in_ch = 24
        for repeats, out_ch in zip(STAGE_REPEATS, STAGE_CHANNELS, strict=True):
            for index in range(repeats):
                stride = 2 if index == 0 and size >= 4 else 1
                size = (size + 1) // 2 if stride == 2 else size
                layers.append(ShuffleUnit(in_ch, out_ch, stride))
                in_ch = out_ch
        layers += [*pointwise(in_ch, LAST_CHANNELS), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(LAST_CHANNELS, num_classes)
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
        return self.fc(torch.flatten(self.features(x), 1))
