"""The text a block is searched by: split identifiers, signature, layers, docstring, code.

Both retrievers read the same facts but want them differently: BM25 wants every identifier
of the code split into words (``RelPosBias`` -> ``rel pos bias``) so a query in words hits a
name in code, while the sentence embedder (which truncates at 256 word pieces) wants the
most telling facts first: name, glossary family, docstring, signatures and layers, then the
code.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nnrag.index._concepts import concept_text, matching_concepts
from nnrag.index._words import split_identifier

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LAYER = re.compile(r"\bnn\.([A-Z][A-Za-z0-9]+)|\bF\.([a-z_][a-z0-9_]*)")
_STOP = frozenset(
    ["self", "cls", "none", "true", "false", "return", "def", "class", "import", "from", "as",
     "if", "else", "elif", "for", "in", "while", "with", "not", "and", "or", "is", "lambda",
     "pass", "raise", "try", "except", "finally", "yield", "super", "init", "forward", "the",
     "of", "to"]
)
EMBED_CODE_CHARS = 1500
# Abbreviations in class names, spelled out for BM25 (``ClassAttn`` also reads "class
# attention"); words a description uses but a name abbreviates.
ABBREVIATIONS = {
    "attn": "attention", "proj": "projection", "emb": "embedding", "embed": "embedding",
    "pos": "position", "rel": "relative", "dw": "depthwise", "pw": "pointwise",
    "act": "activation", "cls": "class", "ctx": "context", "avg": "average",
    "ffn": "feed forward", "ff": "feed forward", "mha": "multi head attention",
    "qkv": "query key value", "bn": "batch norm", "ln": "layer norm", "gn": "group norm",
    "se": "squeeze excitation", "res": "residual", "lm": "language model", "seq": "sequence",
    "img": "image", "txt": "text", "tok": "token", "enc": "encoder", "dec": "decoder",
    "feat": "feature", "ds": "downsample", "mlp": "multi layer perceptron",
    "moe": "mixture of experts", "rope": "rotary position embedding",
    "sdpa": "scaled dot product attention", "gqa": "grouped query attention",
    "mqa": "multi query attention", "ssm": "state space model", "xattn": "cross attention",
    "vit": "vision transformer", "aspp": "atrous spatial pyramid pooling",
    "fpn": "feature pyramid network", "rpn": "region proposal network",
    "roi": "region of interest", "nms": "non maximum suppression", "conv": "convolution",
    "norm": "normalization", "std": "standardized", "rms": "root mean square",
    "mb": "mobile inverted bottleneck", "dwconv": "depthwise convolution",
    "lstm": "long short term memory",
}


def spelled_out(words: list[str]) -> list[str]:
    """The words, each abbreviation followed by what it stands for."""
    out: list[str] = []
    for w in words:
        out.append(w)
        if w in ABBREVIATIONS:
            out += ABBREVIATIONS[w].split()
    return out


def words_of(text: str) -> list[str]:
    """Every identifier in ``text`` split into words, stop words dropped, order kept."""
    out: list[str] = []
    for ident in _IDENT.findall(text):
        low = ident.lower()
        if low in _STOP:
            continue
        parts = split_identifier(ident)
        out += [low, *parts] if len(parts) > 1 else parts
    return [w for w in out if w not in _STOP and len(w) > 1]


def layers_used(source: str) -> list[str]:
    """``nn.Conv2d`` / ``F.gelu`` names the code calls, first occurrence order."""
    found = [a or b for a, b in _LAYER.findall(source)]
    return list(dict.fromkeys(found))


def signatures(source: str) -> str:
    """``__init__(dim, num_heads=8) forward(x, mask=None)`` of a class, or the function's own."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    node = tree.body[0] if tree.body else None
    funcs: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    if isinstance(node, ast.ClassDef):
        funcs = [
            f
            for f in node.body
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            and f.name in ("__init__", "forward")
        ]
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        funcs = [node]
    parts = []
    for f in funcs:
        args = [a.arg for a in [*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs]]
        parts.append(f"{f.name}({', '.join(a for a in args if a not in ('self', 'cls'))})")
    return " ".join(parts)


@dataclass(frozen=True)
class BlockText:
    """What one block contributes to the lexical and the dense index."""

    name_words: str
    path_words: str
    docstring: str
    identifiers: str
    embed: str

    @property
    def embed_hash(self) -> str:
        """Content address of the embedded text: equal text, equal vector, never re-embedded."""
        return hashlib.sha1(self.embed.encode("utf-8")).hexdigest()


def block_text(row: Mapping[str, Any]) -> BlockText:
    """Build both texts from a ``definitions`` row (name, qualname, docstring, source)."""
    name = str(row["name"])
    source = str(row.get("source") or "")
    doc = " ".join(str(row.get("docstring") or "").split())

    qual = str(row.get("qualname") or name)
    name_words = " ".join([name.lower(), *spelled_out(split_identifier(name))])
    path_words = " ".join(w for part in qual.split(".")[:-1] for w in split_identifier(part))
    idents = " ".join(dict.fromkeys(words_of(source)))
    layers = ", ".join(layers_used(source)[:20])
    head = [" ".join(split_identifier(name)) + f" ({name})", f"in {qual}"]
    family = family_text(name)
    if family:
        head.append(family)
    if doc:
        head.append(doc[:400])
    sig = signatures(source)
    if sig:
        head.append(f"signature: {sig}")
    if layers:
        head.append(f"uses: {layers}")
    embed = ". ".join(head) + "\n" + source[:EMBED_CODE_CHARS]
    about = concept_text(name)  # what papers call this family, for BM25
    return BlockText(name_words, path_words, f"{doc} {about}".strip(), idents, embed)


def family_text(name: str) -> str:
    """The glossary's families of ``name`` for the embedded text: every family's name and the
    most specific one's description. A description of a technique in words ("channel attention
    from pooled features through a sigmoid gate") then lands near ``SEModule`` in vector space
    too, not only in BM25; one description, not three, so the code still fits in the model's
    256 word pieces."""
    found = matching_concepts(name)
    if not found:
        return ""
    names = ", ".join(c.concept for c in found)
    return f"a {names}: {found[0].about}"


def query_text(code: str) -> str:
    """Text for a query given as code: the same recipe, applied to the first definition."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code[: EMBED_CODE_CHARS + 500]
    defs = [n for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)]
    if not defs:
        return code[: EMBED_CODE_CHARS + 500]
    first = defs[0]
    source = ast.get_source_segment(code, first) or code
    row = {"name": first.name, "qualname": first.name, "source": source,
           "docstring": ast.get_docstring(first) or ""}
    return block_text(row).embed
