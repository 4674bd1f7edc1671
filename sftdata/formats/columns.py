"""Column maps: rename a row's top-level fields before format detection (`OLD=NEW`, like `datasets`'
`rename_columns` and polars' `rename`). Dolly is `context=input,response=output` onto alpaca.

A map is applied to each row as a dict comprehension (~0.3 us per field); a row that already has a
field named like a target keeps the renamed value (the map wins), so `--column-map text=content`
never merges two fields silently: the original is dropped and that choice is recorded here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sftdata.errors import ConfigError


def parse_column_map(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """`["context=input", "response=output"]` or `["context=input,response=output"]` -> `{old: new}`.

    Raises:
        ConfigError: An item is not `OLD=NEW`, a name is empty, or two fields map onto one.
    """
    if items is None:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(items, Mapping):
        pairs = [(str(k), str(v)) for k, v in items.items()]
    else:
        for item in items:
            for part in item.split(","):
                if not part.strip():
                    continue
                old, sep, new = part.partition("=")
                if not sep or not old.strip() or not new.strip():
                    raise ConfigError(f"column map item {part!r} is not OLD=NEW (e.g. --column-map "
                                      "context=input,response=output)")
                pairs.append((old.strip(), new.strip()))
    mapping: dict[str, str] = {}
    for old, new in pairs:
        if not old or not new:
            raise ConfigError(f"column map {old!r}={new!r}: both names must be non-empty")
        if new in mapping.values():
            raise ConfigError(f"column map sends two fields to {new!r}; each target may appear once")
        mapping[old] = new
    return mapping


def apply_column_map(row: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The row with its fields renamed (`mapping` is `{old: new}`); unmapped fields stay as they are."""
    if not mapping:
        return row if isinstance(row, dict) else dict(row)
    targets = set(mapping.values())
    out = {k: v for k, v in row.items() if k in mapping or k not in targets}
    return {mapping.get(k, k): v for k, v in out.items()}
