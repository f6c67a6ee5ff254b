"""End-to-end tests of the ladder entry ``run(payload)`` on hand-written block sources.

``run`` is plain Python (the sandbox only forks and calls it), so it is called directly
inside a temporary working directory.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

import pytest

from nnrag.ladder._child import classify, is_shape_error, run

_counter = itertools.count()

HEADER = "import torch\nfrom torch import nn\nimport torch.nn.functional as F\n"


@pytest.fixture(autouse=True)
def _scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def climb(body: str, target: str, **extra: object) -> dict:
    source = HEADER + textwrap.dedent(body)
    name = f"nnrag_test_block_{next(_counter)}"
    payload = {"source": source, "target": target, "module_name": name, "timeout_hint_s": 20}
    payload.update(extra)
    result = run(payload)
    json.dumps(result)  # must be JSON-serialisable
    assert Path(f"{name}.py").exists() or result["rung"] < 2
    return result


def assert_ok(result: dict) -> None:
    assert result["rung"] == 6, result
    assert result["rung_name"] == "backward"
    assert result["failed_rung"] is None and result["cause"] is None


CONV = """
class ConvBnAct(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))
"""


def test_conv_block_needs_channels() -> None:
    r = climb(CONV, "ConvBnAct")
    assert_ok(r)
    assert r["init_args"] == {"in_channels": "64", "out_channels": "64"}
    assert r["input_desc"] == "x: float32[2, 64, 32, 32]"
    assert r["output_desc"] == "float32[2, 64, 32, 32]"
    assert r["param_count"] > 0 and r["attempts"] >= 2


ATTN = """
class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias=False):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))
"""  # noqa: E501


def test_attention_block_needs_dim_and_heads() -> None:
    r = climb(ATTN, "Attention")
    assert_ok(r)
    assert r["input_desc"] == "x: float32[2, 8, 64]"


RESNET = """
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.bn(self.conv3(self.conv2(self.conv1(x)))) + identity)


class TinyResNet(nn.Module):
    def __init__(self, block, layers, num_classes=10):
        super().__init__()
        self.inplanes = 16
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        stages = []
        for i, n in enumerate(layers):
            planes = 16 * 2**i
            down = None
            if i > 0 or self.inplanes != planes * block.expansion:
                down = nn.Conv2d(self.inplanes, planes * block.expansion, 1, 2 if i else 1)
            blocks = [block(self.inplanes, planes, 2 if i else 1, down)]
            self.inplanes = planes * block.expansion
            blocks += [block(self.inplanes, planes) for _ in range(1, n)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(self.inplanes, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(x.mean((2, 3)))
"""


def test_resnet_basic_block() -> None:
    r = climb(RESNET, "BasicBlock")
    assert_ok(r)
    assert r["init_args"] == {"inplanes": "64", "planes": "64"}


def test_bottleneck_needs_expansion_consistent_planes() -> None:
    r = climb(RESNET, "Bottleneck")
    assert_ok(r)
    assert r["init_args"] == {"inplanes": "64", "planes": "16"}


def test_network_with_block_and_layers() -> None:
    r = climb(RESNET, "TinyResNet")
    assert_ok(r)
    assert r["init_args"]["block"] == "BasicBlock"
    assert r["input_desc"] == "x: float32[2, 3, 32, 32]"
    assert r["output_desc"] == "float32[2, 10]"


CONFIG = """
from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 4096
    n_heads: int = 32
    vocab_size: int = 32000
    max_seq_len: int = 2048


class TinyTransformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.tok = nn.Embedding(args.vocab_size, args.dim)
        self.attn = nn.MultiheadAttention(args.dim, args.n_heads, batch_first=True)
        self.out = nn.Linear(args.dim, args.vocab_size)

    def forward(self, tokens):
        h = self.tok(tokens)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.out(h)
"""


def test_config_dataclass_defined_in_source() -> None:
    r = climb(CONFIG, "TinyTransformer")
    assert_ok(r)
    assert r["init_args"]["args"].startswith("ModelArgs(")
    assert r["input_desc"] == "tokens: int64[2, 8]"
    assert r["param_count"] < 100_000  # small overrides, not the 4096-wide defaults


HF = """
class TinyConfig:
    def __init__(self, hidden_size=4096, num_attention_heads=32, num_hidden_layers=32,
                 vocab_size=32000, head_dim=None, **kwargs):
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.num_hidden_layers = num_hidden_layers
        self.vocab_size = vocab_size
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self._attn_implementation = "sdpa"

    def to_dict(self):
        return dict(vars(self))


class TinyRotaryEmbedding(nn.Module):
    def __init__(self, config, device=None):
        super().__init__()
        self.dim = config.head_dim

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() / (1 + torch.arange(self.dim))
        return freqs.cos(), freqs.sin()


class TinyAttention(nn.Module):
    def __init__(self, config: TinyConfig, layer_idx: int):
        super().__init__()
        assert config._attn_implementation == "eager"
        self.head_dim = config.head_dim
        self.q = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim)
        self.o = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, **kwargs):
        cos, sin = position_embeddings
        b, n, _ = hidden_states.shape
        q = self.q(hidden_states).view(b, n, -1, self.head_dim)
        q = q * cos[:, :, None, :] + q * sin[:, :, None, :]
        return self.o(q.reshape(b, n, -1)), None
