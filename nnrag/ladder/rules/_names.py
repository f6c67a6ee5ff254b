"""Constructor-argument names -> candidate values (``init_names``): the first match wins.

Each rule is a regex on the lower-cased ``__init__`` parameter name and either a *role*
(sizes guessed together per profile, see ``_infer.ROLE_VALUES``) or fixed candidates. The
order is the table's: specific names (``num_kv_heads``) come before the broad ``dim``
family that would swallow them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nnrag.ladder.rules._registry import Registry

INIT_NAMES = Registry(
    "init_names", "constructor parameter name -> (role, candidate values); first match wins"
)

# (name, regex on the lower-cased name, role or None, fixed candidates, why, example block)
_TABLE: list[tuple[str, str, str | None, tuple[Any, ...], str, str]] = [
    ("layer_index", r"^(layer_idx|layer_id|layer_index|block_idx|layer_number|idx)$", None,
     (0, 1), "transformers layers index their KV cache by layer", "transformers LlamaAttention"),
    ("num_classes", r"(^|_)(num_classes|n_classes|num_labels|nclass(es)?)$", "classes", (),
     "classifier heads: a small class count", "timm ClassifierHead"),
    ("num_heads", r"(^|_)(num_heads|n_heads?|nheads?|heads|num_attention_heads|nhead)$",
     "heads", (), "attention heads must divide the profile's dim", "timm Attention"),
    ("num_kv_heads", r"(num_key_value_heads|num_kv_heads|kv_heads)$", None, (2, 4),
     "grouped-query attention: kv heads divide the query heads", "transformers LlamaAttention"),
    ("head_dim", r"(^|_)(head_dim|dim_head|key_dim|qk_dim|attn_head_dim)$", "head_dim", (),
     "per-head width, consistent with dim / heads", "timm LevitAttention"),
    ("kernel_size", r"(kernel_size|^kernel|^ksize|^k$)", None, (3, 1),
     "odd kernels keep 'same' padding working", "timm ConvNormAct"),
    ("stride", r"^(stride|strides)$", None, (1, 2),
     "stride 1 first: residual shortcuts need equal shapes", "torchvision BasicBlock"),
    ("padding", r"^(padding|pad)$", None, (1, 0),
     "padding 1 matches the usual 3x3 kernel", "torchvision Conv2dNormActivation"),
    ("dilation", r"^(dilation|dilation_rate)$", None, (1,),
     "no dilation: the plain convolution", "torchvision ASPPConv"),
    ("groups", r"^(groups|num_groups|group_size|groups_num)$", None, (1, 4),
     "ungrouped first; 4 divides every profile size", "timm ConvNormAct"),
    ("mlp_ratio", r"(mlp_ratio|ffn_ratio|attn_ratio)$", None, (4.0, 2.0),
     "transformer MLP width ratios are floats", "timm Block"),
    ("expansion", r"(expansion|expand_ratio|expansion_ratio|exp_ratio|expand)$", None,
     (4, 2, 1), "inverted-residual expansion factors", "torchvision InvertedResidual"),
    ("se_ratio", r"(se_ratio|rd_ratio|squeeze_ratio)$", None, (0.25,),
     "squeeze-excite reduction as a ratio", "timm SqueezeExcite"),
    ("dropout", r"(drop|dropout|drop_rate|drop_path|_prob$|^p$|^prob$|attention_dropout)",
     None, (0.0,), "no dropout: the probe must be deterministic", "timm Block"),
    ("eps", r"(^|_)eps$|epsilon$", None, (1e-5,), "norm epsilon", "timm LayerNorm2d"),
    ("bias", r"^(bias|use_bias|affine)$", None, (True, False),
     "layers with parameters by default", "timm Mlp"),
    ("inplace", r"^inplace$", None, (False, True),
     "in-place activations break autograd on probes", "torchvision SqueezeExcitation"),
    ("norm_layer", r"(norm_layer|^norm$|norm_fn|normalization|^norm_cls$)", None, ("<norm>",),
     "a norm class fitting the block's layout", "torchvision BasicBlock"),
    ("act_layer", r"(act_layer|activation_layer|^act$|^activation$|act_fn|nonlinearity)",
     None, ("<act>",), "an activation class", "timm Mlp"),
    ("stage_depths",
     r"^(depths|layers|num_blocks|blocks_per_stage|stage_blocks|layer_nums)$", None,
     ((1, 1, 1, 1),), "one block per stage keeps a network small", "torchvision ResNet"),
    ("stage_widths",
     r"^(dims|embed_dims|hidden_dims|widths|stage_channels|channels_list|out_channels_list"
     r"|width_list|hidden_sizes)$", None, ((16, 32, 64, 128),),
     "per-stage widths, doubling", "timm ConvNeXt"),
    ("block_class", r"^(block|block_fn|block_cls|block_type|residual_block)$", None,
     ("<block>",), "a block class from the same module", "torchvision ResNet"),
    ("module_list", r"^(transforms|fns|functions|callables|module_list|modules)$", None,
     ("<modules>",), "a sequence of callables", "torchvision Compose"),
    ("wrapped_module",
     r"^(fn|module|layer|m|net|body|submodule|model|backbone|inner|wrapped|sublayer|op)$",
     None, ("<module>",), "wrappers take the module they wrap", "timm Residual"),
    ("window_size", r"(window_size|win_size)$", None, (4, 2),
     "windows dividing the probe sides", "timm SwinTransformerBlock"),
    ("shift_size", r"shift_size$", None, (0, 2),
     "unshifted windows first", "timm SwinTransformerBlock"),
    ("patch_size", r"(patch_size|patch|stem_stride)$", None, (4, 2),
     "patches dividing a 32-pixel probe", "timm PatchEmbed"),
    ("image_size", r"(img_size|image_size|input_size|imgsize|img_res)$", None, (32, 64, 224),
     "small images first", "timm PatchEmbed"),
    ("resolution",
     r"(input_resolution|resolution|feat_size|feature_size|grid_size|spatial_size|hw)$",
     None, ((8, 8), 8), "a token grid of 8x8", "timm SwinTransformerBlock"),
    ("seq_len",
     r"(seq_len|seq_length|max_len|max_length|max_position_embeddings|num_positions"
     r"|max_seq_len|num_patches|context_length|n_ctx|block_size)$", None, (64,),
     "position tables longer than the probe's sequence", "timm PositionalEncoding"),
    ("vocab_size", r"(vocab_size|num_embeddings|num_tokens|n_vocab|vocab|ntoken)$", None,
     (100,), "a small vocabulary", "transformers BertEmbeddings"),
    ("num_layers",
     r"^(num_layers|n_layers|nlayers|depth|num_blocks|num_hidden_layers|n_layer"
     r"|num_stages)$", "depth", (), "stack depth per profile", "timm VisionTransformer"),
    ("reduction", r"(reduction|reduction_ratio|squeeze_factor|rd_divisor|n_div)$", None, (4,),
     "a reduction dividing every profile size", "torchvision SqueezeExcitation"),
    ("growth_rate", r"(growth_rate)$", None, (16,), "DenseNet growth", "torchvision DenseLayer"),
    ("bn_size", r"(bn_size)$", None, (4,), "DenseNet bottleneck factor",
     "torchvision DenseLayer"),
    ("num_anchors", r"(num_anchors)$", None, (3,), "detection anchors per location",
     "torchvision RPNHead"),
    ("output_size", r"(output_size|out_size|pool_size)$", None, (4, 1),
     "pooled sizes smaller than the probe", "torchvision RoIAlign"),
    ("layer_scale", r"(init_value|init_values|layer_scale|scale_init|scale)$", None,
     (1.0, 1e-5), "layer-scale initial values", "timm LayerScale"),
    ("temperature", r"(temperature|tau|alpha|beta|gamma|momentum|margin)$", None, (1.0, 0.1),
     "scalar hyper-parameters near 1", "timm GlobalContext"),
    ("mode", r"(mode|pad_type|padding_mode)$", None, ("",),
     "the empty string picks timm's default padding", "timm create_conv2d"),
    ("hidden",
     r"(hidden_features|hidden_dim|hidden_channels|mid_chs|mid_channels|intermediate_size"
     r"|ffn_dim|mlp_dim|dim_feedforward|inter_chs|ff_dim|hidden_chs|d_ff|inner_dim"
     r"|bottleneck_channels)$", "hidden", (), "MLP hidden widths per profile", "timm Mlp"),
    ("out",
     r"(out_channels|out_chs|out_features|out_dim|dim_out|output_dim|oup|c_out|out_planes"
     r"|outplanes|output_channels|n_out|width_out|out_ch|out_c|nout)", "out", (),
     "output widths per profile", "torchvision Conv2dNormActivation"),
    ("planes", r"^(planes|mid_planes)$", "planes", (),
     "ResNet planes: inplanes = planes * expansion", "torchvision Bottleneck"),
    ("dim",
     r"(in_channels|in_chs|inplanes|in_planes|in_features|in_dim|input_dim|c_in|^dim$"
     r"|hidden_size|embed_dim|d_model|channels$|^width|num_features|^inp$|^c$|chans|in_ch"
     r"|in_c$|input_channels|num_input_features|features$|_dim$|^n_embd$|^d_|emb_dim"
     r"|width_in|^nin$|normalized_shape|normalization_shape|in_channel)", "dim", (),
     "input widths per profile: the catch-all, so it comes last", "timm RepViT"),
]


def _matcher(
    pattern: str, role: str | None, values: tuple[Any, ...]
) -> Callable[[str], tuple[str | None, tuple[Any, ...]] | None]:
    rx = re.compile(pattern)

    def match(low: str) -> tuple[str | None, tuple[Any, ...]] | None:
        return (role, values) if rx.search(low) else None

    return match


for _i, (_name, _pattern, _role, _values, _doc, _example) in enumerate(_TABLE):
    INIT_NAMES.add(_name, _matcher(_pattern, _role, _values), doc=_doc, example=_example,
                   order=10 * (_i + 1))
