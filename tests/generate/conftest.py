"""A tiny randomly initialised causal LM built in-process (no download), saved as a folder.

A byte-level BPE tokenizer trained with ``tokenizers`` on a few code lines and a 2-layer
Llama config: it loads in well under a second and exercises every transformers path
(completion and chat styles, stop strings, seeds, LoRA adapters, context limits).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CORPUS = [
    "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n"
    "    def __init__(self, in_shape, out_shape, prm, device):\n",
    "        super().__init__()\n        self.fc = nn.Linear(64, out_shape[0])\n"
    "    def forward(self, x):\n",
    '```python\n```json\n{"hyperparameters": {"lr": 0.01, "batch_size": 64, "optimizer": "sgd"}}\n',
]


def build_tiny_model(folder: Path, *, chat: bool, context: int = 512) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=context,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base (completion-style) tiny model folder."""
    pytest.importorskip("transformers")
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", chat=False)


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model with a chat template (chat-style prompts)."""
    pytest.importorskip("transformers")
    return build_tiny_model(tmp_path_factory.mktemp("tiny_chat") / "model", chat=True)
