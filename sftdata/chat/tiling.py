"""Token positions from token byte lengths: the offsets a byte-level BPE encode tracks, without tracking them.

Why: `Tokenizer.encode_batch` computes every token's character offsets, and the engine needs them at a
few span edges per document. For a byte-level BPE tokenizer (the GPT-2 family: Qwen, Llama 3, SmolLM2,
DeepSeek) the tokens *tile* the UTF-8 bytes of the text, each token's bytes known from its vocabulary
entry, so `encode_batch_fast` (no offsets: 15-18% less CPU for the encode on the 20k bench, Qwen2.5)
plus a cumulative sum of byte lengths gives the same token for every character.

The tiling holds when nothing between the text and the tokens adds, drops or rewrites a byte:
- no normalizer, an empty sequence of them, or NFC on a text that is already NFC (checked per text);
- pre-tokenizers that only split (`Split` keeping what it matches, `Digits`, `ByteLevel` without a
  prefix space);
- a BPE model whose vocabulary is all byte-level symbols, and added tokens matched exactly (no
  `lstrip` / `rstrip`, which swallow whitespace into the token);
- no post-processor that trims offsets (`ByteLevel(trim_offsets=True)` moves token starts past spaces:
  then `char_to_token` of a space differs, so such a tokenizer keeps the offsets).

`Tiling.of` says whether a tokenizer meets these (None if not: the engine encodes with offsets, as
before). Each document is checked once more where it is used: its token lengths must add up to its
UTF-8 length, else `char_to_token` returns None for it and the engine re-encodes that one text with
offsets. `tests/test_tiling.py` holds `char_to_token` equal to `Encoding.char_to_token` at every
character of real rendered documents for each fixture tokenizer that qualifies.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

import numpy as np

_SPLITTING = {"Split", "Digits", "ByteLevel"}
_KEEPING = {"Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"}


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte -> printable character table, inverted: each byte-level symbol is one byte."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_SYMBOLS = frozenset(_byte_alphabet())


def _splits_only(pre: dict[str, Any] | None) -> bool:
    if pre is None:
        return True
    kind = pre.get("type")
    if kind == "Sequence":
        return all(_splits_only(p) for p in pre.get("pretokenizers", []))
    if kind not in _SPLITTING:
        return False
    if kind == "Split":
        return pre.get("behavior") in _KEEPING and not pre.get("invert", False)
    if kind == "ByteLevel":
        return not pre.get("add_prefix_space", False)
    return True


def _trims(post: dict[str, Any] | None) -> bool:
    if post is None:
        return False
    if post.get("type") == "Sequence":
        return any(_trims(p) for p in post.get("processors", []))
    return post.get("type") == "ByteLevel" and bool(post.get("trim_offsets", False))


def _has_byte_level(part: dict[str, Any] | None, key: str) -> bool:
    if part is None:
        return False
    if part.get("type") == "Sequence":
        return any(_has_byte_level(p, key) for p in part.get(key, []))
    return part.get("type") == "ByteLevel"


class Tiling:
    """Byte length of every token id, for a tokenizer whose tokens tile the bytes of the text (`Tiling.of`)."""

    def __init__(self, backend: Any, nfc: bool) -> None:
        self._backend = backend
        self.nfc = nfc
        """The tokenizer normalizes to NFC: a text that is not NFC is not tiled."""

    @classmethod
    def of(cls, backend: Any) -> Tiling | None:
        """The tiling of a `tokenizers.Tokenizer`, or None when its tokens need not tile the text."""
        def spec(part: Any) -> dict[str, Any] | None:
            return None if part is None else json.loads(part.__getstate__())

        normalizer = spec(backend.normalizer)
        if normalizer is not None and normalizer.get("type") == "Sequence" and not normalizer.get("normalizers"):
            normalizer = None
        pre = spec(backend.pre_tokenizer)
        if type(backend.model).__name__ != "BPE" or (normalizer is not None and normalizer.get("type") != "NFC"):
            return None
        if not (_splits_only(pre) and _has_byte_level(pre, "pretokenizers")
                and _has_byte_level(spec(backend.decoder), "decoders")) or _trims(spec(backend.post_processor)):
            return None
        if any(t.lstrip or t.rstrip for t in backend.get_added_tokens_decoder().values()):
            return None
        return cls(backend, normalizer is not None)

    @functools.cached_property
    def byte_lengths(self) -> np.ndarray:
        """int64 bytes of each token id; 0 for an id that is neither byte-level symbols nor an added token.

        Built on first use (~0.1 s for a 150k vocabulary): the engine asks for it in its encode thread, so
        it is built while the first chunk renders instead of at start-up.
        """
        added = self._backend.get_added_tokens_decoder()
        vocab: dict[str, int] = self._backend.get_vocab(with_added_tokens=False)
        lengths = np.zeros(max([*vocab.values(), *added, -1]) + 1, dtype=np.int64)
        tokens = list(vocab)
        if _BYTE_SYMBOLS.issuperset("".join(tokens)):  # the usual case: one check for the whole vocabulary
            ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(tokens))
            lengths[ids] = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        else:
            for token, i in vocab.items():
                if _BYTE_SYMBOLS.issuperset(token):
                    lengths[i] = len(token)
        for i, t in added.items():  # an added token is matched as its content, whatever the vocabulary says
            lengths[i] = len(t.content.encode("utf-8"))
        return lengths

    def char_to_token(self, text: str, ids: np.ndarray) -> Callable[[int], int | None] | None:
        """`Encoding.char_to_token` for `text` encoded as `ids`, or None when this text is not tiled.

        The token lengths must add up to the text's UTF-8 length: a token of length 0 (not a byte-level
        symbol) or an id outside the table makes them fall short or fail, never pass by chance.
        """
        ascii_text = text.isascii()
        if self.nfc and not ascii_text and not unicodedata.is_normalized("NFC", text):
            return None
        try:
            ends = np.cumsum(self.byte_lengths[ids]).tolist()
        except IndexError:
            return None
        if (ends[-1] if ends else 0) != (len(text) if ascii_text else len(text.encode("utf-8"))):
            return None
        n = len(text)

        def char_to_token(pos: int) -> int | None:
            if not 0 <= pos < n:
                return None
            return bisect_right(ends, pos if ascii_text else len(text[:pos].encode("utf-8")))

        return char_to_token
