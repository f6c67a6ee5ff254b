"""The training loader a model's ``learn(train_data)`` iterates, as LEMUR's harness builds it.

Shuffled, seeded batches of ``batch_size`` (the same order ``DataLoader(shuffle=True,
generator=...)`` gives); the last batch is dropped only when it holds a single sample of a
larger batch size (batch norm cannot train on one: "Expected more than 1 value per
channel"), so no other sample is ever left out and ``batch_size: 1`` still trains. It is a
plain ``DataLoader``: ``len(train_data)``, ``enumerate(train_data)`` and
``train_data.dataset`` work as LEMUR's models use them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset


class _NoSingletonBatches(BatchSampler):
    """A batch sampler that leaves out a last batch of exactly one sample (batch size > 1)."""

    def __iter__(self) -> Iterator[list[int]]:
        for batch in super().__iter__():
            if len(batch) > 1 or self.batch_size == 1:
                yield batch

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)  # type: ignore[arg-type]
        return full + (1 if rest > 1 else 0)


def train_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """Seeded, shuffled batches of ``(x, y)``; a last batch of one sample is dropped."""
    gen = torch.Generator().manual_seed(seed)
    data = TensorDataset(x, y)
    sampler = _NoSingletonBatches(RandomSampler(data, generator=gen), batch_size, drop_last=False)
    return DataLoader(data, batch_sampler=sampler, generator=gen)  # draws its seed first, as before
