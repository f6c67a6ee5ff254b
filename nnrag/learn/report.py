"""``nnrag learn --report --out DIR``: the logged cycles as a plot (PNG) and an HTML page.

The table is the one the CLI prints; the plot shows, per cycle, the rates the issue asks
for (executable, trained, unique and novel, each over the prompts sent) and the best and
mean test accuracy. The data of the plot (:func:`plot_series`) is computed apart from the
drawing, so what is plotted can be checked without reading pixels. matplotlib (the ``llm``
extra) is imported only when a plot is drawn, onto an Agg canvas (no display). Both files
are written atomically: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnrag.exceptions import OutputError
from nnrag.learn.loop import CycleMetrics

TABLE_COLUMNS = ("cycle", "adapter", "prompts", "parsed", "schema_valid", "unique", "novel",
                 "executable", "trained", "best_accuracy", "mean_accuracy", "train_examples",
                 "train_loss", "dataset_s", "finetune_s", "measure_s")
RATES = ("executable", "trained", "unique", "novel")  # each over the prompts of its cycle
ACCURACIES = ("best_accuracy", "mean_accuracy")
PNG_NAME, HTML_NAME = "learn.png", "learn.html"


def cell(column: str, value: object) -> str:
    """One table cell as the CLI shows it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}" if column.endswith("_s") else f"{value:.4f}"
    return str(value)


@dataclass(frozen=True)
class Series:
    """One run's plotted data: ``cycles[i]`` pairs with ``values[name][i]`` (None: no value,
    e.g. no accuracy when nothing trained)."""

    run: str
    cycles: tuple[int, ...]
    values: dict[str, tuple[float | None, ...]]


def plot_series(rows: Sequence[CycleMetrics]) -> list[Series]:
    """The plotted data, one :class:`Series` per run in the order the runs first appear."""
    runs: dict[str, list[CycleMetrics]] = {}
    for row in rows:
        runs.setdefault(row.run, []).append(row)
    out = []
    for run, items in runs.items():
        items = sorted(items, key=lambda r: r.cycle)
        values: dict[str, tuple[float | None, ...]] = {
            name: tuple(getattr(r, name) / r.prompts if r.prompts else None for r in items)
            for name in RATES}
        values.update({name: tuple(getattr(r, name) for r in items) for name in ACCURACIES})
        out.append(Series(run, tuple(r.cycle for r in items), values))
    return out


def render_png(series: Sequence[Series], title: str = "nnrag learn") -> bytes:
    """The plot as PNG bytes: rates on the left, accuracies on the right, one line per
    measure (and run, when several are shown)."""
    from nnrag._imports import optional_import

    optional_import("matplotlib", "llm")
    # the object API on the Agg canvas: no display, no global pyplot state to disturb
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    rates, accs = fig.subplots(1, 2, sharex=True)
    several = len(series) > 1
    for s in series:
        suffix = f" ({s.run})" if several else ""
        for name in RATES:
            rates.plot(*_points(s, name), marker="o", label=name + suffix)
        for name in ACCURACIES:
            accs.plot(*_points(s, name), marker="o", label=name.replace("_", " ") + suffix)
    for ax, label in ((rates, "rate (of the prompts sent)"), (accs, "test accuracy")):
        ax.set_xlabel("cycle")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if any(len(line.get_xdata()) for line in ax.get_lines()):
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no values yet", ha="center", transform=ax.transAxes)
    rates.set_title("generated models")
    accs.set_title("after training")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _points(s: Series, name: str) -> tuple[list[int], list[float]]:
    """The cycles that have a value of ``name`` and those values (gaps are left out)."""
    pairs = [(c, v) for c, v in zip(s.cycles, s.values[name], strict=True) if v is not None]
    return [c for c, _ in pairs], [v for _, v in pairs]


def render_html(rows: Sequence[CycleMetrics], png: bytes, *, all_runs: bool = False) -> str:
    """A self-contained page: the table (as the CLI prints it) and the plot inline."""
    columns = (("run",) if all_runs else ()) + TABLE_COLUMNS
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(c, r.as_dict()[c]))}</td>" for c in columns)
        + "</tr>\n" for r in rows)
    last = rows[-1]
    caption = html.escape(f"run {last.run}, base {last.base}, method {last.method}")
    image = base64.b64encode(png).decode("ascii")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>nnrag learn</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head>\n"
        f"<body><h1>nnrag learn</h1>\n<p>{caption}</p>\n"
        f"<img alt=\"per-cycle rates and accuracy\" src=\"data:image/png;base64,{image}\">\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n"
        "</body></html>\n")


def write_report(rows: Sequence[CycleMetrics], folder: Path, *,
                 all_runs: bool = False) -> tuple[Path, Path]:
    """Write ``learn.png`` and ``learn.html`` into ``folder``; returns their paths."""
    png = render_png(plot_series(rows))
    page = render_html(rows, png, all_runs=all_runs)
    png_path, html_path = folder / PNG_NAME, folder / HTML_NAME
    _write_atomic(png_path, png)
    _write_atomic(html_path, page.encode("utf-8"))
    return png_path, html_path


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            mask = os.umask(0)  # mkstemp makes the file private; a report is made to share
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
