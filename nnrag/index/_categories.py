"""Put every indexed block into one coarse category, read off the code itself.

:func:`categorize` parses the definition with :mod:`ast`, collects evidence and applies
ordered rules; the first that fires wins. Evidence, most trusted first: the **head noun** of
the class name, its last meaningful CamelCase token (``BertSelfAttention`` -> attention,
``AttentionPool2d`` -> pool; model prefixes like ``ConvBert`` come first and are ignored); a
*container* head (Block, Layer, Encoder, ...) defers to the token before it (``ConvLayer``) or
to the content, and a run of components names its heaviest part, conv > norm > act
(``ConvBnAct``, ``BatchNormAct2d``). Then the **base classes**, read the same way; the
**layers built or called** (callees, class and ``nn.*``/``F.*`` references, by head noun;
softmax over a matmul is attention); the **signatures** (``forward(pred, target)``,
``__init__(num_classes)``, ``forward(img)`` with no sub-layers: a data transform).

Why this order: (1) *loss* first, as losses call softmax, norms and activations that would
pull them elsewhere. (2) *utility* heads (``...Head``, ``DropPath``, ``Projector``) and data
transforms next, as heads take ``num_classes`` and ``ForQuestionAnsweringHead`` contains
``For``, which would make them whole networks. (3) *architecture* before any layer kind, as a
network contains every kind. (4) the name's head noun, then the bases: the author's word beats
a guess from the contents (``PatchEmbed`` builds a conv yet is an embedding); only activation
and norm heads yield to a conv inside (``Conv2dNorm``), as they name a mere component.
(5) content, by dominance: attention with an MLP, a layer stack or a LayerNorm/RMSNorm is a
*transformer_block* (an encoder layer is not "attention"); any conv makes a conv block, even
one carrying SE/SK attention; then attention; MLP/FFN/MoE and layer stacks (transformer
sub-layers, filed as *transformer_block*); embedding; pooling; normalisation; parameter-free
activation; *utility* for the rest.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

CATEGORIES: tuple[str, ...] = (
    "attention", "convolution", "transformer_block", "pooling", "normalization",
    "activation", "embedding", "loss", "architecture", "utility",
)  # fmt: skip

# Head noun -> category or pseudo-group (channel_attention, mlp, linear, container, ...).
_TABLE = """
attention: attention attn attentions mha msa mla gqa mqa selfattention multiheadattention
channel_attention: se ese eca ceca cbam excite excitation
convolution: conv convolution convolutional convs bottleneck inception basic depthwise dw pw
    separable fpn
pooling: pool pooling pooler merging merger downsampler pyramid spp aspp align
normalization: norm normalization normalize normalisation bn ln rms abn layernorm batchnorm
    groupnorm rmsnorm
activation: act activation relu gelu silu swish mish sigmoid tanh glu swiglu geglu softplus
    hardswish hardsigmoid elu selu celu quickgelu prelu snake
embedding: embed embeds embedding embeddings embedder position positional pos rotary rope encoding
    encodings patchify bias
loss: loss losses criterion entropy
architecture: model net network backbone features vgg alexnet rcnn
mlp: mlp ffn ff feed feedforward perceptron intermediate output experts expert moe router gate
linear: linear
utility: head heads classifier predictor projector projection adapter connector scaler quantizer
    quantization drop dropout droppath identity flatten reshape permute transpose scale crop flip
    pad aux lambda view
container: block blocks layer layers unit cell encoder decoder transformer mixer module body
    residual branch stem neck tower former transform wrapper group groups
stage: stage stages
filler: v fp base gated zero final simple fused fast new legacy custom path forward me interface
    function functions fn func impl sine cosine latent
