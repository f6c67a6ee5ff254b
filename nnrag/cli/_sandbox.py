"""``nnrag sandbox --check``: which isolation layers untrusted code really runs behind here."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from nnrag.cli._common import FORMAT, emit_json, out


@click.command()
@click.option("--check", "do_check", is_flag=True,
              help="Measure the layers from inside a task child and run the built-in probes.")
@click.option("--network", is_flag=True, help="Check the sandbox as tasks with network get it.")
@FORMAT
def sandbox(do_check: bool, network: bool, fmt: str) -> None:
    """Report the sandbox's isolation layers; exit 1 when any probe was not contained."""
    if not do_check:
        raise click.UsageError("nothing to do: pass --check")
    from nnrag.sandbox import check

    report = check(network=network)
    if fmt == "json":
        emit_json(report.to_dict())
    else:
        layers = Table("layer", "state", "evidence")
        for layer in report.layers:
            layers.add_row(layer.name, "active" if layer.active else "MISSING", layer.detail)
        probes = Table("probe", "outcome", "detail")
        for probe in report.probes:
            probes.add_row(probe.name, "contained" if probe.contained else "NOT contained",
                           probe.detail)
        out.print(layers)
        out.print(probes)
        out.print("every probe contained" if report.contained else "SOME PROBES ESCAPED")
    sys.exit(0 if report.contained else 1)
