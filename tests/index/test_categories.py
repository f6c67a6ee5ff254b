"""Block categories: a table of small blocks, including the traps the rule order exists for."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnrag.index._categories import CATEGORIES, categorize

# (name, bases, source, expected). Sources are dedented; bases as the index stores them.
CASES: list[tuple[str, list[str], str, str]] = [
    # -- attention
    ("MultiHeadSelfAttention", ["nn.Module"], """
        class MultiHeadSelfAttention(nn.Module):
            def __init__(self, dim, heads=8):
                super().__init__()
                self.heads = heads
                self.qkv = nn.Linear(dim, dim * 3)
                self.proj = nn.Linear(dim, dim)

            def forward(self, x):
                q, k, v = self.qkv(x).chunk(3, dim=-1)
                attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
                return self.proj(attn @ v)
        """, "attention"),
    ("TokenMixer", ["nn.Module"], """
        class TokenMixer(nn.Module):  # no telling name: the SDPA call gives it away
            def __init__(self, dim):
                super().__init__()
                self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

            def forward(self, x):
                return F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))
        """, "attention"),  # noqa: E501
    ("Mixer", ["nn.MultiheadAttention"], """
        class Mixer(nn.MultiheadAttention):
            def forward(self, x):
                return super().forward(x, x, x)[0]
        """, "attention"),
    ("SqueezeExcite", ["nn.Module"], """
        class SqueezeExcite(nn.Module):  # channel attention is filed as attention
            def __init__(self, chs, rd=16):
                super().__init__()
                self.fc1 = nn.Conv2d(chs, chs // rd, 1)
                self.fc2 = nn.Conv2d(chs // rd, chs, 1)

            def forward(self, x):
                s = x.mean((2, 3), keepdim=True)
                return x * self.fc2(F.relu(self.fc1(s))).sigmoid()
        """, "attention"),
    # -- convolution
    ("ConvBnAct", ["nn.Module"], """
        class ConvBnAct(nn.Module):
            def __init__(self, cin, cout, k=3):
                super().__init__()
                self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
                self.bn = nn.BatchNorm2d(cout)
                self.act = nn.ReLU(inplace=True)

            def forward(self, x):
                return self.act(self.bn(self.conv(x)))
        """, "convolution"),
    ("BasicBlock", ["nn.Module"], """
        class BasicBlock(nn.Module):
            expansion = 1

            def __init__(self, inplanes, planes, stride=1, downsample=None):
                super().__init__()
                self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
                self.bn1 = nn.BatchNorm2d(planes)
                self.relu = nn.ReLU(inplace=True)
                self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = nn.BatchNorm2d(planes)
                self.downsample = downsample

            def forward(self, x):
                identity = x if self.downsample is None else self.downsample(x)
                out = self.relu(self.bn1(self.conv1(x)))
                return self.relu(self.bn2(self.conv2(out)) + identity)
        """, "convolution"),
    ("Stem", ["nn.Sequential"], """
        class Stem(nn.Sequential):  # a conv stem ends in a max-pool but is still a conv block
            def __init__(self, cin=3, cout=64):
                super().__init__(
                    nn.Conv2d(cin, cout, 7, 2, 3, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(3, 2, 1),
                )
        """, "convolution"),
    ("Conv2dNorm", ["nn.Module"], """
        class Conv2dNorm(nn.Module):  # the head noun is Norm, but it is built around a conv
            def __init__(self, cin, cout):
                super().__init__()
                self.conv = nn.Conv2d(cin, cout, 3)
                self.norm = nn.GroupNorm(8, cout)

            def forward(self, x):
                return self.norm(self.conv(x))
        """, "convolution"),
    ("Upsampler", ["nn.Module"], """
        class Upsampler(nn.Module):  # a transposed conv is a conv, not a transpose helper
            def __init__(self, cin, cout):
                super().__init__()
                self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
                self.bn = nn.BatchNorm2d(cout)

            def forward(self, x):
                return F.relu(self.bn(self.up(x)))
        """, "convolution"),
    # -- transformer_block
    ("TransformerEncoderLayer", ["nn.Module"], """
        class TransformerEncoderLayer(nn.Module):  # attention inside, but not "attention"
            def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1):
                super().__init__()
                self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
                self.linear1 = nn.Linear(d_model, dim_feedforward)
                self.linear2 = nn.Linear(dim_feedforward, d_model)
                self.norm1 = nn.LayerNorm(d_model)
                self.norm2 = nn.LayerNorm(d_model)
                self.dropout = nn.Dropout(dropout)

            def forward(self, src):
                src = self.norm1(src + self.dropout(self.self_attn(src, src, src)[0]))
                return self.norm2(src + self.linear2(F.relu(self.linear1(src))))
        """, "transformer_block"),
    ("Block", ["nn.Module"], """
        class Block(nn.Module):
            def __init__(self, dim, num_heads, mlp_ratio=4.0, norm_layer=nn.LayerNorm):
                super().__init__()
                self.norm1 = norm_layer(dim)
                self.attn = Attention(dim, num_heads=num_heads)
                self.norm2 = norm_layer(dim)
                self.mlp = Mlp(dim, int(dim * mlp_ratio))

            def forward(self, x):
                x = x + self.attn(self.norm1(x))
                return x + self.mlp(self.norm2(x))
        """, "transformer_block"),
    ("LlamaDecoderLayer", ["GradientCheckpointingLayer"], """
        class LlamaDecoderLayer(GradientCheckpointingLayer):
            def __init__(self, config, layer_idx):
                super().__init__()
                self.self_attn = LlamaAttention(config=config, layer_idx=layer_idx)
                self.mlp = LlamaMLP(config)
                self.input_layernorm = LlamaRMSNorm(config.hidden_size)

            def forward(self, hidden_states, attention_mask=None):
                residual = hidden_states
                hidden_states = self.self_attn(self.input_layernorm(hidden_states), attention_mask)
                return self.mlp(residual + hidden_states)
        """, "transformer_block"),
    ("Mlp", ["nn.Module"], """
        class Mlp(nn.Module):  # the FFN half of a transformer layer
            def __init__(self, dim, hidden):
                super().__init__()
                self.fc1 = nn.Linear(dim, hidden)
                self.act = nn.GELU()
                self.fc2 = nn.Linear(hidden, dim)

            def forward(self, x):
                return self.fc2(self.act(self.fc1(x)))
        """, "transformer_block"),
    # -- pooling
    ("GlobalAvg", ["nn.Module"], """
        class GlobalAvg(nn.Module):
            def forward(self, x):
                return F.adaptive_avg_pool2d(x, 1).flatten(1)
        """, "pooling"),
    ("AttentionPool2d", ["nn.Module"], """
        class AttentionPool2d(nn.Module):  # attention used to pool: the head noun decides
            def __init__(self, dim, heads):
                super().__init__()
                self.attn = nn.MultiheadAttention(dim, heads)

            def forward(self, x):
                x = x.flatten(2).permute(2, 0, 1)
                q = x.mean(dim=0, keepdim=True)
                return self.attn(q, x, x)[0][0]
        """, "pooling"),
    ("BertPooler", ["nn.Module"], """
        class BertPooler(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.dense = nn.Linear(config.hidden_size, config.hidden_size)
                self.activation = nn.Tanh()

            def forward(self, hidden_states):
                return self.activation(self.dense(hidden_states[:, 0]))
        """, "pooling"),
    # -- normalization
    ("RMSNorm", ["nn.Module"], """
        class RMSNorm(nn.Module):
            def __init__(self, dim, eps=1e-6):
                super().__init__()
                self.eps = eps
                self.weight = nn.Parameter(torch.ones(dim))

            def forward(self, x):
                return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        """, "normalization"),
    ("LayerNorm2d", ["nn.LayerNorm"], """
        class LayerNorm2d(nn.LayerNorm):
            def forward(self, x):
                x = x.permute(0, 2, 3, 1)
                x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
                return x.permute(0, 3, 1, 2)
        """, "normalization"),
    ("Finisher", ["nn.Module"], """
        class Finisher(nn.Module):  # nothing in the name: a block holding only a norm
            def __init__(self, dim):
                super().__init__()
                self.ln = nn.LayerNorm(dim)

            def forward(self, x):
                return self.ln(x)
        """, "normalization"),
    ("BatchNormAct2d", ["nn.BatchNorm2d"], """
        class BatchNormAct2d(nn.BatchNorm2d):  # norm + act is a normalisation
            def __init__(self, num_features, act_layer=nn.ReLU):
                super().__init__(num_features)
                self.act = act_layer()

            def forward(self, x):
                return self.act(super().forward(x))
        """, "normalization"),
    # -- activation
    ("GELU", ["nn.Module"], """
        class GELU(nn.Module):
            def forward(self, x):
                return F.gelu(x)
        """, "activation"),
    ("Swish", ["nn.Module"], """
        class Swish(nn.Module):
            def forward(self, x):
                return x * torch.sigmoid(x)
        """, "activation"),
    ("Smooth", ["nn.Module"], """
        class Smooth(nn.Module):
            def forward(self, x):
                return F.softplus(x)
        """, "activation"),
    # -- embedding
    ("PatchEmbed", ["nn.Module"], """
        class PatchEmbed(nn.Module):  # built on a conv, but it is an embedding
            def __init__(self, patch_size=16, in_chans=3, embed_dim=768):
                super().__init__()
                self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
                self.norm = nn.LayerNorm(embed_dim)

            def forward(self, x):
                return self.norm(self.proj(x).flatten(2).transpose(1, 2))
        """, "embedding"),
    ("BertEmbeddings", ["nn.Module"], """
        class BertEmbeddings(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
                self.position_embeddings = nn.Embedding(512, config.hidden_size)
                self.LayerNorm = nn.LayerNorm(config.hidden_size)

            def forward(self, input_ids):
                positions = torch.arange(input_ids.shape[1], device=input_ids.device)
                x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
                return self.LayerNorm(x)
        """, "embedding"),
    ("SinusoidalPositionalEncoding", ["nn.Module"], """
        class SinusoidalPositionalEncoding(nn.Module):
            def __init__(self, dim, max_len=5000):
                super().__init__()
                pos = torch.arange(max_len).unsqueeze(1)
                div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
                pe = torch.zeros(max_len, dim)
                pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
                self.register_buffer("pe", pe)

            def forward(self, x):
                return x + self.pe[: x.size(1)]
        """, "embedding"),
    ("Lookup", ["nn.Module"], """
        class Lookup(nn.Module):
            def __init__(self, n, d):
                super().__init__()
                self.table = nn.Embedding(n, d)

            def forward(self, ids):
                return self.table(ids)
        """, "embedding"),
    # -- loss
    ("FocalLoss", ["nn.Module"], """
        class FocalLoss(nn.Module):
            def __init__(self, gamma=2.0):
                super().__init__()
                self.gamma = gamma

            def forward(self, logits, targets):
                ce = F.cross_entropy(logits, targets, reduction="none")
                return ((1 - torch.exp(-ce)) ** self.gamma * ce).mean()
        """, "loss"),
    ("LabelSmoothing", ["_Loss"], """
        class LabelSmoothing(_Loss):
            def forward(self, x, target):
                logprobs = F.log_softmax(x, dim=-1)
                return -logprobs.gather(-1, target.unsqueeze(1)).mean()
        """, "loss"),
    ("DiceScore", ["nn.Module"], """
        class DiceScore(nn.Module):  # only the signature says "loss"
            def forward(self, pred, target):
                inter = (pred.sigmoid() * target).sum()
                return 1 - 2 * inter / (pred.sigmoid().sum() + target.sum())
        """, "loss"),
    # -- architecture
    ("ResNet", ["nn.Module"], """
        class ResNet(nn.Module):
            def __init__(self, block, layers, num_classes=1000):
                super().__init__()
                self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
                self.bn1 = nn.BatchNorm2d(64)
                self.relu = nn.ReLU(inplace=True)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
                self.layer1 = self._make_layer(block, 64, layers[0])
                self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
                self.avgpool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(128 * block.expansion, num_classes)

            def forward(self, x):
                x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
                x = self.layer2(self.layer1(x))
                return self.fc(torch.flatten(self.avgpool(x), 1))
        """, "architecture"),
    ("VisionTransformer", ["nn.Module"], """
        class VisionTransformer(nn.Module):  # a "Transformer" with a head is a network
            def __init__(self, embed_dim=768, depth=12, num_heads=12, num_classes=1000):
                super().__init__()
                self.patch_embed = PatchEmbed(embed_dim=embed_dim)
                self.blocks = nn.Sequential(*[Block(embed_dim, num_heads) for _ in range(depth)])
                self.norm = nn.LayerNorm(embed_dim)
                self.head = nn.Linear(embed_dim, num_classes)

            def forward(self, x):
                return self.head(self.norm(self.blocks(self.patch_embed(x)))[:, 0])
        """, "architecture"),
    ("LlamaForCausalLM", ["LlamaPreTrainedModel", "GenerationMixin"], """
        class LlamaForCausalLM(LlamaPreTrainedModel, GenerationMixin):
            def __init__(self, config):
                super().__init__(config)
                self.model = LlamaModel(config)
                self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

            def forward(self, input_ids=None, labels=None):
                logits = self.lm_head(self.model(input_ids).last_hidden_state)
                loss = None if labels is None else self.loss_function(logits, labels)
                return CausalLMOutputWithPast(loss=loss, logits=logits)
        """, "architecture"),
    ("TinyNet", ["nn.Module"], """
        class TinyNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3))
                self.classifier = nn.Linear(16, 10)

            def forward(self, x):
                return self.classifier(self.features(x).mean((2, 3)))
        """, "architecture"),
    # -- utility
    ("Identity", ["nn.Module"], """
        class Identity(nn.Module):
            def forward(self, x):
                return x
        """, "utility"),
    ("DropPath", ["nn.Module"], """
        class DropPath(nn.Module):
            def __init__(self, drop_prob=0.0):
                super().__init__()
                self.drop_prob = drop_prob

            def forward(self, x):
                if self.drop_prob == 0.0 or not self.training:
                    return x
                keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.drop_prob)
                return x * keep / (1 - self.drop_prob)
        """, "utility"),  # noqa: E501
    ("ToChannelsLast", ["nn.Module"], """
        class ToChannelsLast(nn.Module):
            def forward(self, x):
                return x.permute(0, 2, 3, 1).contiguous()
        """, "utility"),
    ("RandomHorizontalFlip", ["torch.nn.Module"], """
        class RandomHorizontalFlip(torch.nn.Module):
            def __init__(self, p=0.5):
                super().__init__()
                self.p = p

            def forward(self, img):
                return F.hflip(img) if torch.rand(1) < self.p else img
        """, "utility"),
    ("Normalize", ["torch.nn.Module"], """
        class Normalize(torch.nn.Module):  # a data transform, whatever its name says
            def __init__(self, mean, std):
                super().__init__()
                self.mean, self.std = mean, std

            def forward(self, tensor):
                return F.normalize(tensor, self.mean, self.std)
        """, "utility"),
    ("ClassifierHead", ["nn.Module"], """
        class ClassifierHead(nn.Module):  # takes num_classes, yet is no whole network
            def __init__(self, in_features, num_classes):
                super().__init__()
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(in_features, num_classes)

            def forward(self, x):
                return self.fc(self.pool(x).flatten(1))
        """, "utility"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "bases", "source", "expected"), CASES, ids=[case[0] for case in CASES]
)
def test_category(name: str, bases: list[str], source: str, expected: str) -> None:
    assert categorize(textwrap.dedent(source), name, bases) == expected


def test_table_covers_every_category_twice() -> None:
    counts = {category: 0 for category in CATEGORIES}
    for *_, expected in CASES:
        counts[expected] += 1
    assert min(counts.values()) >= 2, counts


def test_categories_are_the_documented_ten() -> None:
    assert CATEGORIES == (
        "attention", "convolution", "transformer_block", "pooling", "normalization",
        "activation", "embedding", "loss", "architecture", "utility",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "name", "bases", "expected"),
    [
        ("class X(:\n", "MultiHeadAttention", [], "attention"),
        ("def broken(", "FocalLoss", [], "loss"),
        ("class Y(nn.LayerNorm\n", "Y", ["nn.LayerNorm"], "normalization"),
        ("", "Anything", [], "utility"),
    ],
)
def test_unparsable_source_falls_back_to_names(
    source: str, name: str, bases: list[str], expected: str
) -> None:
    assert categorize(source, name, bases) == expected


def test_bases_in_the_source_count_when_none_are_passed() -> None:
    source = "class Mixer(nn.MultiheadAttention):\n    pass\n"
    assert categorize(source, "Mixer") == "attention"


def test_pure_and_deterministic() -> None:
    name, bases, source, expected = CASES[9]  # the encoder layer
    results = {categorize(textwrap.dedent(source), name, bases) for _ in range(3)}
    assert results == {expected}


@settings(max_examples=150, deadline=None)
@given(
    source=st.text(max_size=200),
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
    bases=st.lists(st.from_regex(r"[A-Za-z_][\w.]{0,20}", fullmatch=True), max_size=3),
)
def test_any_input_gets_exactly_one_known_category(
    source: str, name: str, bases: list[str]
) -> None:
    assert categorize(source, name, bases) in CATEGORIES