"""
_KEYWORDS: dict[str, str] = {
    word: group
    for group, words in re.findall(r"(\w+):((?:.|\n    )+)", _TABLE)
    for word in words.split()
}
_MLP, _SE, _LINEAR, _CONTAINER, _STAGE = "mlp", "channel_attention", "linear", "container", "stage"
_COMPONENTS = ("convolution", "normalization", "activation")  # heaviest first
_SMALL = ("utility", "normalization", "activation", "embedding", "pooling")
_FILLER = {word for word, group in _KEYWORDS.items() if group == "filler"}  # no meaning alone
_FIXES = (
    ("MoE", "Moe"), ("ViT", "Vit"), ("NeXt", "Next"), ("ReLU", "Relu"), ("GeLU", "Gelu"),
    ("SiLU", "Silu"), ("ACT2FN", "Act"), ("NoBias", ""), ("BottleNeck", "Bottleneck"),
    ("ConvTranspose", "Conv"), ("convtranspose", "conv"), ("conv_transpose", "conv"),
    ("DeltaNet", "DeltaAttention"),  # a (gated) DeltaNet is a linear-attention layer
)  # fmt: skip
_SPLIT = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+[dD](?![a-z])|\d+")
_TARGETS = {"target", "targets", "label", "labels", "gt", "y_true", "ground_truth", "gt_labels"}
_CLASSES = {"num_classes", "num_labels", "n_classes", "num_class", "nclass", "nclasses"}
_IMAGE = re.compile(r"(img|image|pic|inpt|tensor|vid|video|clip)s?\d?$")
_LOOP_VARS = {"layer", "block", "blk", "decoder_layer", "encoder_layer", "layer_module"}
_FACTORIES = {"attn", "attn_layer", "create_attn", "get_attn", "se_layer"}
_FAMILY = {"transformer", "vit", "swin", "former", "dinat", "hiera"}
_MATMUL = {"matmul", "bmm", "einsum", "baddbmm"}
_ERRORS = ("Error", "Exception", "Warning")


@lru_cache(maxsize=8192)
def _tokens(name: str) -> tuple[str, ...]:
    """Lower-case CamelCase/snake_case tokens; ``VLMLP`` ends in ``mlp``, so split it off."""
    for old, new in _FIXES:
        name = name.replace(old, new)
    tokens: list[str] = []
    for raw in _SPLIT.findall(name):
        low = raw.lower()
        tail = next((low[i:] for i in range(1, len(low) - 2) if low[i:] in _KEYWORDS), "")
        if raw.isupper() and low not in _KEYWORDS and tail:
            tokens += [low[: -len(tail)], tail]
        else:
            tokens.append(low)
    return tuple(tokens)


@lru_cache(maxsize=8192)
def _name_signal(name: str) -> tuple[str | None, bool]:
    """``(group, behind_container)`` from the head noun: ``group`` is ``None`` when the head
    says nothing; ``behind_container`` when it came from (or stopped at) a container noun."""
    tokens = [t for t in _tokens(name) if t not in _FILLER and not t[0].isdigit() and len(t) > 1]
    while len(tokens) > 1 and len(tokens[-1]) <= 3 and tokens[-1] not in _KEYWORDS:
        tokens.pop()  # an unknown abbreviation after the head noun (``AttentionPoolPrr``)
    if "with" in tokens[1:]:  # ``ModelWithProjection``, unless the prefix says nothing
        head = _name_signal("_".join(tokens[: tokens.index("with")]))
        if head != (None, False):
            return head
    container = False
    for i in range(len(tokens) - 1, -1, -1):
        group = _KEYWORDS.get(tokens[i])
        if group == _STAGE and not container:
            return _STAGE, True
        if group in (_CONTAINER, _STAGE):
            container = True
            continue
        if group in _COMPONENTS:  # ConvBnAct, BatchNormAct2d: the heaviest adjacent part
            j = i
            while j > 0 and _KEYWORDS.get(tokens[j - 1]) in _COMPONENTS:
                j -= 1
            group = min((_KEYWORDS[t] for t in tokens[j : i + 1]), key=_COMPONENTS.index)
        if container and group == "architecture":
            return None, True  # a Res2NetBlock is no net
        return group, container
    return None, container


def _dotted(node: ast.AST) -> list[str]:
    """``["nn", "Conv2d"]`` for ``nn.Conv2d``; the tail of chains that start elsewhere."""
    if isinstance(node, ast.Attribute):
        return [*_dotted(node.value), node.attr]
    return [node.id] if isinstance(node, ast.Name) else []


class _Evidence:
    """What the body of a definition builds and calls, counted by group."""

    def __init__(self, tree: ast.AST, own: str) -> None:
        self.own = own
        self.groups: Counter[str] = Counter()  # also counts softmax, matmul and "builds"
        self.init_params: set[str] = set()
        self.forward_params: list[str] = []  # the required ones, after ``self``
        callees: set[int] = set()
        todo = [tree]
        while todo:  # parents before children, so a call is seen before its callee
            node = todo.pop()
            if isinstance(node, ast.arg | ast.AnnAssign):  # types, not layers
                node.annotation = ast.Constant(None)
            elif isinstance(node, ast.ClassDef):
                node.bases = []
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                node.returns = None
            todo.extend(ast.iter_child_nodes(node))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = [a.arg for a in node.args.posonlyargs + node.args.args]
                if node.name == "__init__":
                    self.init_params = set(names) | {a.arg for a in node.args.kwonlyargs}
                elif node.name == "forward":
                    self.forward_params = names[1 : len(names) - len(node.args.defaults)]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                self.groups["matmul"] += 1
            elif isinstance(node, ast.Call):
                callees.add(id(node.func))
                parts = _dotted(node.func)
                if not parts or (len(parts) == 2 and parts[0] in ("self", "cls")):
                    continue  # calling our own sub-module says nothing new
                if "Output" in parts[-1] and not node.args:
                    continue  # ``BaseModelOutput(last_hidden_state=...)`` is a return value
                self._ref(parts[-1])
                if parts[-1][:1].isupper() and not parts[-1].endswith(_ERRORS):
                    self.groups["builds"] += 1  # a CamelCase constructor: a sub-layer built
            elif isinstance(node, ast.Name | ast.Attribute) and id(node) not in callees:
                parts = _dotted(node)
                if parts and (parts[-1][:1].isupper() or parts[0] in ("nn", "F", "torch")):
                    self._ref(parts[-1])

    def _ref(self, leaf: str) -> None:
        low = leaf.lower()
        group, container = _name_signal(leaf)
        if leaf == self.own or (leaf.islower() and (group, container) == (None, True)
                                and low not in _LOOP_VARS):  # fmt: skip
            return  # ``aa_layer(...)``: a factory argument, not a stack of layers
        if low in _FACTORIES:
            group = _SE  # ``attn_layer(chs)`` in a conv block is an optional SE-style module
        if group == "normalization" and ("rms" in low or "layernorm" in low or "layer_norm" in low):
            self.groups["layernorm"] += 1
        if container and not group and _FAMILY & set(_tokens(leaf)):
            self.groups["attention"] += 1  # a stack of ``SwinTransformerBlock`` has attention
        self.groups["softmax" if "softmax" in low else "matmul" if low in _MATMUL else ""] += 1
        self.groups[group or (_CONTAINER if container else "")] += 1

    def content(self, stage: bool = False) -> str:
        """Rule 5: the dominant kind of layer inside, in order of dominance."""
        g = self.groups
        # a ``SwinStage`` stacks attention blocks we cannot see from here
        attention = g["attention"] or (g["softmax"] and g["matmul"])
        attention = attention or (stage and bool(_FAMILY & set(_tokens(self.own))))
        mlp = g[_MLP] or (g[_LINEAR] >= 2 and g["activation"])
        stack = g[_CONTAINER]
        norm = g["layernorm"] or (g["normalization"] and not g["convolution"])
        if attention and (mlp or stack or norm):
            return "transformer_block"
        if g["convolution"] or (stage and stack):  # stages of unknown blocks: conv nets
            return "convolution"
        if attention:
            return "attention"
        if mlp or stack:
            return "transformer_block"
        for category in ("embedding", "pooling", "normalization"):
            if g[category]:
                return category
        if g["activation"] and not (g[_LINEAR] or g["matmul"]):
            return "activation"
        return "utility"


def _component(group: str, ev: _Evidence) -> str:
    """A name's group -> category; component names yield to a heavier part inside."""
    g = ev.groups
    if group == "activation" and (g[_LINEAR] >= 2 or g["matmul"]):
        return "transformer_block"  # a gated-linear "activation" with weights is an FFN
    if group in ("activation", "normalization") and g["convolution"]:
        return "convolution"
    if group == "activation" and g["normalization"]:
        return "normalization"
    if group in (_SE, _MLP):
        return "attention" if group == _SE else "transformer_block"
    return ev.content() if group == _LINEAR else group


