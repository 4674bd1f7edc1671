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

from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.foreign import audit_dataset
from sftdata.audit.html import write_html
from sftdata.audit.run import AuditReport, audit_prepared

__all__ = ["AuditReport", "Finding", "Findings", "Severity", "audit_dataset", "audit_prepared", "write_html"]
