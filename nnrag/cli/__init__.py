"""The ``nnrag`` command line: argument parsing and output formatting over the Python API.

Commands are plain click objects, one module per command family, added to the group here.
Every :class:`~nnrag.exceptions.NnragError` becomes a one-paragraph message on stderr and
exit code 2; an ``index`` run that skipped files exits 1; success exits 0.
"""

from __future__ import annotations

import click

from nnrag._version import __version__
from nnrag.cli import (
    _demo,
    _doctor,
    _generate,
    _index,
    _learn,
    _lemur,
    _mutate,
    _predict,
    _sandbox,
    _search,
    _train,
    _tune,
)
from nnrag.cli._common import Group


@click.group(cls=Group)
@click.version_option(__version__, prog_name="nnrag")
def main() -> None:
    """Index PyTorch code, extract self-contained blocks, and prove they run."""


for _command in (
    _index.index, _index.extract, _index.validate, _index.blocks, _index.export, _index.stats,
    _demo.demo,
    _train.train, _train.resume, _train.runs, _train.show, _train.leaderboard, _train.datasets,
    _train.transforms,
    _search.embed, _search.query, _search.similar, _search.duplicates,
    _mutate.mutate,
    _generate.generate,
    _learn.learn,
    _sandbox.sandbox,
    _lemur.lemur,
    _predict.predict,
    _tune.tune,
    _doctor.doctor,
):
    main.add_command(_command)

__all__ = ["main"]
