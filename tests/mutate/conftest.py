from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from nnrag.mutate._record import record
from nnrag.mutate._sites import instrument

SHAPE = [64, 1, 8, 8]


def record_in_process(source: str, folder: Path) -> dict[str, Any]:
    """Fixture models are our own code: recording them in-process keeps the tests fast."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        rec = record({"source": source, "instrumented": instrument(source), "in_shape": SHAPE,
                      "num_classes": 10, "module_name": f"m{abs(hash(source)) % 10**8}"})
    finally:
        os.chdir(cwd)
    assert rec["ok"], rec.get("error")
    return rec


@pytest.fixture(scope="session")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cache: dict[str, dict[str, Any]] = {}
    folder = tmp_path_factory.mktemp("record")

    def get(source: str) -> dict[str, Any]:
        if source not in cache:
            cache[source] = record_in_process(source, folder)
        return cache[source]

    return get
