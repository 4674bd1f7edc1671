"""Token pieces coloured for the terminal (`sftdata inspect`): the rich side of `sftdata.chat.view`.

Trained tokens are bold green on a dark green background, masked tokens dim; special tokens are
bold so they are visible (`<|im_end|>`); newlines and tabs are drawn as `↵` / `→` before the real
break so whitespace the template writes can be seen; token edges alternate a faint underline so
merged tokens (a header space merged with the reply's first word) can be told apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from sftdata.chat.view import TokenPiece

TRAINED = "bold green on #0b3d0b"
MASKED = "grey58"
SPECIAL_TRAINED = "bold bright_white on #1f6f1f"
SPECIAL_MASKED = "bold grey70 on grey23"
BOUNDARY = "bold magenta"


def colored(pieces: Sequence[TokenPiece]) -> Text:
    """One rich `Text` with every token coloured by supervision; document starts get a marked line."""
    out = Text()
    for i, p in enumerate(pieces):
        if p.starts_document is not None:
            name = f" {p.document_id}" if p.document_id is not None else ""
            out.append(("\n" if i else "") + f"── document {p.starts_document}{name} ──\n", style=BOUNDARY)
        if p.special:
            style = SPECIAL_TRAINED if p.supervised else SPECIAL_MASKED
        else:
            style = TRAINED if p.supervised else MASKED
        if i % 2:
            style += " underline"
        out.append(_visible(p.text), style=style)
    return out


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


def _visible(piece: str) -> str:
    return piece.replace("\t", "→\t").replace("\n", "↵\n")
