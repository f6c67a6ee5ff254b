"""MobileNetV2 (inverted residuals with linear bottlenecks, ReLU6), half width, shallower.

Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018 (width multiplier 0.5, 8 blocks instead of 17).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
# (expansion t, output channels c, repeats n, first stride s): Table 2 at 0.5x width
# (rounded to multiples of 8), stages 2-6 only and fewer repeats.
SETTINGS = ((1, 8, 1, 1), (6, 16, 2, 2), (6, 16, 2, 2), (6, 32, 2, 2), (6, 48, 1, 1))
STEM_CHANNELS, LAST_CHANNELS = 16, 256  # width multiplier 0.5


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def conv_bn_relu6(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_relu6(in_ch, hidden, 1, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"MobileNetV2 expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        stem_stride = 2 if size >= 8 else 1  # the paper's stride-2 stem, except on tiny inputs
        size = (size + 1) // 2 if stem_stride == 2 else size
        layers: list[nn.Module] = [conv_bn_relu6(channels, STEM_CHANNELS, 3, stem_stride)]
        in_ch = STEM_CHANNELS
        for expansion, out_ch, repeats, first_stride in SETTINGS:
            for index in range(repeats):
                stride = first_stride if index == 0 and size >= 4 else 1
                size = (size + 1) // 2 if stride == 2 else size
                layers.append(InvertedResidual(in_ch, out_ch, stride, expansion))
                in_ch = out_ch
        layers += [conv_bn_relu6(in_ch, LAST_CHANNELS, 1, 1), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(LAST_CHANNELS, num_classes)
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
        return self.classifier(self.features(x))
