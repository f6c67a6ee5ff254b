"""All-CNN-C: only convolutions; strided 3x3 convs replace pooling; 1x1 conv classifier + GAP.

Springenberg, Dosovitskiy, Brox & Riedmiller, "Striving for Simplicity: The All Convolutional
Net", ICLR 2015 workshop (widths 96/192 reduced to 32/64; BatchNorm added for trainability).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"All-CNN expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        layers: list[nn.Module] = [nn.Dropout(dropout * 0.4)]  # the paper drops inputs at 20%
        in_ch = channels
        for width in (32, 64):
            stride = 2 if size >= 4 else 1  # the "pooling" conv
            size = (size + 1) // 2 if stride == 2 else size
            layers += conv_bn_relu(in_ch, width, 3) + conv_bn_relu(width, width, 3)
            layers += conv_bn_relu(width, width, 3, stride) + [nn.Dropout(dropout)]
            in_ch = width
        layers += conv_bn_relu(64, 64, 3) + conv_bn_relu(64, 64, 1)
        layers += [nn.Conv2d(64, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)

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
        return self.net(x)
