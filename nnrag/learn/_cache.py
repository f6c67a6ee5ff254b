"""Probe results by hash of program and shape, kept across builds (JSON lines, append only).

Probing a program in the sandbox costs a fraction of a second to seconds; the LEMUR zoo has
1,903 of them. A rebuilt dataset, a reward for a repeated completion and the next cycle
probe only what they have not probed before. A torn last line (a killed write) is skipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def probe_key(code: str, shape: dict[str, Any]) -> str:
    return hashlib.sha256((json.dumps(shape, sort_keys=True) + "\0" + code).encode()).hexdigest()


class ProbeCache:
    """``key -> probe result`` in memory, persisted to ``path`` when given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._data: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self._data[entry["key"]] = entry["result"]
                except (ValueError, KeyError, TypeError):
                    continue

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def put(self, key: str, result: dict[str, Any]) -> None:
        keep: dict[str, Any] = {k: result.get(k) for k in ("ok", "stage", "error", "params")
                                if k in result}
        self._data[key] = keep
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "result": keep}) + "\n")
