"""Control-token text inside messages: detect it, and encode it as plain text the way transformers does.

A reply that literally contains `<|im_end|>` is tokenized by Hugging Face as the control token, which
lets training data forge turn boundaries. transformers 5.2x offers
`apply_chat_template(..., sanitize_control_tokens=True)`: user strings are wrapped in private-use
markers (`mark_control_tokens`), the chat is rendered, split at the markers, and each marked token is
encoded as plain text while the template's own control tokens stay tokens (`encode_marked_chat`).
We reuse the same marking and splitting so that the ids are identical, and compute token offsets per
piece with the Rust tokenizer (transformers returns none there) so the mask can still be placed.

Control tokens are the tokenizer's special tokens plus the added tokens that occur in the template's
literal text (transformers' `_get_control_tokens` rule, which `sftdata.chat.tokenizer.ChatTokenizer` mirrors
without importing transformers); `tokenizer.chat_control_tokens` wins when set.
Only records that contain control-token text (or the marker characters) take this slower path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tokenizers import Encoding

MARK_START = "\U000f0000"
MARK_END = "\U000f0001"


def control_tokens(tokenizer: Any, template_text: str) -> tuple[str, ...]:
    """The strings `sanitize_control_tokens=True` would encode as text when found in user data."""
    getter = getattr(tokenizer, "_get_control_tokens", None)
    if getter is not None:
        return tuple(getter(template_text))
    return tuple(t.content for t in tokenizer.added_tokens_decoder.values() if t.special)  # pragma: no cover


def control_regex(tokens: Iterable[str]) -> re.Pattern[str]:
    """One regex for all control tokens, longest first (a token wins over the tokens it contains)."""
    longest_first = sorted(set(tokens), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, longest_first)) or "(?!)")


def strings_in(obj: Any) -> Iterable[str]:
    """Every string value in a nest of dicts and lists (dict keys are not sanitized, as in transformers)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings_in(v)


def needs_marking(obj: Any, regex: re.Pattern[str]) -> bool:
    """True when some string spells a control token or holds a marker character."""
    return any(regex.search(s) or MARK_START in s or MARK_END in s for s in strings_in(obj))


def mark(obj: Any, regex: re.Pattern[str]) -> Any:
    """Wrap control-token text in markers (transformers' `mark_control_tokens`, same output)."""
    if isinstance(obj, str):
        obj = obj.replace(MARK_START, "").replace(MARK_END, "")
        return regex.sub(f"{MARK_START}\\g<0>{MARK_END}", obj)
    if isinstance(obj, dict):
        return {k: mark(v, regex) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mark(v, regex) for v in obj]
    return obj


def markers_regex(tokenizer: Any) -> re.Pattern[str]:
    """Marked token or lone marker, over all added tokens (as `encode_marked_chat` splits)."""
    inner = control_regex(tokenizer.added_tokens_encoder).pattern
    return re.compile(f"{MARK_START}({inner}){MARK_END}|[{MARK_START}{MARK_END}]")


def encode_marked(tokenizer: Any, marked_text: str, split_re: re.Pattern[str]
                  ) -> tuple[str, list[int], list[tuple[int, int]]]:
    """Encode a marked render: (clean text without markers, ids, offsets into the clean text).

    Raises:
        ValueError: the tokenizer produces a control token from its plain text (cannot be sanitized).
    """
    backend = tokenizer.backend_tokenizer
    newline = backend.encode("\n", add_special_tokens=False).ids
    pieces = split_re.split(marked_text)
    clean: list[str] = []
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    original = backend.encode_special_tokens
    try:
        for i, piece in enumerate(pieces):
            if not piece:
                continue
            as_text = i % 2 == 1
            backend.encode_special_tokens = as_text
            if i == 0:
                enc, shift, skip = backend.encode(piece, add_special_tokens=False), 0, 0
            else:  # after a newline, so SentencePiece adds no prefix space; the newline is dropped again
                enc, shift, skip = backend.encode("\n" + piece, add_special_tokens=False), -1, len(newline)
                if enc.ids[:skip] != newline:
                    enc, shift, skip = backend.encode(piece, add_special_tokens=False), 0, 0
            piece_ids = enc.ids[skip:]
            if as_text and tokenizer.convert_tokens_to_ids(piece) in piece_ids:
                raise ValueError(f"cannot sanitize {piece!r}: the tokenizer produces it from plain text")
            ids.extend(piece_ids)
            offsets.extend((pos + a + shift, pos + b + shift) for a, b in _offsets(enc)[skip:])
            clean.append(piece)
            pos += len(piece)
    finally:
        backend.encode_special_tokens = original
    return "".join(clean), ids, offsets


def transformers_marked_ids(tokenizer: Any, marked_text: str) -> list[int] | None:
    """The ids transformers' own `encode_marked_chat` gives (None where this transformers lacks it).

    None for the light `ChatTokenizer` too: `prepare` must not import transformers (2.5 s per process) for a
    bug guard; that path is held equal to `apply_chat_template(..., sanitize_control_tokens=True)` by the tests
    (`tests/test_engine_hard.py`, `tests/test_chat_tokenizer.py`) instead.
    """
    from sftdata.chat.tokenizer import ChatTokenizer

    if isinstance(tokenizer, ChatTokenizer):
        return None
    try:
        from transformers.utils.chat_template_utils import encode_marked_chat
    except ImportError:  # pragma: no cover - transformers < 5.2
        return None
    try:
        return list(encode_marked_chat(tokenizer, marked_text))
    except ValueError:
        return None


def _offsets(enc: Encoding) -> list[tuple[int, int]]:
    return list(enc.offsets)
