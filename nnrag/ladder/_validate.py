"""The validation ladder, orchestrated: emit each block, climb the rungs in the sandbox.

Results are cached by the *closure* hash (the emitted code plus the ladder version), so a
block whose code and dependencies are unchanged is never run twice, even after
re-indexing or when it is a byte-identical copy in another package. The sandbox limits are
part of the key when they are not the defaults: a block that timed out under a one-second
limit has not shown how it behaves under the default minute.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnrag.extract import ClosureBuilder, Emitted, emit
from nnrag.index import RUNGS, Store
from nnrag.logging import get_logger
from nnrag.sandbox import Limits, SandboxResult, run_many

logger = get_logger(__name__)

LADDER_VERSION = "12"  # bump when the ladder's inference changes: old results are re-run
ENTRY = "nnrag.ladder._child:run"
_MARKER = re.compile(r"^NNRAG_RUNG=(\d)$", re.M)


@dataclass(frozen=True)
class Outcome:
    """One block's place on the ladder."""

    qualname: str
    rung: int
    failed_rung: str | None
    cause: str | None
    error_type: str | None
    error_message: str | None
    cached: bool
    detail: dict[str, Any] = field(default_factory=dict)
    # ``registry.rule`` names of the heuristics the climb used; () for results cached before
    rules_fired: tuple[str, ...] = ()

    @property
    def rung_name(self) -> str:
        return RUNGS[self.rung]


DEFAULT_LIMITS = Limits(wall_s=60.0, memory_mb=4096)


def cache_key(emitted: Emitted, max_rung: int, limits: Limits | None = None) -> str:
    """The result's cache key: the closure, the target, how far to climb, the ladder
    version, and the limits unless they are :data:`DEFAULT_LIMITS`."""
    text = f"{emitted.closure_hash}:{emitted.name}:{max_rung}:{LADDER_VERSION}"
    if limits is not None and limits != DEFAULT_LIMITS:
        text += f":{limits!r}"
    return hashlib.sha1(text.encode()).hexdigest()


def _from_sandbox(result: SandboxResult) -> dict[str, Any]:
    """Turn a sandbox verdict into a ladder result, even when the child died mid-climb."""
    if result.status == "ok" and isinstance(result.value, dict):
        return result.value
    reached = [int(m) for m in _MARKER.findall(result.stdout or "")]
    rung = max(reached) if reached else 0
    failed = RUNGS[min(rung + 1, len(RUNGS) - 1)]
    # A hang or an exhausted memory limit is the block's own behaviour on our probe.
    cause = "genuine_error"
    return {
        "rung": rung, "rung_name": RUNGS[rung], "failed_rung": failed,
        "error_type": result.error_type or result.status,
        "error_message": (result.error_message or result.status)[:2000],
        "cause": cause, "sandbox_status": result.status,
    }


def validate(
    store: Store,
    names: Sequence[str] = (),
    *,
    all_blocks: bool = False,
    jobs: int = 1,
    limits: Limits | None = None,
    max_rung: int = 6,
    force: bool = False,
    progress: Callable[[int, int, Outcome], None] | None = None,
    builder: ClosureBuilder | None = None,
) -> list[Outcome]:
    """Validate the named definitions (or every block); returns outcomes in input order."""
    builder = builder or ClosureBuilder(store)
    limits = limits or DEFAULT_LIMITS
    packages = {p["name"]: p for p in store.packages()}
    rows = store.block_definitions() if all_blocks else [builder.find(n) for n in names]
    outcomes: list[Outcome | None] = [None] * len(rows)
    pending: list[tuple[int, dict[str, Any], Emitted, str]] = []
    done = 0

    def record(i: int, outcome: Outcome) -> None:
        nonlocal done
        outcomes[i] = outcome
        done += 1
        if progress:
            progress(done, len(rows), outcome)

    for i, row in enumerate(rows):
        try:
            emitted = emit(builder.build(row["id"]), packages)
        except Exception as exc:  # an emission bug must not stop a 2,000-block run
            logger.warning("cannot emit %s: %s", row["qualname"], exc)
            record(i, Outcome(row["qualname"], 0, "parse", "resolver_gap", type(exc).__name__,
                              str(exc)[:2000], False))
            continue
        key = cache_key(emitted, max_rung, limits)
        cached = None if force else store.cached_validation(key)
        if cached is not None:
            store.link_validation(row["qualname"], row["hash"], key)
            record(i, _outcome(row["qualname"], cached, True))
        else:
            pending.append((i, row, emitted, key))

    def on_result(j: int, result: SandboxResult) -> None:
        i, row, emitted, key = pending[j]
        value = _from_sandbox(result)
        value["cause"] = refine_cause(value, emitted, builder.table.modules)
        value["gaps"] = list(emitted.gaps)
        store.save_validation(row["qualname"], row["hash"], key, value)
        record(i, _outcome(row["qualname"], value, False))

    payloads = [
        {"source": e.code, "target": e.name, "module_name": f"nnrag_block_{key[:12]}",
         "max_rung": max_rung, "seed": 0, "timeout_hint_s": limits.wall_s}
        for _, _, e, key in pending
    ]
    if payloads:
        preload = ("torch", *_shared_imports([e for _, _, e, _ in pending]))
        run_many(ENTRY, payloads, limits=limits, jobs=jobs, preload=preload, on_result=on_result)
    return [o for o in outcomes if o is not None]


def refine_cause(value: dict[str, Any], emitted: Emitted, modules: Collection[str]) -> str | None:
    """The child's cause, corrected with what only the orchestrator knows: the index.

    A NameError in a block with resolver gaps, and an import of a module the index holds
    (``No module named 'pkg'`` for an import the emitted code kept), are the resolver's
    failures to inline, not a package missing from the environment.
    """
    cause: str | None = value.get("cause")
    if emitted.gaps and value.get("error_type") == "NameError":
        return "resolver_gap"
    missing = value.get("missing_module")
    if cause == "missing_package" and missing and _indexed(str(missing), modules):
        return "resolver_gap"
    return cause


def _indexed(module: str, modules: Collection[str]) -> bool:
    return module in modules or any(m.startswith(f"{module}.") for m in modules)


def _shared_imports(emitted: Sequence[Emitted], limit: int = 12) -> list[str]:
    """External modules many blocks import, preloaded once per worker (best effort).

    Importing transformers takes seconds; paying it once per worker instead of once per
    block makes validating a transformers code base several times faster.
    """
    counts: Counter[str] = Counter()
    for e in emitted:
        counts.update({_import_module(s) for s in e.imports if not s.startswith("from __future__")})
    floor = max(3, len(emitted) // 50)
    common = [m for m, n in counts.most_common() if n >= floor and m.split(".")[0] != "torch"]
    return [f"?{m}" for m in sorted(common[:limit])]


def _import_module(statement: str) -> str:
    words = statement.split()
    return words[1]


def _outcome(qualname: str, value: dict[str, Any], cached: bool) -> Outcome:
    return Outcome(
        qualname, int(value.get("rung", 0)), value.get("failed_rung"), value.get("cause"),
        value.get("error_type"), value.get("error_message"), cached, value,
        tuple(value.get("rules_fired") or ()),
    )