def categorize(source: str, name: str, bases: Sequence[str] = ()) -> str:
    """One of :data:`CATEGORIES` for the definition ``name`` whose code is ``source``.

    ``bases``: base-class expressions as written (the index's ``bases`` column). Pure and
    deterministic; a source that does not parse is judged on its name and bases alone.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    base_names = [b.split("[")[0].split("(")[0].split(".")[-1] for b in bases]
    if tree.body and isinstance(tree.body[0], ast.ClassDef):
        base_names += [p[-1] for p in map(_dotted, tree.body[0].bases) if p]
    base_groups = [_name_signal(b)[0] for b in base_names]
    ev = _Evidence(tree, name)
    group, container = _name_signal(name)
    tokens = _tokens(name)
    fwd = ev.forward_params

    # 1. loss
    target = len(fwd) >= 2 and fwd[1] in _TARGETS
    if target or "loss" in tokens or group == "loss" or "loss" in base_groups:
        return "loss"
    # 2. heads and helpers that say so (unless a container holds more); data transforms
    if group == "utility" and (not container or ev.content() in _SMALL):
        return "utility"
    transform = any(b.endswith("Transform") for b in base_names)  # torchvision.transforms.v2
    if transform or (fwd and _IMAGE.match(fwd[0]) and not ev.groups["builds"]):
        return "utility"
    # 3. architecture
    if group == "architecture" or "architecture" in base_groups or "for" in tokens[1:-1]:
        return "architecture"
    if ev.init_params & _CLASSES and ev.groups["builds"]:
        return "architecture"
    stacked = ev.groups[_STAGE] or (ev.groups["embedding"] and ev.groups[_CONTAINER])
    if {"encoder", "decoder", "transformer"} & set(tokens) and stacked:
        return "architecture"  # stages, or embeddings + a stack of layers: a whole encoder
    # 4. the name's head noun (or a container's modifier), then the base classes
    if group and group not in (_STAGE, "utility"):
        category = _component(group, ev)
        if container and category == "attention" and ev.content() == "transformer_block":
            return "transformer_block"  # an ``AttentionBlock`` with an MLP
        return category
    for base_group in base_groups:
        if base_group and base_group not in (_STAGE, _CONTAINER, "utility"):
            return _component(base_group, ev)
    # 5. content
    return ev.content(stage=group == _STAGE)
