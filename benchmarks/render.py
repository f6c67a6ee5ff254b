"""Render the docs' benchmark tables from ``benchmarks/results/*.json``.

Figures typed into the docs by hand drift from what was measured; here the JSON files are
the only source. Each file's last run becomes the tables between ``<!-- results:NAME -->``
and ``<!-- /results:NAME -->`` in ``docs/benchmarks.md`` (a file without markers gets a
section appended) and in any other ``docs/*.md`` page that places the same markers (a
feature's page may show its own benchmark), and the files' ``headline`` entries become the
README's table between ``<!-- results:headline -->`` markers.

    python benchmarks/render.py            # rewrite the docs in place
    python benchmarks/render.py --check    # exit 1 when they are out of date

A ``headline`` entry is ``{"what": ..., "figure": "{path.to.value:,} ...", "link": ...,
"order": N}``; a path step is a key, or for a list of rows the value of a row's first
column, so ``{targets.overall.import_pct}`` reads the ``overall`` row's ``import_pct``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import RUN_METADATA, problems  # noqa: E402

ROOT = HERE.parent
SUFFIXES = (("_pct", " %"), ("_ms", " ms"), ("_s", " s"))
HEADLINE = "headline"
FIELD = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")


def pretty(key: str) -> str:
    for suffix, unit in SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " ") + unit
    return key.replace("_", " ")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value).replace("|", "\\|")


def _numeric(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                 for v in present)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    align = ["---:" if _numeric([r[i] for r in rows]) else "---" for i in range(len(header))]
    return (["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
            + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(r, dict) for r in value)


def _is_keyed(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(v, dict) and not any(isinstance(x, dict | list) for x in v.values())
        for v in value.values())


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}: {pretty(k)}" if prefix else pretty(k), v, out)
    else:
        out[prefix] = value


def figure_tables(figures: dict[str, Any]) -> list[str]:
    """Markdown for a run's figures: one table per list of rows or map of rows, then the
    single values in a figure/value table."""
    out: list[str] = []
    single: dict[str, Any] = {}
    for key, value in figures.items():
        if _is_rows(value):
            columns = list(dict.fromkeys(k for r in value for k in r))
            rows = [[r.get(c) for c in columns] for r in value]
            out += [f"*{pretty(key)}*", "", *table([pretty(c) for c in columns], rows), ""]
        elif _is_keyed(value):
            columns = list(dict.fromkeys(k for r in value.values() for k in r))
            rows = [[name, *(r.get(c) for c in columns)] for name, r in value.items()]
            header = [pretty(key), *(pretty(c) for c in columns)]
            out += [f"*{pretty(key)}*", "", *table(header, rows), ""]
        else:
            _flatten(pretty(key), value, single)
    if single:
        out += table(["figure", "value"], [[k, v] for k, v in single.items()]) + [""]
    return out


def section(name: str, doc: dict[str, Any]) -> str:
    """The text between a benchmark's markers: its last run, where and how it was measured."""
    run = doc["runs"][-1]
    when = f", {run['date']}" if run.get("date") else ""
    lines = [f"Run *{run['label']}* at commit `{run['commit']}`{when}, on "
             f"{run.get('machine', doc['machine'])}."]
    if run.get("load_average"):
        lines[0] += " Load average (1, 5, 15 min) at the end: " + cell(run["load_average"]) + "."
    if run.get("note"):
        lines.append(f"Note: {run['note'].rstrip('.')}.")
    lines += ["", "```bash", run.get("command", doc["command"]), "```", ""]
    lines += figure_tables({k: v for k, v in run.items() if k not in RUN_METADATA})
    if len(doc["runs"]) > 1:
        earlier = "; ".join(f"{r['label']} (`{r['commit']}`)" for r in doc["runs"][:-1])
        lines.append(f"Earlier runs, kept in [results/{name}.json]"
                     f"(../benchmarks/results/{name}.json): {earlier}.")
        lines.append("")
    return "\n".join(lines)


def lookup(figures: Any, path: str) -> Any:
    value = figures
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif _is_rows(value):
            match = [r for r in value if r and str(next(iter(r.values()))) == step]
            if not match:
                raise KeyError(f"no row {step!r} in {path!r}")
            value = match[0]
        else:
            raise KeyError(f"no {step!r} in {path!r}")
    return value


def fill(template: str, figures: dict[str, Any]) -> str:
    return FIELD.sub(lambda m: format(lookup(figures, m.group(1)), m.group(2) or ""), template)


def headline(docs: dict[str, dict[str, Any]]) -> str:
    """The README's table: each results file's headline entries, filled from its last run."""
    entries = sorted(((e.get("order", 100), name, i, e) for name, doc in docs.items()
                      for i, e in enumerate(doc.get(HEADLINE, []))), key=lambda t: t[:3])
    rows, machines = [], []
    for _, name, _, entry in entries:
        run = docs[name]["runs"][-1]
        rows.append([entry["what"], fill(entry["figure"], run),
                     f"[{entry.get('link_text', 'details')}]({entry['link']})"])
        parts = run.get("machine", docs[name]["machine"]).split(", ")
        machines.append(", ".join(dict.fromkeys([parts[0], parts[-1]])))  # cores, accelerator
    lines = table(["what", "figure", "details"], rows)
    if machines:
        lines += ["", "Measured on " + "; ".join(dict.fromkeys(machines)) + ". What each run "
                  "shared its machine with, its command and the full tables are in "
                  "[docs/benchmarks.md](docs/benchmarks.md)."]
    return "\n".join(lines) + "\n"


def replace(text: str, name: str, body: str) -> str | None:
    """``text`` with the part between ``name``'s markers set to ``body``; None without them."""
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        return None
    return text[: i + len(start)] + "\n" + body.rstrip("\n") + "\n\n" + text[j:]


def load(results: Path) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not JSON ({exc})") from None
        bad = problems(doc)
        if bad:
            raise SystemExit(f"{path}: {'; '.join(bad)}")
        docs[path.stem] = doc
    return docs


def render(root: Path) -> dict[Path, str]:
    """The rendered text of every file that holds results, keyed by path."""
    docs = load(root / "benchmarks" / "results")
    bench_md, readme = root / "docs" / "benchmarks.md", root / "README.md"
    text = bench_md.read_text()
    for name, doc in docs.items():
        new = replace(text, name, section(name, doc))
        if new is None:  # a results file the docs do not place yet: append its section
            new = (text.rstrip("\n") + f"\n\n## {doc['benchmark']}\n\n<!-- results:{name} -->\n"
                   + section(name, doc).rstrip("\n") + f"\n\n<!-- /results:{name} -->\n")
        text = new
    out = {bench_md: text}
    for page in sorted((root / "docs").glob("*.md")):
        if page == bench_md:
            continue
        before = page.read_text()
        after = before
        for name, doc in docs.items():
            after = replace(after, name, section(name, doc)) or after
        if after != before:
            out[page] = after
    if readme.exists():
        new_readme = replace(readme.read_text(), HEADLINE, headline(docs))
        if new_readme is not None:
            out[readme] = new_readme
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = ap.parse_args(argv)
    try:
        rendered = render(args.root)
    except KeyError as exc:
        print(f"render: headline figure not found: {exc.args[0]}", file=sys.stderr)
        return 2
    stale = [p for p, text in rendered.items() if p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p} (run python benchmarks/render.py)", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(rendered[p])
        print(f"rewrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
