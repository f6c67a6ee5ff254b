"""First leaf layer -> probe layouts (``leaf_layouts``): the first matching layer type wins.

The forward signature rarely says the input's shape, but the first parametrised leaf of a
block usually touches the input: its type names a tensor family (``cf2`` = ``[B, C, H,
W]``, ``seq`` = ``[B, N, C]``, ``cl2`` = channels-last, ``ids`` = token ids...) and its
size the feature width. Subclasses come before their bases where the torch types nest.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from nnrag.ladder.rules._registry import Registry

LEAF_LAYOUTS = Registry(
    "leaf_layouts", "first parametrised leaf layer -> (layout, size) guesses; first match wins"
)
Layouts = list[tuple[str, int]] | None


@LEAF_LAYOUTS.register(
    "conv1d", order=10, example="torchvision Conv1dNormActivation",
    doc="1-d convolutions read [B, C, L]",
)
def _conv1d(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.Conv1d | nn.ConvTranspose1d):
        return [("cf1", leaf.in_channels)]
    return None


@LEAF_LAYOUTS.register(
    "conv3d", order=20, example="torchvision Conv3dNormActivation",
    doc="3-d convolutions read [B, C, T, H, W]",
)
def _conv3d(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.Conv3d | nn.ConvTranspose3d):
        return [("cf3", leaf.in_channels)]
    return None


@LEAF_LAYOUTS.register(
    "conv2d", order=30, example="torchvision Conv2dNormActivation",
    doc="2-d convolutions read [B, C, H, W]",
)
def _conv2d(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.Conv2d | nn.ConvTranspose2d):
        return [("cf2", leaf.in_channels)]
    return None


@LEAF_LAYOUTS.register(
    "embedding", order=40, example="transformers BertEmbeddings",
    doc="embeddings read token ids below num_embeddings",
)
def _embedding(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.Embedding | nn.EmbeddingBag):
        return [("ids", leaf.num_embeddings)]
    return None


@LEAF_LAYOUTS.register(
    "linear", order=50, example="timm Mlp",
    doc="linears read tokens first, then flat features, then channels-last maps",
)
def _linear(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.Linear):
        return [("seq", leaf.in_features), ("flat", leaf.in_features), ("cl2", leaf.in_features)]
    return None


@LEAF_LAYOUTS.register(
    "multihead_attention", order=60, example="torchvision EncoderBlock",
    doc="nn.MultiheadAttention is sequence-first unless batch_first",
)
def _mha(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.MultiheadAttention):
        return [("seq" if leaf.batch_first else "seqT", leaf.embed_dim), ("seq", leaf.embed_dim)]
    return None


@LEAF_LAYOUTS.register(
    "batchnorm1d", order=70, example="fastai LinBnDrop",
    doc="BatchNorm1d reads [B, C] or [B, C, L]",
)
def _bn1d(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.BatchNorm1d):
        return [("flat", leaf.num_features), ("cf1", leaf.num_features)]
    return None


@LEAF_LAYOUTS.register(
    "batchnorm3d", order=80, example="torchvision VideoResNet BasicStem",
    doc="BatchNorm3d reads [B, C, T, H, W]",
)
def _bn3d(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.BatchNorm3d):
        return [("cf3", leaf.num_features)]
    return None


@LEAF_LAYOUTS.register(
    "batchnorm2d", order=90, example="torchvision BasicBlock",
    doc="BatchNorm2d / InstanceNorm2d read [B, C, H, W]",
)
def _bn2d(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.BatchNorm2d | nn.InstanceNorm2d):
        return [("cf2", leaf.num_features)]
    return None


@LEAF_LAYOUTS.register(
    "groupnorm", order=100, example="diffusers ResnetBlock2D",
    doc="GroupNorm reads channels-first maps, sometimes tokens",
)
def _groupnorm(leaf: nn.Module) -> Layouts:
    if isinstance(leaf, nn.GroupNorm):
        return [("cf2", leaf.num_channels), ("seq", leaf.num_channels)]
    return None


@LEAF_LAYOUTS.register(
    "normalized_shape", order=110, example="timm LayerNorm2d",
    doc="LayerNorm-likes: channels-first when the class says 2d/cf, else tokens first",
)
def _normalized_shape(leaf: nn.Module) -> Layouts:
    shape = getattr(leaf, "normalized_shape", None)
    if isinstance(shape, tuple | list) and len(shape) == 1:
        d = int(shape[0])
        if re.search(r"2d|channels?first|cf", type(leaf).__name__, re.I):
            return [("cf2", d), ("seq", d)]
        return [("seq", d), ("cl2", d), ("flat", d), ("cf2", d)]
    return None


@LEAF_LAYOUTS.register(
    "vector_weight", order=120, example="transformers LlamaRMSNorm",
    doc="a 1-d weight: an RMSNorm-style custom norm over the last dim",
)
def _vector_weight(leaf: nn.Module) -> Layouts:
    weight = getattr(leaf, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 1:
        return [("seq", weight.shape[0]), ("cf2", weight.shape[0]), ("flat", weight.shape[0])]
    return None


@LEAF_LAYOUTS.register(
    "matrix_weight", order=130, example="bitsandbytes Linear8bitLt",
    doc="a 2-d weight: a custom linear reading its second dim",
)
def _matrix_weight(leaf: nn.Module) -> Layouts:
    weight = getattr(leaf, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return [("seq", weight.shape[1]), ("flat", weight.shape[1])]
    return None
