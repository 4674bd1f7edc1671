"""Show ids coloured by supervision in the terminal (used by `sftdata inspect`; the audit HTML has its own).

Trained tokens are bold green on a dark green background, masked tokens dim; special tokens are shown
with their text in brackets style so they are visible (`<|im_end|>` is bold); newlines and tabs are drawn
as `↵` / `→` before the real break so whitespace the template writes can be seen; token edges alternate
a faint underline so merged tokens (a header space merged with the reply's first word) can be told apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

TRAINED = "bold green on #0b3d0b"
MASKED = "grey58"
SPECIAL_TRAINED = "bold bright_white on #1f6f1f"
SPECIAL_MASKED = "bold grey70 on grey23"
BOUNDARY = "bold magenta"


def _visible(piece: str) -> str:
    return piece.replace("\t", "→\t").replace("\n", "↵\n")


def token_text(tokenizer: Any, ids: Sequence[int], supervised: Sequence[bool],
               doc_lens: Sequence[int] | None = None, doc_ids: Sequence[str] | None = None) -> Text:
    """One rich `Text` with every token coloured; document boundaries marked when `doc_lens` is given."""
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    pieces = _pieces(tokenizer, list(ids))
    starts: dict[int, int] = {}
    if doc_lens is not None:
        pos = 0
        for d, n in enumerate(doc_lens):
            starts[pos] = d
            pos += int(n)
    out = Text()
    for i, (t, piece) in enumerate(zip(ids, pieces, strict=True)):
        if i in starts:
            d = starts[i]
            name = f" {doc_ids[d]}" if doc_ids is not None and d < len(doc_ids) else ""
            out.append(("\n" if i else "") + f"── document {d}{name} ──\n", style=BOUNDARY)
        sup = bool(supervised[i])
        if int(t) in special:
            style = SPECIAL_TRAINED if sup else SPECIAL_MASKED
        else:
            style = TRAINED if sup else MASKED
        if i % 2:
            style += " underline"
        out.append(_visible(piece), style=style)
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
        lo = max(0, i - 6)
        before = (tokenizer.decode(ids[lo:i]) if i > lo else "").rstrip("\ufffd")
        with_it = tokenizer.decode(ids[lo:i + 1]).rstrip("\ufffd")
        pieces.append(with_it[len(before):] if with_it.startswith(before) else tokenizer.decode([ids[i]]))
    return pieces


def legend() -> Text:
    """A one-line key to the colours."""
    out = Text("key: ")
    out.append("trained", style=TRAINED)
    out.append("  ")
    out.append("masked", style=MASKED)
    out.append("  ")
    out.append("<special trained>", style=SPECIAL_TRAINED)
    out.append("  ")
    out.append("<special masked>", style=SPECIAL_MASKED)
    out.append("  ↵ newline  underline alternates per token")
    return out
