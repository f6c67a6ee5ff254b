"""MLP-Mixer tiny: per-patch linear embedding, alternating token-mixing and channel-mixing MLPs.

Tolstikhin et al., "MLP-Mixer: An all-MLP Architecture for Vision", NeurIPS 2021
(hidden 64, depth 4; patch size chosen so patches tile the input).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
DIM, DEPTH, TOKEN_MLP, CHANNEL_MLP = 64, 4, 32, 128


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def choose_patch(height: int, width: int) -> int:
    """Largest of 4 / 2 / 1 that tiles the image, using 4 only from 16x16 up (8x8 -> 2)."""
    candidates = (4, 2, 1) if min(height, width) >= 16 else (2, 1)
    return next(p for p in candidates if height % p == 0 and width % p == 0)


class MlpBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MixerBlock(nn.Module):
    """x + TokenMLP(LN(x)^T)^T; x + ChannelMLP(LN(x))."""

    def __init__(self, tokens: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = MlpBlock(tokens, TOKEN_MLP, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = MlpBlock(dim, CHANNEL_MLP, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"MLP-Mixer expects image input (B, C, H, W); got {in_shape}")
        self.device = device
        channels, height, width = int(in_shape[1]), int(in_shape[2]), int(in_shape[3])
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        patch = choose_patch(height, width)
        tokens = (height // patch) * (width // patch)
        self.stem = nn.Conv2d(channels, DIM, patch, stride=patch)  # per-patch linear projection
        self.blocks = nn.Sequential(*[MixerBlock(tokens, DIM, dropout) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, num_classes)

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
        x = self.stem(x).flatten(2).transpose(1, 2)  # [B, tokens, DIM]
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))
