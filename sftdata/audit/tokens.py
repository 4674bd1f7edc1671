"""Token ids as text for people: messages in findings and the coloured samples of the report.

Decoding one id at a time breaks multi-byte characters (a CJK character split over two byte-level
tokens decodes to two replacement characters) and sentencepiece drops a leading space at the start
of a decode. So each token's text is the difference between decoding a short window ending before it
and the same window ending with it; a token that ends inside a character gets the empty string and
the character goes to the token that completes it. Cost: two decodes of <= 8 tokens per token; only
used for the few sampled documents.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

WINDOW = 8


def token_pieces(tok: Any, ids: list[int]) -> list[str]:
    """The text each token contributes to the decoded document (concatenation == decoded text)."""
    pieces: list[str] = []
    for i in range(len(ids)):
        s = max(0, i - WINDOW)
        before = tok.decode(ids[s:i], skip_special_tokens=False) if i > s else ""
        after = tok.decode(ids[s:i + 1], skip_special_tokens=False)
        if after.endswith("\ufffd"):
            pieces.append("")
            continue
        before = before.rstrip("\ufffd")
        if after.startswith(before):
            pieces.append(after[len(before):])
        else:
            pieces.append(after[len(os.path.commonprefix([before, after])):])
    return pieces


def token_namer(tok: Any) -> Callable[[int], str]:
    """`151645 '<|im_end|>'`: an id with its text, for findings."""
    cache: dict[int, str] = {}

    def name(token_id: int) -> str:
        if token_id not in cache:
            try:
                text = tok.decode([token_id], skip_special_tokens=False)
            except Exception:  # an id outside the vocabulary is itself worth showing
                text = "?"
            cache[token_id] = f"{token_id} {text!r}"
        return cache[token_id]

    return name


def special_ids(tok: Any) -> set[int]:
    """Ids of added / special tokens (shown boxed in the report)."""
    return {int(i) for i in getattr(tok, "added_tokens_decoder", {})}
