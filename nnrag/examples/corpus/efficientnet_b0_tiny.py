"""EfficientNet-B0-style tiny net: MBConv blocks with squeeze-excitation, SiLU, stochastic depth.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019
(B0 stages 2-6 at half width, one MBConv per stage, 256-channel head).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
# (expansion, kernel, output channels, repeats, first stride)
# Stages 2-6 of B0 at width multiplier 0.5 (rounded to multiples of 8), one block each.
STAGES = ((1, 3, 8, 1, 1), (6, 3, 16, 1, 2), (6, 5, 24, 1, 2), (6, 3, 40, 1, 2), (6, 5, 56, 1, 1))
STEM_CHANNELS, HEAD_CHANNELS = 16, 256
DROP_PATH = 0.1  # stochastic depth rate of the last block, linearly scaled


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.SiLU(inplace=True),
    )


class SqueezeExcite(nn.Module):
    """Global pooling, bottleneck MLP (as 1x1 convs), sigmoid gate per channel."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.SiLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MBConv(nn.Module):
    """Expand 1x1, depthwise kxk, SE (ratio 0.25 of the input width), linear 1x1 projection."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int, drop_path: float
    ) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn_act(in_ch, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcite(hidden, max(1, in_ch // 4)),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if not self.use_residual:
            return out
        if self.training and self.drop_path > 0.0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) < keep
            out = out * mask / keep
        return x + out


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"EfficientNet expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        stem_stride = 2 if size >= 8 else 1  # B0's stride-2 stem, except on tiny inputs
        size = (size + 1) // 2 if stem_stride == 2 else size
        layers: list[nn.Module] = [conv_bn_act(channels, STEM_CHANNELS, 3, stem_stride)]
        total = sum(stage[3] for stage in STAGES)
        in_ch, index = STEM_CHANNELS, 0
        for expansion, kernel, out_ch, repeats, first_stride in STAGES:
            for repeat in range(repeats):
                stride = first_stride if repeat == 0 and size >= 4 else 1
                size = (size + 1) // 2 if stride == 2 else size
                rate = DROP_PATH * index / max(1, total - 1)
                layers.append(MBConv(in_ch, out_ch, kernel, stride, expansion, rate))
                in_ch, index = out_ch, index + 1
        layers += [conv_bn_act(in_ch, HEAD_CHANNELS, 1), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(HEAD_CHANNELS, num_classes)
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
