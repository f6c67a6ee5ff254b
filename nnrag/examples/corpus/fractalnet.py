"""FractalNet: self-similar blocks f_{C+1}(z) = join(f_C(f_C(z)), conv(z)); mean joins, drop-path.

Larsson, Maire & Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals",
ICLR 2017 (3 blocks of 3 columns, widths 16/32/64, local drop-path rate 0.15).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
COLUMNS, WIDTHS, DROP_PATH = 3, (16, 32, 64), 0.15


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def join(paths: list[torch.Tensor], training: bool, drop_rate: float) -> torch.Tensor:
    """Element-wise mean; in training each path is dropped with drop_rate, keeping at least one."""
    if training and drop_rate > 0.0 and len(paths) > 1:
        keep = (torch.rand(len(paths)) >= drop_rate).tolist()
        if not any(keep):
            keep[int(torch.randint(len(paths), (1,)))] = True
        paths = [path for path, kept in zip(paths, keep, strict=True) if kept]
    return torch.stack(paths).mean(dim=0)


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class FractalBlock(nn.Module):
    """The fractal expansion rule; ``columns()`` returns the un-joined column outputs."""

    def __init__(self, in_ch: int, out_ch: int, columns: int, drop_rate: float) -> None:
        super().__init__()
        self.drop_rate = drop_rate
        self.shallow = ConvBNReLU(in_ch, out_ch)
        self.deep_first: FractalBlock | None = None
        self.deep_second: FractalBlock | None = None
        if columns > 1:
            self.deep_first = FractalBlock(in_ch, out_ch, columns - 1, drop_rate)
            self.deep_second = FractalBlock(out_ch, out_ch, columns - 1, drop_rate)

    def columns(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [self.shallow(x)]
        if self.deep_first is not None and self.deep_second is not None:
            middle = join(self.deep_first.columns(x), self.training, self.drop_rate)
            outputs += self.deep_second.columns(middle)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return join(self.columns(x), self.training, self.drop_rate)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"FractalNet expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        layers: list[nn.Module] = []
        in_ch = channels
        for index, width in enumerate(WIDTHS):
            layers.append(FractalBlock(in_ch, width, COLUMNS, DROP_PATH))
            if index < len(WIDTHS) - 1 and size >= 4:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            layers.append(nn.Dropout(dropout * (index + 1) / len(WIDTHS)))  # increasing dropout
            in_ch = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)

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
        return self.fc(self.features(x))
