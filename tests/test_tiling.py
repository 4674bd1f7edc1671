"""Token positions without offsets (`sftdata.chat.tiling`): the same token for every character as
`Encoding.char_to_token`, or no tiling at all.

The rule: a byte-level BPE whose path from text to tokens adds, drops or rewrites no byte tiles the text.
Tested on a tokenizer built here (every character of texts chosen to split characters over tokens), on
each way a tokenizer can break the rule (each is refused), and on every real fixture tokenizer that
qualifies, over real rendered conversations (English, Chinese, tool calls).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from sftdata.chat.engine import ChatEncoder
from sftdata.chat.options import MaskOptions
from sftdata.chat.template import TemplateSource
from sftdata.chat.tiling import Tiling
from sftdata.records import parse_conversation
from tests.conftest import CHATML_TEMPLATE, DATASETS, TOKENIZER_NAMES, TOKENIZERS, requires_shared

TEXTS = [
    "Hello! How can I help you today?",
    "<|im_start|>user\n你好，世界 🙂<|im_end|>\n<|im_start|>assistant\nParis ！€é😀 done<|im_end|>\n",
    "e\u0301 combining, \u00e9 precomposed, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, tabs\t\tand   spaces\n\n\nnewlines",
    "",
    "🙂",
    "<|im_end|><|im_end|>x<|im_start|>",
]


def _bpe(normalizer=None, pre=None, post=None, added=()) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre if pre is not None else pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=350, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["Hello world, how are you? 你好，世界 Paris is the capital."] * 20, trainer)
    if normalizer is not None:
        tok.normalizer = normalizer
    if post is not None:
        tok.post_processor = post
    if added:
        tok.add_tokens(list(added))
    return tok


def _agree(tok: Tokenizer, tiling: Tiling, text: str) -> None:
    enc = tok.encode(text, add_special_tokens=False)
    fast = tok.encode_batch_fast([text], add_special_tokens=False)[0]
    assert fast.ids == enc.ids
    char_to_token = tiling.char_to_token(text, np.asarray(fast.ids, dtype=np.int32))
    assert char_to_token is not None, f"{text!r} is not tiled"
    got = [char_to_token(p) for p in range(-1, len(text) + 1)]
    want = [enc.char_to_token(p) if 0 <= p < len(text) else None for p in range(-1, len(text) + 1)]
    differ = [p - 1 for p, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not differ, f"{text!r}: tokens differ at characters {differ[:5]}"


def test_every_character_maps_to_the_token_the_offsets_give():
    tok = _bpe()
    tiling = Tiling.of(tok)
    assert tiling is not None
    for text in TEXTS:
        _agree(tok, tiling, text)


@pytest.mark.parametrize("why, build", [
    ("a normalizer that rewrites text", lambda: _bpe(normalizer=normalizers.Lowercase())),
    ("a normalizer that changes lengths", lambda: _bpe(normalizer=normalizers.Replace("``", '"'))),
    ("a prefix space", lambda: _bpe(pre=pre_tokenizers.ByteLevel(add_prefix_space=True))),
    ("a split that drops what it matches", lambda: _bpe(pre=pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.ByteLevel(add_prefix_space=False)]))),
    ("a pre-tokenizer that is not byte-level", lambda: _bpe(pre=pre_tokenizers.Metaspace())),
    ("whitespace removed before byte-level", lambda: _bpe(pre=pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False)]))),
    ("offsets trimmed after encoding", lambda: _bpe(post=processors.ByteLevel(trim_offsets=True))),
    ("an added token that swallows whitespace", lambda: _bpe(added=[AddedToken("<tool>", rstrip=True)])),
])
def test_a_tokenizer_that_can_add_drop_or_rewrite_bytes_is_not_tiled(why, build):
    assert Tiling.of(build()) is None, why


def test_trimmed_offsets_are_refused_because_no_per_text_check_could_see_them():
    """Forced through the tiling, a tokenizer that trims offsets adds up exactly and still maps spaces to other
    tokens: only the structural rule can refuse it."""
    tok = _bpe(post=processors.ByteLevel(trim_offsets=True))
    text = "Hello  world, how are you?"
    enc = tok.encode(text, add_special_tokens=False)
    char_to_token = Tiling(tok, nfc=False).char_to_token(text, np.asarray(enc.ids, dtype=np.int32))
    assert char_to_token is not None
    assert any(char_to_token(p) != enc.char_to_token(p) for p in range(len(text)))


@pytest.mark.parametrize("why, build, text", [
    ("an added token that swallows whitespace", lambda: _bpe(added=[AddedToken("<tool>", rstrip=True)]),
     "a <tool>   b"),
    ("a prefix space", lambda: _bpe(pre=pre_tokenizers.ByteLevel(add_prefix_space=True)), "Hello world"),
])
def test_bytes_added_or_swallowed_also_fail_the_per_text_check(why, build, text):
    """Refused by the rule, and caught again by the per-text check if forced through: the lengths do not add up."""
    tok = build()
    ids = np.asarray(tok.encode(text, add_special_tokens=False).ids, dtype=np.int32)
    assert Tiling(tok, nfc=False).char_to_token(text, ids) is None, why


def test_a_text_that_is_not_nfc_is_not_tiled_by_an_nfc_tokenizer():
    tok = _bpe(normalizer=normalizers.NFC())
    tiling = Tiling.of(tok)
    assert tiling is not None and tiling.nfc
    _agree(tok, tiling, "caf\u00e9 and 你好")
    ids = np.asarray(tok.encode("cafe\u0301").ids, dtype=np.int32)
    assert tiling.char_to_token("cafe\u0301", ids) is None


def test_ids_that_do_not_add_up_to_the_text_are_not_tiled():
    tok = _bpe()
    tiling = Tiling.of(tok)
    ids = np.asarray(tok.encode("Hello world").ids, dtype=np.int32)
    assert tiling.char_to_token("Hello world!", ids) is None
    assert tiling.char_to_token("Hello world", np.append(ids, 10**6).astype(np.int32)) is None


def test_the_engine_takes_offsets_for_a_text_the_tiling_refuses(test_tokenizer):
    """An NFC tokenizer and a decomposed reply: the engine re-encodes that text with offsets; same result."""
    from transformers import PreTrainedTokenizerFast

    nfc = _bpe(normalizer=normalizers.NFC())
    fast = PreTrainedTokenizerFast(tokenizer_object=nfc, eos_token="<|im_end|>", bos_token=None)
    tiled = ChatEncoder(fast, MaskOptions(), TemplateSource(CHATML_TEMPLATE, "test template"))
    assert tiled._tiling is not None
    plain = ChatEncoder(fast, MaskOptions(), TemplateSource(CHATML_TEMPLATE, "test template"))
    plain._tiling = None
    convs = [parse_conversation({"messages": [{"role": "user", "content": "Where?"},
                                              {"role": "assistant", "content": reply}]})
             for reply in ("Cafe\u0301 de Paris.", "Café de Paris.", "你好 🙂")]
    for a, b in zip(tiled.encode_batch(convs), plain.encode_batch(convs), strict=True):
        assert a.input_ids.tolist() == b.input_ids.tolist()
        assert a.supervised.tolist() == b.supervised.tolist()


def _rendered(tokenizer, limit: int = 40) -> list[str]:
    convs = []
    for name in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        for r in json.loads((DATASETS / "llama_factory" / name).read_text())[:limit]:
            convs.append([{"role": "user", "content": r["instruction"] + r.get("input", "")},
                          {"role": "assistant", "content": r["output"]}])
    for r in json.loads((DATASETS / "llama_factory" / "glaive_toolcall_zh_demo.json").read_text())[:limit]:
        roles = {"human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "user"}
        convs.append([{"role": roles[t["from"]], "content": t["value"]} for t in r["conversations"]])
    return [tokenizer.apply_chat_template(c, tokenize=False) for c in convs]


QUALIFYING = {"deepseek-v4", "llama3.1-instruct", "qwen2.5-instruct", "qwen3", "smollm2-135m-instruct"}


@requires_shared
@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_real_tokenizers_tile_real_documents_exactly(name):
    """Each byte-level fixture tokenizer qualifies and agrees at every character; the others are refused."""
    from sftdata.chat.tokenizer import load_tokenizer

    tok = load_tokenizer(str(TOKENIZERS / name))
    tiling = Tiling.of(tok.backend_tokenizer)
    assert (tiling is not None) == (name in QUALIFYING)
    if tiling is None:
        return
    for text in _rendered(tok):
        _agree(tok.backend_tokenizer, tiling, text)
