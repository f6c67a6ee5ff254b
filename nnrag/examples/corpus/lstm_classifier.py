"""Two-layer LSTM classifier: the input is read as a sequence (signal steps, or image rows).

Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 1997 (2 x 64 units,
dropout between layers, mean of the top-layer outputs to a linear head).
"""

from collections.abc import Iterable

import torch
from torch import nn

INPUT_KINDS = {"image", "signal"}
HIDDEN, LAYERS, BIDIRECTIONAL = 64, 2, False


def supported_hyperparameters() -> set[str]:
    return {"lr", "momentum", "dropout"}


def to_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, C, L) -> (B, L, C); (B, C, H, W) -> (B, H, C * W), one image row per step."""
    if x.dim() == 3:
        return x.transpose(1, 2)
    batch, channels, height, width = x.shape
    return x.permute(0, 2, 1, 3).reshape(batch, height, channels * width)


class Net(nn.Module):
    def __init__(self, in_shape: tuple, out_shape: tuple, prm: dict, device: torch.device) -> None:
        super().__init__()
        if len(in_shape) not in (3, 4):
            raise ValueError(f"LSTM expects (B, C, L) or (B, C, H, W) input; got {in_shape}")
        self.device = device
        features = int(in_shape[1]) * (int(in_shape[3]) if len(in_shape) == 4 else 1)
        num_classes = int(out_shape[0])
        dropout = float(prm.get("dropout", 0.0))
        self.rnn = nn.LSTM(
            features,
            HIDDEN,
            num_layers=LAYERS,
            batch_first=True,
            dropout=dropout if LAYERS > 1 else 0.0,
            bidirectional=BIDIRECTIONAL,
        )
        out_features = HIDDEN * (2 if BIDIRECTIONAL else 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(out_features, num_classes)

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
        outputs, _ = self.rnn(to_sequence(x))  # [B, steps, HIDDEN]
        return self.fc(self.dropout(outputs.mean(dim=1)))
