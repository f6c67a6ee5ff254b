"""Small synthetic LEMUR-format folders (a few dozen rows) written into a test's tmp_path.

The curves carry a signal the predictor can learn: wider models and a larger learning rate
reach higher accuracy, and every curve rises towards its best.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

CODE = '''import torch
import torch.nn as nn


def supported_hyperparameters():
    return {{'lr', 'momentum'}}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_shape[1], {width}, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),{extra}
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear({width}, out_shape[0]))

    def forward(self, x):
        return self.features(x)

    def train_setup(self, prm):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm['lr'])
'''
EXTRA = "\n            nn.Conv2d({width}, {width}, 3, padding=1), nn.BatchNorm2d({width}),"


def model_code(width: int, depth: int) -> str:
    return CODE.format(width=width, extra=EXTRA.format(width=width) * depth)


MODELS = {f"Tiny{w}-{d}": (w, d) for w in (8, 32, 128) for d in (0, 2)}


def _gz(path: Path, rows: list[Any]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def stats_rows(seed: int = 0, trials_per_model: int = 3, epochs: int = 3,
               datasets: tuple[str, ...] = ("cifar-10", "mnist")) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for name, (width, depth) in MODELS.items():
        for t in range(trials_per_model):
            lr = rng.choice((0.001, 0.01, 0.1))
            dataset = datasets[t % len(datasets)]
            best = min(0.95, 0.2 + 0.1 * depth + width / 300 + lr * 2 + rng.uniform(0, 0.05))
            uid = f"{name}-{seed}-{t}"
            for e in range(1, epochs + 1):
                rows.append({"task": "img-classification", "dataset": dataset,
                             "metric": "acc", "model": name, "epoch": e, "uid": uid,
                             "accuracy": best * (0.6 + 0.4 * e / epochs), "lr": lr,
                             "momentum": 0.9, "batch": 64, "dropout": 0.1,
                             "transform": rng.choice(("norm_32", "echo_64_flip"))})
    return rows


def write_lemur(folder: Path, *, seed: int = 0, extra_rows: list[Any] | None = None,
                trials_per_model: int = 3) -> Path:
    """A LEMUR folder of 6 models and ``6 * trials_per_model`` 3-epoch trials."""
    folder.mkdir(parents=True, exist_ok=True)
    _gz(folder / "models.jsonl.gz",
        [{"model": n, "path": f"ab/nn/nn/{n}.py", "sha256": "0", "code": model_code(w, d)}
         for n, (w, d) in MODELS.items()])
    rows: list[Any] = stats_rows(seed, trials_per_model)
    rows.append({"task": "img-segmentation", "dataset": "coco", "model": "Tiny8-0",
                 "epoch": 1, "uid": "seg", "accuracy": 0.3, "metric": "iou"})
    _gz(folder / "stats.jsonl.gz", rows + (extra_rows or []))
    return folder
