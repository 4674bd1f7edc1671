"""Shared test fixtures: paths to ../shared (skipped cleanly when absent) and a tokenizer built in the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
TOKENIZERS = FIXTURES / "tokenizers"
DATASETS = FIXTURES / "datasets"
TEMPLATES = FIXTURES / "templates"

requires_shared = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=f"{FIXTURES} is absent (a fresh clone without ../shared): real tokenizer/data tests skipped",
)

TOKENIZER_NAMES = sorted(p.name for p in TOKENIZERS.iterdir()) if TOKENIZERS.is_dir() else []

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_test_tokenizer(corpus: list[str] | None = None):
    """A small byte-level BPE with ChatML specials, trained in-process (no files, no network)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = corpus or [
        "Hello! How can I help you today?", "What is the capital of France? Paris is the capital.",
        "Write a poem about the sea.", "The quick brown fox jumps over the lazy dog.", "你好，世界 🙂",
    ] * 20
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


@pytest.fixture(scope="session")
def test_tokenizer():
    """Byte-level BPE + ChatML template, built in the test session."""
    return build_test_tokenizer()


@pytest.fixture(scope="session")
def shared_tokenizer_path():
    """Returns a function name -> folder of a real fixture tokenizer (skips when ../shared is absent)."""

    def get(name: str) -> Path:
        path = TOKENIZERS / name
        if not path.is_dir():
            pytest.skip(f"{path} is absent (needs ../shared/fixtures beside the checkout)")
        return path

    return get


# This process's own high-water RSS. Not `ru_maxrss`: a child started by vfork+exec inherits its parent's
# peak there, so under a large pytest process every child would read as that large.
PEAK_MIB = ("def peak_mib(): return int(next(line for line in open('/proc/self/status') "
            "if line.startswith('VmHWM')).split()[1]) / 1024")
