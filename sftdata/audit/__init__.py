"""`sftdata audit`: independent proof that every label is right, and a report people want to read.

Public API:
- `audit_prepared(folder, ...)`: audit a folder written by `sftdata prepare` (manifest, checksums,
  shard invariants, template probes, every document re-derived from its source row, every text of
  every raw row found in its documents). Missing inputs and unproven masks fail it unless asked.
- `audit_dataset(path, tokenizer, ...)`: the same invariants and probes for another tool's tokenized
  dataset (`save_to_disk` folder, Parquet, Arrow) with `input_ids` and `labels` / `assistant_masks` /
  `completion_mask`.
- `write_html(report, path)`: one self-contained HTML file (inline SVG, no network).

Module map: `tables` (flat numpy views of Arrow list columns), `invariants` (shard-only checks),
`integrity` (manifest vs files), `raw` + `normal` + `sources` (the audit's own reading of the inputs),
`conserve` (every raw text in its documents), `render` + `rederive` + `compare` (the independent derivation),
`probes` (template findings), `stats` (polars), `foreign` (other tools' datasets), `html` (report).
The audit never imports the writer's mask engine (`sftdata.chat`), `sftdata.prepare`, or its readers,
format adapters and validation (`sftdata.readers`, `sftdata.formats`, `sftdata.validate`).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"Finding": "findings", "Findings": "findings", "Severity": "findings", "audit_dataset": "foreign",
          "write_html": "html", "AuditReport": "run", "audit_prepared": "run"}
"""Each public name's module, imported on first use: the CLI reads `audit.intent` for its flags at start-up
without loading the audit (numpy, pyarrow, the renderer) into every other command."""

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
