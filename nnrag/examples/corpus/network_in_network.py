"""Network in Network: three mlpconv blocks (kxk conv + two 1x1 convs), global-average-pool head.

Lin, Chen & Yan, "Network In Network", ICLR 2014 (CIFAR-10 layout with widths 192/160/96 reduced
to 64/48; BatchNorm added for trainability).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class MlpConv(nn.Module):
    """A kxk conv followed by two 1x1 convs: a small MLP slid over every position."""

    def __init__(
        self, in_ch: int, widths: tuple[int, int, int], kernel: int, logits: bool = False
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index, width in enumerate(widths):
            size = kernel if index == 0 else 1
            if logits and index == len(widths) - 1:  # class maps: plain conv, no BN/ReLU
                layers.append(nn.Conv2d(in_ch, width, 1))
                break
            layers += [
                nn.Conv2d(in_ch, width, size, padding=size // 2, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            in_ch = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"NiN expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))

        def pool(average: bool) -> list[nn.Module]:
            nonlocal size
            if size < 4:
                return [nn.Dropout(dropout)]
            size = (size + 1) // 2
            layer = nn.AvgPool2d(3, 2, 1) if average else nn.MaxPool2d(3, 2, 1)
            return [layer, nn.Dropout(dropout)]

        layers: list[nn.Module] = [MlpConv(channels, (64, 48, 48), 5), *pool(average=False)]
        layers += [MlpConv(48, (64, 64, 64), 5), *pool(average=True)]
        layers += [MlpConv(64, (64, 64, num_classes), 3, logits=True), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
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
        return torch.flatten(self.features(x), 1)
