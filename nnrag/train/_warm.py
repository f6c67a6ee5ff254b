"""Imported once by pooled sandbox workers: pay torch's lazy first-use costs before forking.

Building the first optimizer and running the first backward pull in lazily imported torch
modules (about 1.5 s on these machines); done here, every forked trial inherits them warm.
"""

import torch
from torch import nn

import nnrag.train.contract  # noqa: F401
import nnrag.train.datasets  # noqa: F401
import nnrag.train.registry  # noqa: F401
import nnrag.train.spec  # noqa: F401


def _warm_up() -> None:
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = nn.functional.cross_entropy(model(torch.zeros(2, 1, 4, 4)), torch.tensor([0, 1]))
    loss.backward()
    opt.step()
    torch.optim.Adam(model.parameters())


_warm_up()
