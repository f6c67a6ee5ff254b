"""Compact Convolutional Transformer (CCT-2/3x2): conv tokenizer, encoder, sequence pooling.

Hassani et al., "Escaping the Big Data Paradigm with Compact Transformers", arXiv:2104.05704,
2021 (2 layers, 2 heads, dim 128, MLP ratio 1, two 3x3 conv tokenizer layers).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image"}
DIM, DEPTH, HEADS, MLP_RATIO = 128, 2, 2, 1


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


class ConvTokenizer(nn.Module):
    """conv3x3-ReLU-maxpool(3, s2) blocks; pooling only while the map is at least 4 pixels wide."""

    def __init__(self, in_ch: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for out_ch in (64, DIM):
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
            if size >= 4:
                layers.append(nn.MaxPool2d(3, 2, 1))
                size = (size + 1) // 2
            in_ch = out_ch
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)  # [B, tokens, DIM]


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder layer: x + MHSA(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class SeqPool(nn.Module):
    """Attention-based sequence pooling: softmax(Linear(x)) weighted sum over tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x), dim=1)  # [B, tokens, 1]
        return (weights * x).sum(dim=1)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) != 4:
            raise ValueError(f"CCT expects image input (B, C, H, W); got in_shape={in_shape}")
        self.device = device
        channels, height, width = int(in_shape[1]), int(in_shape[2]), int(in_shape[3])
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        self.tokenizer = ConvTokenizer(channels, min(height, width))
        with torch.no_grad():
            tokens = self.tokenizer(torch.zeros(1, channels, height, width)).shape[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, DIM))
        nn.init.trunc_normal_(self.pos_embed, std=0.2)
        self.blocks = nn.Sequential(
            *[EncoderBlock(DIM, HEADS, DIM * MLP_RATIO, dropout) for _ in range(DEPTH)]
        )
        self.norm = nn.LayerNorm(DIM)
        self.pool = SeqPool(DIM)
        self.head = nn.Linear(DIM, num_classes)
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
        x = self.tokenizer(x) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(self.pool(x))
