"""Tokens as the user should see them: each token's own text, whether it is trained, where documents start.

Plain data for a viewer (`sftdata inspect` colours it with rich in `sftdata.cli.colors`; the audit
HTML has its own renderer). Nothing here imports a terminal library: the core stays free of rich.

A token's own text comes from decoding a short window before it with and without it (`_pieces`), so
byte-level pieces of one character and SentencePiece's leading spaces come out whole; the cost is
two decodes of at most seven ids per token, linear in the row length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WINDOW = 6
"""Tokens decoded before each token to recover its text in context."""


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """One token as shown: its text, whether it is in the loss, and the document it opens (if any)."""

    id: int
    text: str
    supervised: bool
    special: bool
    """A special or added token (`<|im_end|>`): shown so it stands out."""
    starts_document: int | None = None
    """Index of the document whose first token this is (packed rows only)."""
    document_id: str | None = None
    """That document's id, when the row names them."""


def token_pieces(tokenizer: Any, ids: Sequence[int], supervised: Sequence[bool],
                 doc_lens: Sequence[int] | None = None, doc_ids: Sequence[str] | None = None) -> list[TokenPiece]:
    """Every token of `ids` with its text and supervision; document starts marked when `doc_lens` is given."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    starts: dict[int, int] = {}
    if doc_lens is not None:
        pos = 0
        for d, n in enumerate(doc_lens):
            starts[pos] = d
            pos += int(n)
    out = []
    for i, (t, piece) in enumerate(zip(ids, _pieces(tokenizer, list(ids)), strict=True)):
        d = starts.get(i)
        name = doc_ids[d] if d is not None and doc_ids is not None and d < len(doc_ids) else None
        out.append(TokenPiece(int(t), piece, bool(supervised[i]), int(t) in special, d, name))
    return out


def _pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    """Each token's own text, from decoding a short window before it with and without it.

    A window (not single tokens) keeps multi-byte characters split over byte-level tokens whole and keeps
    SentencePiece's leading spaces; it stays linear in the row length.

    A token holding only the first bytes of a character (byte-level BPE splits CJK and emoji) shows as
    nothing, and the token that completes the character shows all of it: trailing U+FFFD of an
    unfinished character are ignored on both sides of the difference.
    """
    pieces: list[str] = []
    for i in range(len(ids)):
        lo = max(0, i - WINDOW)
        before = (tokenizer.decode(ids[lo:i]) if i > lo else "").rstrip("\ufffd")
        with_it = tokenizer.decode(ids[lo:i + 1]).rstrip("\ufffd")
        pieces.append(with_it[len(before):] if with_it.startswith(before) else tokenizer.decode([ids[i]]))
    return pieces
