"""sftdata: raw instruction data to training-ready SFT shards, with provably right loss masks.

The stages, each a typed function you can call from a script or a notebook (the CLI is a thin layer):

    read_rows      -> raw rows from JSONL / JSON / Parquet / CSV / Hugging Face datasets
    to_records     -> Record (validated Conversation + source position) or Reject (reason codes)
    ChatEncoder    -> Example(input_ids, supervised) per conversation, mask proven two ways
    plan_packs     -> best-fit-decreasing bins from lengths alone
    prepare        -> the whole batch job: shards + manifest + rejects
    audit_prepared -> independent re-derivation of every mask, HTML report (audit_dataset: other tools')
    train          -> `from sftdata.train import train`: a small trainer over the shards (extra `train`)

Heavy modules are imported lazily so that `import sftdata` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from sftdata._version import __version__
from sftdata.reasons import Reason
from sftdata.tokens import IGNORE_INDEX, Example

# public name -> module that defines it (imported on first use)
_LAZY = {
    **dict.fromkeys(("Conversation", "Message", "Problem", "Reject", "Role", "ToolCall", "parse_conversation"),
                    "sftdata.records"),  # pydantic models the audit never needs: off its serial start-up
    "read_rows": "sftdata.readers",
    "to_records": "sftdata.validate",
    "validate_records": "sftdata.validate",
    "count_records": "sftdata.validate",
    "ReadOptions": "sftdata.config",
    "validate_inputs": "sftdata.validate",
    "ValidationReport": "sftdata.validate",
    "MaskOptions": "sftdata.chat.options",
    "ChatEncoder": "sftdata.chat.engine",
    "encode": "sftdata.chat.engine",
    "plan_packs": "sftdata.pack",
    "PipelineConfig": "sftdata.config",
    "prepare": "sftdata.prepare",
    "Manifest": "sftdata.manifest",
    "audit_prepared": "sftdata.audit",
    "audit_dataset": "sftdata.audit",
    "TrainConfig": "sftdata.train.config",
}

__all__ = [
    "IGNORE_INDEX",
    "Conversation",
    "Example",
    "Message",
    "Problem",
    "Reason",
    "Reject",
    "Role",
    "ToolCall",
    "__version__",
    "parse_conversation",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sftdata' has no attribute {name!r}")
