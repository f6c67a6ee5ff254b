"""Vision Transformer (ViT) tiny: patch embedding, class token, pre-norm encoder blocks, MLP head.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale", ICLR 2021 (dim 64, depth 4, 4 heads; patch size chosen so patches tile the input).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
DIM, DEPTH, HEADS, MLP_RATIO = 64, 4, 4, 2


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def choose_patch(height: int, width: int) -> int:
    """Largest of 4 / 2 / 1 that tiles the image, using 4 only from 16x16 up (8x8 -> 2)."""
    candidates = (4, 2, 1) if min(height, width) >= 16 else (2, 1)
    return next(p for p in candidates if height % p == 0 and width % p == 0)


class EncoderBlock(nn.Module):
    """x + MHSA(LN(x)); x + MLP(LN(x)) with a GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)  # no attention dropout
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"ViT expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, height, width = int(in_shape[1]), int(in_shape[2]), int(in_shape[3])
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        patch = choose_patch(height, width)
        num_patches = (height // patch) * (width // patch)
        self.patch_embed = nn.Conv2d(channels, DIM, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, DIM))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *[EncoderBlock(DIM, HEADS, DIM * MLP_RATIO, dropout) for _ in range(DEPTH)]
        )
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
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, N, D]
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat([cls, x], dim=1) + self.pos_embed)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])
