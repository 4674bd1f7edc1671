"""Conservation from the raw rows: every text the user gave is in the documents of its record.

For each raw row that the writer did not reject, every text leaf the audit's own reading finds
(`sftdata.audit.normal`: contents, replies, reasoning, system prompts, tool definitions, tool-call
names and arguments, message names) must appear in the decoded text of the row's documents. A
record's texts may be spread over its documents: `ID` and every `ID#K` (one document per assistant
turn whose reasoning the full render would lose) count together, and an OASST row's paths count
together. Both sides are normalised the way the engine compares them: Unicode NFC, runs of
whitespace collapsed to one space, ends stripped. A text is also found in its JSON-escaped form
(templates print tool schemas and arguments with `tojson`, which escapes quotes and non-ASCII).

A missing text fails the audit with its record, field path and text, unless the manifest's options
allow that kind of drop: `mask.allow_drop` (tools, system, name, tool_calls, content), or the
reasoning of an earlier turn under `masking: last` / `reasoning_history: last` (dropped exactly as
at inference, and counted by the writer). Allowed drops are reported as warnings, not failures. Rows
with a document cut by `too_long: truncate` (listed in the manifest) are counted, not checked.

Cost: one batched `decode` of every document (Rust, ~0.1 s per million tokens) plus a substring
search per text (the documents of one record are a few kB).
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.normal import Leaf, RawRecord
from sftdata.audit.tables import TokenView

CHECK = ("conservation", "every text of each raw row is in its record's documents (normalised)")
ALLOWED = ("conservation_allowed_drop", "texts missing from the documents by a drop the manifest allows")
SHOWN_CHARS = 120


def normalise(text: str) -> str:
    """NFC, runs of whitespace collapsed to one space, ends stripped (`str.split` splits on the same
    Unicode whitespace as the regex `\\s+`, several times faster)."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _escaped_forms(text: str) -> tuple[str, ...]:
    """The JSON-escaped spellings of a text (as `tojson` prints strings), normalised; only looked for when
    the plain text is not found (tool schemas and arguments)."""
    return (normalise(json.dumps(text, ensure_ascii=False)[1:-1]), normalise(json.dumps(text)[1:-1]))


@dataclass
class DropPolicy:
    """What the manifest allows a template to leave out."""

    kinds: frozenset[str] = frozenset()
    """`mask.allow_drop` kinds."""
    earlier_reasoning: bool = False
    """`masking: last` or `reasoning_history: last`: earlier turns' reasoning may be dropped."""

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> DropPolicy:
        mask = options.get("mask") if isinstance(options.get("mask"), dict) else {}
        kinds = frozenset(str(k) for k in (mask.get("allow_drop") or []))
        earlier = mask.get("masking") == "last" or mask.get("reasoning_history") == "last"
        return cls(kinds, earlier)

    def allows(self, leaf: Leaf, last_turn: int | None) -> bool:
        if leaf.kind in self.kinds:
            return True
        return (leaf.kind == "reasoning" and self.earlier_reasoning and leaf.turn is not None
                and last_turn is not None and leaf.turn < last_turn)


@dataclass
class Conservation:
    """Checks rows in batches against the decoded text of their documents."""

    backend: Any
    """A `tokenizers.Tokenizer` (a transformers tokenizer's `backend_tokenizer`): it decodes the stored ids."""
    views: list[TokenView]
    policy: DropPolicy
    findings: Findings
    truncated: frozenset[str] = frozenset()
    """Documents cut by `too_long: truncate` (listed in the manifest): their rows are not checked."""
    allowed: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.findings.check(*CHECK, 0)

    def check(self, rows: list[tuple[RawRecord, list[tuple[int, int]]]]) -> None:
        """`rows`: each raw row with the (view, document) places of all its documents."""
        places = [p for _, docs in rows for p in docs]
        seqs = []
        for v, d in places:
            ids, _ = self.views[v].doc_tokens(d)
            seqs.append(ids.tolist())
        texts = self.backend.decode_batch(seqs, skip_special_tokens=False) if seqs else []
        decoded = dict(zip(places, (normalise(t) for t in texts), strict=True))
        for row, docs in rows:
            if not docs:
                continue
            if any(self.views[v].doc_ids[d] in self.truncated for v, d in docs):
                self.allowed["truncated"] += 1  # the manifest lists the cut: its end is lost by policy
                continue
            joined = "\n".join(decoded[p] for p in docs)
            assistants = [i for i, m in enumerate(row.records[0].messages) if m.get("role") == "assistant"] \
                if row.records else []
            last_turn = assistants[-1] if assistants else None
            self.findings.check(*CHECK, len(row.leaves))
            for leaf in row.leaves:
                plain = normalise(leaf.text)
                if not plain or plain in joined or any(f in joined for f in _escaped_forms(leaf.text)):
                    continue
                view = self.views[docs[0][0]]
                doc_id = view.doc_ids[docs[0][1]]
                shown = plain[:SHOWN_CHARS] + ("…" if len(plain) > SHOWN_CHARS else "")
                if self.policy.allows(leaf, last_turn):
                    self.allowed[leaf.kind] += 1
                    self.findings.check(*ALLOWED, 1, Severity.warning)
                    self.findings.fail(Finding(ALLOWED[0], Severity.warning,
                                               f"{leaf.kind} text of {row.source}:{row.index} field {leaf.path} is "
                                               "not in its documents (a drop the manifest allows)", doc_id=doc_id,
                                               expected=shown, found="absent"))
                    continue
                self.findings.fail(Finding(CHECK[0], Severity.error,
                                           f"{leaf.kind} text of {row.source}:{row.index} field {leaf.path} is lost: "
                                           f"it is in none of the record's {len(docs)} document(s)",
                                           doc_id=doc_id, expected=shown, found="absent"))
