"""1-D CNN for short signals such as MNIST-1D: three strided conv-BN-ReLU layers and a linear head.

LeCun & Bengio, "Convolutional Networks for Images, Speech, and Time-Series", 1995; baseline
shape follows Greydanus, "Scaling down Deep Learning" (MNIST-1D), arXiv:2011.14439, 2020.
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"signal"}
WIDTHS = (32, 64, 64)


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ValueError(f"CNN-1D expects signal input (B, C, L); got in_shape={in_shape}")
        self.device = device
        channels, length = int(in_shape[1]), int(in_shape[2])
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        layers: list[nn.Module] = []
        for width in WIDTHS:
            stride = 2 if length >= 8 else 1
            layers += [
                nn.Conv1d(channels, width, 5, stride=stride, padding=2, bias=False),
                nn.BatchNorm1d(width),
                nn.ReLU(inplace=True),
            ]
            length = (length - 1) // stride + 1
            channels = width
        keep = min(length, 8)  # flatten a few positions: position matters on MNIST-1D
        layers.append(nn.AdaptiveAvgPool1d(keep))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * keep, num_classes)
        )

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
        return self.classifier(self.features(x))
