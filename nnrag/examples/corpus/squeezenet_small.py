"""SqueezeNet 1.1-style net of Fire modules (1x1 squeeze, 1x1 + 3x3 expand), conv classifier.

Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model
size", arXiv:1602.07360, 2016 (half-width Fire modules, stride-1 stem for small images).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class Fire(nn.Module):
    """Squeeze to few channels with 1x1, then expand with parallel 1x1 and 3x3 convs."""

    def __init__(self, in_ch: int, squeeze: int, expand1: int, expand3: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand1, 1), nn.ReLU(inplace=True))
        self.expand3 = nn.Sequential(
            nn.Conv2d(squeeze, expand3, 3, padding=1), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], dim=1)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"SqueezeNet expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))

        def pool() -> list[nn.Module]:
            nonlocal size
            if size < 4:
                return []
            size = (size + 1) // 2
            return [nn.MaxPool2d(3, 2, 1)]

        layers: list[nn.Module] = [nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True)]
        layers += pool()
        layers += [Fire(32, 8, 32, 32), Fire(64, 8, 32, 32)]
        layers += pool()
        layers += [Fire(64, 16, 64, 64), Fire(128, 16, 64, 64)]
        layers += pool()
        layers += [Fire(128, 24, 96, 96), Fire(192, 24, 96, 96), Fire(192, 32, 128, 128)]
        self.features = nn.Sequential(*layers)
        final_conv = nn.Conv2d(256, num_classes, 1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            final_conv,
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

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
