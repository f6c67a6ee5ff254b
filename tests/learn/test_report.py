"""``nnrag learn --report --out DIR``: the logged cycles as learn.png and learn.html, written
atomically; the plotted data is checked, not pixels; ``--format json`` is unchanged."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from nnrag.learn.loop import CycleLog, CycleMetrics
from nnrag.learn.report import plot_series, render_html, render_png, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(run: str, cycle: int, executable: int, best: float | None) -> CycleMetrics:
    return CycleMetrics(
        run=run, cycle=cycle, method="sft", base="tiny", adapter=cycle or None,
        dataset_hash="abc", train_examples=30 + cycle, prompts=20, parsed=18, schema_valid=16,
        unique=15 - cycle, novel=12 - cycle, executable=executable, trained=executable - 1 if
        executable else 0, best_accuracy=best, mean_accuracy=None if best is None else best / 2,
        train_loss=None if cycle == 0 else 1.5 / cycle, heldout_loss=None, dataset_s=1.0,
        finetune_s=2.0 * cycle, measure_s=3.0, wall_s=6.0, created=1000.0 + cycle)


ROWS = [_row("r1", 0, 0, None), _row("r1", 1, 10, 0.8125), _row("r1", 2, 13, 0.9375)]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_plotted_data_has_one_point_per_cycle() -> None:
    (series,) = plot_series(ROWS)
    assert series.run == "r1" and series.cycles == (0, 1, 2)
    assert series.values["executable"] == (0.0, 0.5, 0.65)
    assert series.values["trained"] == (0.0, 0.45, 0.6)
    assert series.values["unique"] == (0.75, 0.7, 0.65)
    assert series.values["novel"] == (0.6, 0.55, 0.5)
    assert series.values["best_accuracy"] == (None, 0.8125, 0.9375)
    assert series.values["mean_accuracy"] == (None, 0.40625, 0.46875)
    two = plot_series([*ROWS, _row("r2", 0, 2, 0.5)])
    assert [(s.run, s.cycles) for s in two] == [("r1", (0, 1, 2)), ("r2", (0,))]


def test_the_png_is_a_valid_image_of_the_series(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    import os

    pytest.importorskip("matplotlib")
    drawn: list[list[int]] = []
    import matplotlib.axes

    real_plot = matplotlib.axes.Axes.plot

    def spy(self: matplotlib.axes.Axes, *args: object, **kwargs: object) -> object:
        drawn.append(list(args[0]))  # type: ignore[call-overload]
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    old_mask = os.umask(0o022)
    try:
        png_path, html_path = write_report(ROWS, tmp_path / "out")
    finally:
        os.umask(old_mask)
    assert (png_path.name, html_path.name) == ("learn.png", "learn.html")
    assert _png_size(png_path.read_bytes()) == (1000, 400)
    # four rates over all three cycles, two accuracies over the cycles that trained
    assert drawn == [[0, 1, 2]] * 4 + [[1, 2]] * 2
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    for path in (png_path, html_path):  # shareable, as the umask says (mkstemp's are 0600)
        assert path.stat().st_mode & 0o777 == 0o644


def test_the_page_holds_the_table_and_the_plot() -> None:
    pytest.importorskip("matplotlib")
    png = render_png(plot_series(ROWS))
    page = render_html(ROWS, png)
    assert page.startswith("<!DOCTYPE html>") and "run r1, base tiny, method sft" in page
    for value in ("0.8125", "0.9375", "0.4062", "<td>13</td>", "<td>32</td>", "0.7500"):
        assert value in page
    embedded = page.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(embedded) == png
    assert "<script" not in page and "http" not in page  # self-contained


def test_a_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from nnrag.exceptions import OptionalDependencyError

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(OptionalDependencyError, match=r"pip install 'nnrag\[llm\]'"):
        render_png(plot_series(ROWS))


def test_cli_report_out_writes_both_files(cli: Callable, nnrag_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    log = CycleLog(nnrag_home / "learn" / "cycles.jsonl")
    for row in ROWS:
        log.append(row)
    plain = cli("learn", "--report", "--format", "json")
    result = cli("learn", "--report", "--format", "json", "--out", tmp_path / "plots")
    assert result.returncode == 0, result
    assert result.stdout == plain.stdout  # --format json is unchanged by --out
    assert json.loads(result.stdout) == [r.as_dict() for r in ROWS]
    assert _png_size((tmp_path / "plots" / "learn.png").read_bytes())[0] > 0
    page = (tmp_path / "plots" / "learn.html").read_text()
    assert "0.9375" in page and f"wrote {tmp_path / 'plots' / 'learn.html'}" in result.stderr
    table = cli("learn", "--report", "--out", tmp_path / "plots")
    assert table.returncode == 0 and "0.9375" in table.stdout
    misuse = cli("learn", "--out", tmp_path / "plots")
    assert misuse.returncode == 2 and "--out goes with --report" in misuse.stderr
    blocked = tmp_path / "a_file"
    blocked.write_text("x")
    unwritable = cli("learn", "--report", "--out", blocked / "sub")
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
    assert "Traceback" not in unwritable.stderr
