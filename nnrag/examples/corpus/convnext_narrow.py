"""ConvNeXt (patchify stem, 7x7 depthwise conv, LayerNorm, inverted MLP, layer scale), narrow.

Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", CVPR 2022
(ConvNeXt-T block design with dims 24-192 and depths (1, 1, 2, 1)).
"""

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_KINDS = {"image"}
DEPTHS = (1, 1, 2, 1)
DIMS = (24, 48, 96, 192)
LAYER_SCALE_INIT = 1e-6
DROP_PATH = 0.1


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum"}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """dwconv7x7 -> LN -> Linear(4d) -> GELU -> Linear(d) -> layer scale -> drop path + residual."""

    def __init__(self, dim: int, drop_path: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(LAYER_SCALE_INIT * torch.ones(dim))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dwconv(x).permute(0, 2, 3, 1)
        out = self.pwconv2(self.act(self.pwconv1(self.norm(out))))
        out = (self.gamma * out).permute(0, 3, 1, 2)
        if self.training and self.drop_path > 0.0:
            keep = 1.0 - self.drop_path
            mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) < keep
            out = out * mask / keep
        return x + out


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"ConvNeXt expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, size = int(in_shape[1]), min(int(in_shape[2]), int(in_shape[3]))
        num_classes = int(out_shape[0])
        patch = 4 if size >= 16 else 2 if size >= 8 else 1  # the paper's 4x4 patchify stem
        size //= patch
        layers: list[nn.Module] = [
            nn.Conv2d(channels, DIMS[0], patch, stride=patch),
            LayerNorm2d(DIMS[0], eps=1e-6),
        ]
        total, index = sum(DEPTHS), 0
        for stage, (depth, dim) in enumerate(zip(DEPTHS, DIMS, strict=True)):
            if stage > 0:  # LN + 2x2 stride-2 conv, or a 1x1 conv once the map is small
                kernel = 2 if size >= 4 else 1
                size //= kernel
                layers += [LayerNorm2d(DIMS[stage - 1], eps=1e-6)]
                layers += [nn.Conv2d(DIMS[stage - 1], dim, kernel, stride=kernel)]
            for _ in range(depth):
                layers.append(ConvNeXtBlock(dim, DROP_PATH * index / max(1, total - 1)))
                index += 1
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(DIMS[-1], eps=1e-6)
        self.head = nn.Linear(DIMS[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
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
        x = self.features(x).mean(dim=(2, 3))  # global average pooling
        return self.head(self.norm(x))
