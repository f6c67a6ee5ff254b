"""Versioned LoRA adapters under ``$NNRAG_HOME/adapters/<n>/``: listing, choosing, publishing.

``nnrag learn`` fine-tunes a base model and publishes the adapter here; ``nnrag generate``
loads the newest adapter for its base model by default. A version is a folder named by
its number holding peft's files and ``manifest.json`` (base model, dataset hash, settings,
metrics). Publishing is atomic: the adapter is written into a ``.tmp-*`` folder beside the
versions and renamed to its number in one step, with the manifest written (and synced)
before the rename, so a killed or disk-full save never leaves a half-written folder that
counts as a version, and the newest version is always a complete one. No torch here: this
module only reads and moves files, so ``generate`` can choose an adapter cheaply.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrag.exceptions import AdapterError

MANIFEST = "manifest.json"
PEFT_CONFIG = "adapter_config.json"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class AdapterInfo:
    """One published adapter version, as its manifest describes it."""

    number: int
    path: Path
    base: str
    dataset_hash: str | None = None
    created: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "path": str(self.path), "base": self.base,
                "dataset_hash": self.dataset_hash, "created": self.created,
                "settings": self.settings, "metrics": self.metrics}


def read_adapter(path: Path, number: int = -1) -> AdapterInfo:
    """The adapter in ``path`` (a version folder or any peft folder with our manifest)."""
    if not (path / PEFT_CONFIG).is_file():
        raise AdapterError(f"adapter folder {path} has no {PEFT_CONFIG} (not a peft LoRA adapter)")
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as exc:
        raise AdapterError(f"adapter manifest {path / MANIFEST} is unreadable: {exc}") from None
    base = data.get("base")
    if not base:  # a plain peft folder: peft records the base it was trained on
        try:
            peft = json.loads((path / PEFT_CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AdapterError(f"{path / PEFT_CONFIG} is unreadable: {exc}") from None
        base = peft.get("base_model_name_or_path") or "?"
    return AdapterInfo(number, path, str(base), data.get("dataset_hash"),
                       float(data.get("created", 0.0)), dict(data.get("settings", {})),
                       dict(data.get("metrics", {})))


class AdapterStore:
    """The adapter versions under ``root`` (``$NNRAG_HOME/adapters`` by default)."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from nnrag.config import nnrag_home

            root = nnrag_home() / "adapters"
        self.root = Path(root)

    def versions(self) -> list[AdapterInfo]:
        """Every complete version, oldest first (``.tmp-*`` and incomplete folders skipped)."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            if not (child.is_dir() and child.name.isdigit()):
                continue
            if not (child / MANIFEST).is_file() or not (child / PEFT_CONFIG).is_file():
                continue
            try:
                found.append(read_adapter(child, int(child.name)))
            except AdapterError:
                continue
        return sorted(found, key=lambda a: a.number)

    def newest(self, base: str) -> AdapterInfo | None:
        """The newest complete version trained on ``base`` (by its display id)."""
        for info in reversed(self.versions()):
            if info.base == base:
                return info
        return None

    def get(self, number: int) -> AdapterInfo:
        for info in self.versions():
            if info.number == number:
                return info
        raise AdapterError(f"no adapter version {number} in {self.root}")

    def resolve(self, choice: str | None, base: str) -> AdapterInfo | None:
        """What ``--adapter`` means: ``None`` (default) -> the newest for ``base`` (or none);
        ``none`` -> no adapter; a number -> that version; a folder -> that folder. An adapter
        trained on another base is an error, not a silent mismatch."""
        if choice is None:
            return self.newest(base)
        if choice.strip().lower() == "none":
            return None
        if choice.isdigit() and not Path(choice).exists():
            info = self.get(int(choice))
        else:
            path = Path(choice).expanduser()
            if not path.is_dir():
                raise AdapterError(f"adapter {choice!r}: no such folder (or use a version "
                                   f"number from {self.root}, or 'none')")
            info = read_adapter(path)
        if info.base not in ("?", base):  # "?": a plain peft folder that names no base
            raise AdapterError(f"adapter {info.path} was trained on {info.base!r}, not on "
                               f"{base!r}: pass --adapter none or the matching --model")
        return info

    def staging(self) -> Path:
        """A fresh folder to write an adapter into before :meth:`publish` (same file system)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root))

    def publish(self, staged: Path, manifest: dict[str, Any]) -> AdapterInfo:
        """Write ``manifest`` into ``staged`` and rename it to the next version number.

        ``manifest`` must name its ``base``. The rename is the commit: before it nothing is
        listed, after it the version is complete.
        """
        if not manifest.get("base"):
            raise AdapterError("an adapter manifest must name its base model")
        if not (staged / PEFT_CONFIG).is_file():
            raise AdapterError(f"{staged} holds no {PEFT_CONFIG}: nothing to publish")
        data = {"created": time.time(), **manifest}
        tmp = staged / (MANIFEST + ".part")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, staged / MANIFEST)
        for _ in range(100):  # another publisher may take a number between listing and rename
            numbers = [int(c.name) for c in self.root.iterdir() if c.name.isdigit()]
            target = self.root / str(max(numbers, default=0) + 1)
            if target.exists():
                continue
            try:
                os.rename(staged, target)  # fails if target exists (non-empty) or appears
            except OSError:
                if target.exists():
                    continue
                raise
            _fsync_dir(self.root)
            return read_adapter(target, int(target.name))
        raise AdapterError(f"could not take a version number in {self.root}")

    def discard(self, staged: Path) -> None:
        """Remove a staging folder that will not be published."""
        if staged.name.startswith(TMP_PREFIX):
            shutil.rmtree(staged, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
