"""GoogLeNet-style Inception network: 1x1 / 3x3 / 5x5 / pool-projection branches concatenated.

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (four narrow Inception modules,
BatchNorm in every conv as in the torchvision port, no auxiliary classifiers).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection); "M" = max pool
MODULES: list[tuple[int, int, int, int, int, int] | str] = [
    "M",  # the stem's pooling
    (16, 16, 24, 4, 8, 8),
    "M",
    (24, 24, 32, 8, 16, 16),
    (32, 24, 40, 8, 16, 16),
    "M",
    (48, 32, 64, 12, 24, 24),
]


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class BasicConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class Inception(nn.Module):
    """Four parallel branches whose outputs are concatenated along channels."""

    def __init__(self, in_ch: int, spec: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, cp = spec
        self.branch1 = BasicConv(in_ch, c1, 1)
        self.branch3 = nn.Sequential(BasicConv(in_ch, c3r, 1), BasicConv(c3r, c3, 3))
        self.branch5 = nn.Sequential(BasicConv(in_ch, c5r, 1), BasicConv(c5r, c5, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), BasicConv(in_ch, cp, 1))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"GoogLeNet expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        layers: list[nn.Module] = [BasicConv(channels, 32, 3)]
        in_ch = 32
        for spec in MODULES:
            if isinstance(spec, str):
                if size >= 4:
                    layers.append(nn.MaxPool2d(3, 2, 1))
                    size = (size + 1) // 2
                continue
            module = Inception(in_ch, spec)
            layers.append(module)
            in_ch = module.out_channels
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_ch, num_classes)
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
