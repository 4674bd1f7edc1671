"""Shared pieces of the tests/test_hf_*.py files: a prepared folder from the bundled data, a tiny model."""

from __future__ import annotations

from pathlib import Path

CAPACITY = 256
"""Row length of the test folders: the bundled example packs into 37 rows of up to 256 tokens."""


def prepare_example(out: Path, *, pack: bool = True, capacity: int = CAPACITY) -> Path:
    """`sftdata prepare` of the bundled example with the bundled tokenizer (about a second, no ../shared)."""
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare
    from sftdata.tinytok import EXAMPLE_PATH, TOKENIZER_DIR

    config = resolve_config(None, {"tokenizer": str(TOKENIZER_DIR), "max_length": capacity,
                                   "max_reject_fraction": 0.05, "pack": pack})
    prepare([str(EXAMPLE_PATH)], out, config)
    return out


def tokenizer():
    from transformers import AutoTokenizer

    from sftdata.tinytok import TOKENIZER_DIR

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def tiny_model(attn: str = "sdpa", seed: int = 0):
    """The trainer's seeded random 2-layer Llama (fp32, CPU), vocabulary of the bundled tokenizer."""
    from sftdata.train.model import build_model

    return build_model(None, "tiny-llama", vocab_size=len(tokenizer()), attn=attn, seed=seed)
