"""Plain multilayer perceptron on the flattened input (two ReLU hidden layers with dropout).

Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors", Nature 1986.
"""

import math
from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image", "signal"}
HIDDEN = (256, 128)


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) not in (3, 4):
            raise ValueError(f"MLP expects (B, C, L) or (B, C, H, W) input; got {in_shape}")
        self.device = device
        features = math.prod(int(d) for d in in_shape[1:])
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        layers: list[nn.Module] = [nn.Flatten()]
        for hidden in HIDDEN:
            layers += [nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            features = hidden
        layers.append(nn.Linear(features, num_classes))
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
