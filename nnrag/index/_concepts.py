"""A glossary of well-known building blocks: what their classes are called, what they do.

``concepts.yaml`` (beside this module) lists block families (squeeze-and-excitation,
window attention, ASPP, ...) with the words their class names use and a description in the
words of papers. A block whose name matches a family gets the description added to its
BM25 text (:func:`concept_text`) and to the text it is embedded by
(:func:`nnrag.index._text.family_text`), so a query that describes a technique ("channel
attention from globally pooled features through a sigmoid gate") meets blocks whose code
never says so (``SEModule``), in both retrievers.

Matching is on the words of the class name (``EffectiveSEModule`` -> effective, se,
module): a pattern matches the name's last words, or the last words before a generic tail
such as ``layer``, ``block`` or ``2d`` (``se module``, ``se``); a pattern written ``=block``
matches the whole name only. So ``SEBottleneck`` is a
bottleneck, ``AttentionPool2d`` is no plain attention, and ``Wav2Vec2FeatureEncoder`` is a
feature encoder, not the wav2vec2 model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from nnrag.index._words import split_identifier

TAIL = frozenset(["layer", "layers", "block", "module", "1d", "2d", "3d", "v1", "v2", "v3",
                  "activation", "impl", "fn"])
MAX_CONCEPTS = 3  # descriptions added to one block at most (the most specific first)


@dataclass(frozen=True)
class Concept:
    """One block family."""

    concept: str
    names: tuple[tuple[bool, tuple[str, ...]], ...]  # (whole name only, words)
    about: str

    def matches(self, words: list[str]) -> int:
        """Length of the longest pattern found in ``words`` (0: no match)."""
        best = 0
        endings = _endings(words)
        for exact, pattern in self.names:
            n = len(pattern)
            hit = (tuple(words) == pattern if exact
                   else any(tuple(e[-n:]) == pattern for e in endings))
            if hit:
                best = max(best, n)
        return best


def _endings(words: list[str]) -> list[list[str]]:
    """The name's words, then without each generic tail word in turn (``drop block 2d`` ->
    ``drop block`` -> ``drop``)."""
    out = [list(words)]
    while len(out[-1]) > 1 and (out[-1][-1] in TAIL or out[-1][-1].isdigit()):
        out.append(out[-1][:-1])
    return out


def parse_concepts(text: str) -> tuple[Concept, ...]:
    """Concepts from the YAML text of a glossary (a list of concept/names/about maps)."""
    out = []
    for entry in yaml.safe_load(text) or []:
        names = tuple(
            (str(p).startswith("="),
             tuple(w for token in str(p).lstrip("=").split() for w in split_identifier(token)))
            for p in entry["names"]
        )
        out.append(Concept(str(entry["concept"]), tuple(n for n in names if n[1]),
                           " ".join(str(entry["about"]).split())))
    return tuple(out)


@lru_cache(maxsize=1)
def concepts() -> tuple[Concept, ...]:
    """The packaged glossary."""
    return parse_concepts(
        resources.files("nnrag.index").joinpath("concepts.yaml").read_text("utf-8"))


@lru_cache(maxsize=8)
def _by_last_word(glossary: tuple[Concept, ...]) -> dict[str, list[int]]:
    """Concepts by the last word of each of their patterns: a name is checked against a few."""
    index: dict[str, list[int]] = {}
    for i, c in enumerate(glossary):
        for _, pattern in c.names:
            index.setdefault(pattern[-1], []).append(i)
    return index


def matching_concepts(name: str, glossary: tuple[Concept, ...] | None = None) -> list[Concept]:
    """The families a class name belongs to, most specific (longest pattern) first."""
    glossary = glossary if glossary is not None else concepts()
    words = split_identifier(name)
    index = _by_last_word(glossary)
    candidates = sorted({i for e in _endings(words) for i in index.get(e[-1], ())} if words else ())
    scored = [(glossary[i].matches(words), i) for i in candidates]
    hits = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))
    return [glossary[i] for _, i in hits[:MAX_CONCEPTS]]


def concept_text(name: str) -> str:
    """What the glossary says about the families of ``name`` (empty when none match)."""
    return " ".join(f"{c.concept}: {c.about}." for c in matching_concepts(name))


QUERY_MIN_SCORE = 15.0  # BM25 of a query against one concept (name x2, about) to name it


class ConceptMatcher:
    """Which family a query in words describes: BM25 over the glossary in an in-memory FTS5
    table (the same porter tokenizer as the block index). The dense retriever gets the family's
    name appended to the query, since the sentence model knows "squeeze-and-excitation" far
    better than a paraphrase of it."""

    def __init__(self, glossary: tuple[Concept, ...] | None = None,
                 min_score: float = QUERY_MIN_SCORE) -> None:
        import sqlite3

        self.glossary = glossary if glossary is not None else concepts()
        self.min_score = min_score
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.conn.execute("CREATE VIRTUAL TABLE c USING fts5(name, about,"
                          " tokenize = 'porter unicode61')")
        self.conn.executemany("INSERT INTO c(rowid, name, about) VALUES (?, ?, ?)",
                              [(i, c.concept, c.about) for i, c in enumerate(self.glossary)])

    def best(self, terms: list[str]) -> Concept | None:
        """The family the words describe best, if they describe one well enough."""
        if not terms:
            return None
        match = " OR ".join(f'"{t}"' for t in terms)
        row = self.conn.execute("SELECT rowid, -bm25(c, 2.0, 1.0) FROM c WHERE c MATCH ?"
                                " ORDER BY 2 DESC, rowid LIMIT 1", (match,)).fetchone()
        return self.glossary[row[0]] if row and row[1] >= self.min_score else None