"""


def test_transformers_style_layer_with_rope() -> None:
    r = climb(HF, "TinyAttention")
    assert_ok(r)
    assert r["init_args"]["layer_idx"] == "0"
    assert "position_embeddings: (float32[2, 8, 16], float32[2, 8, 16])" in r["input_desc"]


EMBED = """
class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size, hidden_size, max_position_embeddings):
        super().__init__()
        self.word = nn.Embedding(vocab_size, hidden_size)
        self.pos = nn.Embedding(max_position_embeddings, hidden_size)

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1])
        return self.word(input_ids) + self.pos(position_ids)
"""


def test_embedding_block_takes_input_ids() -> None:
    r = climb(EMBED, "TokenEmbedding")
    assert_ok(r)
    assert r["input_desc"] == "input_ids: int64[2, 8]"
    assert r["output_desc"] == "float32[2, 8, 64]"


def test_name_error_at_import_is_resolver_gap() -> None:
    r = climb("SCALE = missing_helper(3)\n" + CONV, "ConvBnAct")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (2, "import", "resolver_gap")
    assert r["error_type"] == "NameError" and "missing_helper" in r["error_message"]


def test_name_error_in_forward_is_resolver_gap() -> None:
    body = CONV.replace("return F.relu(", "return make_divisible(")
    r = climb(body, "ConvBnAct")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (4, "forward", "resolver_gap")


def test_missing_package() -> None:
    r = climb("import some_missing_pkg\n" + CONV, "ConvBnAct")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (2, "import", "missing_package")
    assert "some_missing_pkg" in r["error_message"]


def test_forward_shape_mismatch_everywhere() -> None:
    body = """
    class Broken(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.fc = nn.Linear(dim, dim)

        def forward(self, x):
            return self.fc(x) @ torch.ones(3, 5, 7)
    """
    r = climb(body, "Broken")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (4, "forward", "shape_inference")
    assert r["attempts"] > 3


def test_init_always_fails_needs_arguments() -> None:
    body = """
    class Picky(nn.Module):
        def __init__(self, spec):
            super().__init__()
            raise ValueError(f"unsupported spec {spec!r}")
    """
    r = climb(body, "Picky")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (3, "instantiate", "needs_arguments")
    assert r["error_type"] == "ValueError"


def test_relative_import_in_init_is_a_resolver_gap() -> None:
    body = """
    class Rel(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            from .consts import round_channels
            self.lin = nn.Linear(width, round_channels(width))
    """
    r = climb(body, "Rel")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (3, "instantiate", "resolver_gap")
    assert "relative import" in r["error_message"]


def test_missing_module_in_init_is_named() -> None:
    body = """
    class Gone(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            import no_such_pkg_xyz.layers
    """
    r = climb(body, "Gone")
    assert (r["failed_rung"], r["cause"]) == ("instantiate", "missing_package")
    assert r["missing_module"] == "no_such_pkg_xyz"


def test_nan_gradients_fail_backward() -> None:
    body = """
    class NanGrad(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return torch.sqrt(self.w - self.w) * x
    """
    r = climb(body, "NanGrad")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (5, "backward", "genuine_error")
    assert "non-finite gradient" in r["error_message"]


def test_parameter_free_activation_passes() -> None:
    body = """
    class Swish(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)
    """
    r = climb(body, "Swish")
    assert_ok(r)
    assert r["param_count"] == 0 and "parameter-free" in r["output_desc"]


def test_syntax_error_fails_parse() -> None:
    r = climb("def broken(:\n    pass\n", "Nope")
    assert (r["rung"], r["rung_name"], r["failed_rung"]) == (0, "none", "parse")


def test_max_rung_stops_early_and_missing_target() -> None:
    r = climb(CONV, "ConvBnAct", max_rung=3)
    assert (r["rung"], r["failed_rung"], r["init_args"]) == (3, None, None)
    r = climb(CONV, "NotThere")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (3, "instantiate", "resolver_gap")


def test_conv1d_and_channels_last_blocks() -> None:
    body = """
    class Temporal(nn.Module):
        def __init__(self, in_channels):
            super().__init__()
            self.conv = nn.Conv1d(in_channels, 8, 3)

        def forward(self, x):
            return self.conv(x)


    class WindowBlock(nn.Module):
        def __init__(self, dim, window_size=7):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.ws = window_size
            self.fc = nn.Linear(dim, dim)

        def forward(self, x):
            B, H, W, C = x.shape
            assert H % self.ws == 0, "input must be a multiple of the window"
            x = x.view(B, H // self.ws, self.ws, W // self.ws, self.ws, C)
            return self.fc(self.norm(x))
    """
    r = climb(body, "Temporal")
    assert_ok(r)
    assert r["input_desc"] == "x: float32[2, 64, 32]"
    r = climb(body, "WindowBlock")
    assert_ok(r)
    assert "7, 7, 64]" in r["input_desc"] or "14, 14, 64]" in r["input_desc"]


def test_classify_table() -> None:
    assert classify(NameError("x"), "forward") == "resolver_gap"
    assert classify(ModuleNotFoundError("No module named 'x'"), "import") == "missing_package"
    assert classify(ImportError("cannot import name 'y'"), "import") == "missing_package"
    assert classify(TypeError("bad"), "instantiate") == "needs_arguments"
    # issue 15: an import failing inside __init__ or forward is never about arguments, and a
    # relative import left in a standalone module is the resolver's gap
    relative = ImportError("attempted relative import with no known parent package")
    for rung in ("import", "instantiate", "forward"):
        assert classify(relative, rung) == "resolver_gap"
        assert classify(ImportError("cannot import name 'y' from 'z'"), rung) == "missing_package"
        assert classify(ModuleNotFoundError("No module named 'q'"), rung) == "missing_package"
    err = RuntimeError("mat1 and mat2 shapes cannot be multiplied (16x3 and 64x64)")
    assert classify(err, "forward") == "shape_inference"
    assert is_shape_error(ValueError("not enough values to unpack (expected 4, got 3)"))
    assert not is_shape_error(ZeroDivisionError("division by zero"))
    assert classify(ZeroDivisionError("division by zero"), "forward") == "genuine_error"


def test_repair_takes_listed_choice_for_a_passed_argument() -> None:
    result = climb(
        """
        class Drop(nn.Module):
            def __init__(self, p: float, mode: str) -> None:
                super().__init__()
                if mode not in ("batch", "row"):
                    raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
                self.p = p

            def forward(self, x):
                return x * 2
        """,
        "Drop",
    )
    assert result["rung"] >= 5 and result["init_args"]["mode"] == "'batch'", result


OPTIONAL_CONFIG = """
from dataclasses import dataclass

@dataclass
class TinyAttnConfig:
    attn_implementation: str = "eager"

class OptCfgAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, config=None):
        super().__init__()
        self.config = config
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, hidden_states):
        assert self.config.attn_implementation == "eager"
        return self.proj(hidden_states)
"""


def test_optional_config_gets_a_config_after_regular_candidates() -> None:
    result = climb(OPTIONAL_CONFIG, "OptCfgAttention")
    assert_ok(result)
    assert "TinyAttnConfig" in result["init_args"]["config"]


def test_optional_layer_factories_get_nn_classes() -> None:
    body = """
    class FactoryStage(nn.Module):
        def __init__(self, in_chs, out_chs, norm_layer=None, act_layer=None, conv_layer=None):
            super().__init__()
            self.conv = conv_layer(in_chs, out_chs, 3, padding=1)
            self.norm = norm_layer(out_chs)
            self.act = act_layer()

        def forward(self, x):
            return self.act(self.norm(self.conv(x)))
    """
    result = climb(body, "FactoryStage")
    assert_ok(result)
    args = result["init_args"]
    assert (args["norm_layer"], args["act_layer"], args["conv_layer"]) == (
        "BatchNorm2d",
        "GELU",
        "Conv2d",
    )


def test_a_sandbox_refusal_is_sandbox_denied_not_needs_arguments() -> None:
    body = """
    class Snoop(nn.Module):
        def __init__(self):
            super().__init__()
            raise PermissionError(13, "Permission denied", "/etc/shadow")
    """
    r = climb(body, "Snoop")
    assert (r["rung"], r["failed_rung"], r["cause"]) == (3, "instantiate", "sandbox_denied")
    assert classify(PermissionError("no"), "instantiate") == "sandbox_denied"
    assert classify(OSError(30, "Read-only file system"), "forward") == "sandbox_denied"
    assert classify(OSError(2, "No such file"), "instantiate") == "needs_arguments"


def test_a_sandbox_refusal_in_forward_is_sandbox_denied() -> None:
    body = """
    class Writer(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            raise PermissionError(1, "Operation not permitted")
    """
    r = climb(body, "Writer")
    assert (r["failed_rung"], r["cause"]) == ("forward", "sandbox_denied")
