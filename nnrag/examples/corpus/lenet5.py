"""LeNet-5: two 5x5 convolution + average-subsampling stages, then three fully connected layers.

LeCun et al., "Gradient-Based Learning Applied to Document Recognition", Proc. IEEE 1998.
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"LeNet-5 expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        layers: list[nn.Module] = [nn.Conv2d(channels, 6, 5, padding=2), nn.Tanh()]  # C1
        if size >= 4:  # S2
            layers.append(nn.AvgPool2d(2))
            size //= 2
        pad = 0 if size >= 9 else 2  # C3 is a 'valid' conv only where the map is big enough
        layers += [nn.Conv2d(6, 16, 5, padding=pad), nn.Tanh()]
        size = size - 4 + 2 * pad
        if size >= 4:  # S4
            layers.append(nn.AvgPool2d(2))
            size //= 2
        side = min(size, 5)
        layers.append(nn.AdaptiveAvgPool2d(side))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),  # C5
            nn.Tanh(),
            nn.Linear(120, 84),  # F6
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("tanh"))
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
