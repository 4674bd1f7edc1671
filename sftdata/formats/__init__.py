"""Input formats: each maps a raw row onto the normal form (`Conversation` dicts) and nothing more.

| name | row shape | detected when |
|---|---|---|
| `oasst` | `{"message_tree_id", "prompt": {"text", "role", "replies": [...]}}` | `prompt` has `replies` |
| `messages` | `{"messages": [{"role", "content", ...}], "tools"?}` | `messages[0]` has `role` |
| `sharegpt` | `{"conversations": [{"from", "value"}], "system"?, "tools"?}` | `conversations` list |
| `prompt_completion` | `{"prompt", "completion" \\| "response"}`, texts or message lists | both keys |
| `alpaca` | `{"instruction", "input"?, "output", "system"?, "history"?}` | `instruction` and `output` |

Detection looks at the first `DETECT_ROWS` readable rows of each input (after the column map) and
takes the format that fits most of them (ties: the order above). An input whose rows fit none is an
`InputError` that lists the keys it saw and how to fix it; later rows that do not fit the chosen format
become rejects (`missing_field`), never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from sftdata.errors import ConfigError, InputError
from sftdata.formats import alpaca, messages, oasst, prompt_completion, sharegpt
from sftdata.formats.base import Candidate, FormatOptions
from sftdata.formats.columns import apply_column_map, parse_column_map

__all__ = ["DETECT_ROWS", "FORMATS", "Candidate", "FormatOptions", "apply_column_map", "detect_format",
           "get_format", "parse_column_map", "resolve_format"]

FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (oasst, messages, sharegpt, prompt_completion, alpaca)}
"""Adapters in detection priority order."""

DETECT_ROWS = 64

_HINTS = (
    ({"instruction", "context", "response"}, "this looks like Dolly: use --column-map context=input,response=output"),
    ({"question", "answer"}, "use --column-map question=prompt,answer=response"),
    ({"query", "response"}, "use --column-map query=prompt"),
    ({"chosen", "rejected"}, "this looks like preference data (chosen/rejected), which is not SFT data"),
    ({"text"}, "plain `text` rows are pretraining data, not conversations"),
)


def get_format(name: str) -> ModuleType:
    """The adapter module for a format name; raises `ConfigError` naming the choices."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown format {name!r}; expected one of auto, {', '.join(FORMATS)}") from None


def detect_format(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The format that fits most of `rows` (first in priority order on ties), or None when none fits any."""
    best, best_hits = None, 0
    for name, module in FORMATS.items():
        hits = sum(1 for row in rows if module.matches(row))
        if hits > best_hits:
            best, best_hits = name, hits
    return best


def resolve_format(source: str, rows: Sequence[Mapping[str, Any]], fmt: str = "auto") -> str | None:
    """`fmt` itself when named; otherwise the detected format. None when there are no readable rows.

    Raises:
        InputError: `fmt` is `auto`, the input has readable rows, and no format fits them.
    """
    if fmt != "auto":
        get_format(fmt)
        return fmt
    if not rows:
        return None
    found = detect_format(rows)
    if found is None:
        keys = sorted({k for row in rows for k in row})
        hint = next((h for need, h in _HINTS if need <= set(keys)), "name the format with --format or rename "
                    "columns with --column-map OLD=NEW")
        raise InputError(f"{source}: cannot detect the format from the first {len(rows)} rows (keys seen: "
                         f"{', '.join(keys[:20]) or 'none'}); expected one of {', '.join(FORMATS)}. Fix: {hint}")
    return found
