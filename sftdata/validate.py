"""Raw rows -> `Record`s or `Reject`s, and the counts a person checks before preparing data.

`to_records` is the stage every later step uses: per input it detects the format from the first rows
(or takes the named one), applies the column map, lets the format adapter build normal-form dicts,
and validates them (`parse_conversation`). Every input row yields at least one item, so
`rows == accepted + rejected` for one-to-one formats; an OASST tree yields one item per path, which
is why the report counts `records` (what was judged) apart from `rows` (what was read).

Cost, measured on the 20k-row benchmark corpus (OpenAI messages, 2 cores): reading and `json.loads`
~0.25 s, pydantic validation ~0.6 s, rule checks ~0.15 s, interpreter and imports ~0.5 s; a whole
`sftdata validate` process costs ~7 % of `floor.py` on the same corpus, measured side by side
(`benchmarks/bench_validate.py`, figures in notes/issue-2.md).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sftdata.errors import ConfigError
from sftdata.formats import (
    DETECT_ROWS,
    FormatOptions,
    apply_column_map,
    get_format,
    parse_column_map,
    resolve_format,
)
from sftdata.readers import RawRow, read_rows
from sftdata.reasons import Reason
from sftdata.records import MAX_FIELD_CHARS, Problem, Record, Reject, parse_conversation

__all__ = ["InputSummary", "RecordStream", "ValidationReport", "to_records", "validate_inputs", "validate_rows"]


class RecordStream(Iterator["Record | Reject"]):
    """The iterator `to_records` returns; `formats` maps each source seen so far to its format."""

    def __init__(self, items: Iterator[Record | Reject], formats: dict[str, str | None]) -> None:
        self._items = items
        self.formats = formats

    def __next__(self) -> Record | Reject:
        return next(self._items)


def to_records(rows: Iterable[RawRow], fmt: str = "auto", column_map: Mapping[str, str] | Sequence[str] | None = None,
               *, max_chars: int = MAX_FIELD_CHARS, oasst_paths: str = "all") -> RecordStream:
    """Validate raw rows into records, streaming.

    Args:
        rows: Raw rows (from `read_rows`); rows of several sources are detected per source.
        fmt: `auto` or a format name (`alpaca`, `sharegpt`, `messages`, `prompt_completion`, `oasst`).
        column_map: `{old: new}` field renames applied before detection, or `["old=new", ...]`.
        max_chars: The largest text field accepted (`oversize_field` above it).
        oasst_paths: `all` root-to-leaf paths per OASST tree, or only the `top`-ranked one.

    Returns:
        An iterator of `Record | Reject` (at least one per row) whose `formats` attribute maps each source
        to the format used.

    Raises:
        InputError: `fmt` is `auto` and an input's first rows fit no format (raised while iterating).
        ConfigError: An unknown format name or a malformed column map (raised at once).
    """
    if fmt != "auto":
        get_format(fmt)
    if oasst_paths not in ("all", "top"):
        raise ConfigError(f"oasst_paths must be 'all' or 'top', got {oasst_paths!r}")
    mapping = parse_column_map(column_map)
    formats: dict[str, str | None] = {}
    options = FormatOptions(oasst_paths=oasst_paths)

    def generate() -> Iterator[Record | Reject]:
        for source, group in itertools.groupby(rows, key=lambda r: r.source):
            group = iter(group)
            head = list(itertools.islice(group, DETECT_ROWS))
            sample = [apply_column_map(r.data, mapping) for r in head if r.data is not None]
            name = resolve_format(source, sample, fmt)
            formats[source] = name
            adapter = get_format(name).convert if name is not None else None
            for row in itertools.chain(head, group):
                yield from _convert_row(row, adapter, mapping, options, max_chars)

    return RecordStream(generate(), formats)


def _convert_row(row: RawRow, convert: Callable[..., Any] | None, mapping: Mapping[str, str],
                 options: FormatOptions, max_chars: int) -> Iterator[Record | Reject]:
    if row.data is None or convert is None:
        problem = row.problem or Problem(Reason.unknown_format, "row could not be read")
        yield Reject(row.source, row.index, [problem], None, row.raw)
        return
    data = apply_column_map(row.data, mapping) if mapping else row.data
    try:
        candidates = convert(data, options)
    except RecursionError:
        yield Reject(row.source, row.index, [Problem(Reason.too_deep, "row is nested too deeply to convert")],
                     None, row.raw)
        return
    for cand in candidates:
        raw = cand.raw if cand.raw is not None else row.raw
        if cand.problems:
            yield Reject(row.source, row.index, cand.problems, cand.id, raw)
            continue
        try:
            result = parse_conversation(cand.data, max_chars)  # type: ignore[arg-type]
        except RecursionError:
            result = [Problem(Reason.too_deep, "row is nested too deeply to validate")]
        if isinstance(result, list):
            yield Reject(row.source, row.index, result, cand.id, raw)
        else:
            yield Record(row.source, row.index, result)


@dataclass
class InputSummary:
    """Counts for one input."""

    source: str
    format: str | None = None
    rows: int = 0
    records: int = 0
    accepted: int = 0
    rejected: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "rows": self.rows, "records": self.records,
                "accepted": self.accepted, "rejected": self.rejected}


@dataclass
class ValidationReport:
    """What `validate` found: counts of rows, records, rejects by reason, turns and roles.

    `reasons` counts rejected records per code (a record with two codes counts under both, once each),
    so its values can sum to more than `rejected`.
    """

    rows: int = 0
    """Input rows read (a row that could not be parsed counts)."""
    records: int = 0
    """Records judged: equal to `rows` except for OASST trees, which give one per path."""
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    roles: Counter[str] = field(default_factory=Counter)
    """Messages per role over accepted records."""
    messages: int = 0
    min_turns: int = 0
    max_turns: int = 0
    tool_calls: int = 0
    with_reasoning: int = 0
    """Accepted records with at least one assistant `reasoning`."""
    with_tools: int = 0
    inputs: dict[str, InputSummary] = field(default_factory=dict)

    @property
    def format(self) -> str | None:
        """The format of the inputs: one name, `mixed` when they differ, None when nothing was read."""
        names = {s.format for s in self.inputs.values() if s.format is not None}
        return names.pop() if len(names) == 1 else ("mixed" if names else None)

    @property
    def reject_fraction(self) -> float:
        return self.rejected / self.records if self.records else 0.0

    def add(self, item: Record | Reject, *, new_row: bool) -> None:
        """Count one item from `to_records`; `new_row` is False for further paths of the same row."""
        summary = self.inputs.get(item.source)
        if summary is None:
            summary = self.inputs[item.source] = InputSummary(item.source)
        self.records += 1
        summary.records += 1
        if new_row:
            self.rows += 1
            summary.rows += 1
        if isinstance(item, Reject):
            self.rejected += 1
            summary.rejected += 1
            self.reasons.update({p.code.value for p in item.problems})
            return
        self.accepted += 1
        summary.accepted += 1
        msgs = item.conversation.messages
        n = len(msgs)
        self.messages += n
        self.min_turns = n if self.accepted == 1 else min(self.min_turns, n)
        self.max_turns = max(self.max_turns, n)
        roles = self.roles
        reasoning = False
        for m in msgs:  # one plain loop: Counter.update over a generator costs 3x more here
            roles[m.role.value] += 1
            if m.tool_calls:
                self.tool_calls += len(m.tool_calls)
            if m.reasoning:
                reasoning = True
        self.with_reasoning += reasoning
        self.with_tools += item.conversation.tools is not None

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready dict (what `sftdata validate --json` prints)."""
        return {
            "format": self.format,
            "rows": self.rows,
            "records": self.records,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "reject_fraction": round(self.reject_fraction, 6),
            "reasons": dict(sorted(self.reasons.items())),
            "roles": dict(sorted(self.roles.items())),
            "messages": self.messages,
            "turns": {"min": self.min_turns, "mean": round(self.messages / self.accepted, 3) if self.accepted else 0,
                      "max": self.max_turns},
            "tool_calls": self.tool_calls,
            "with_reasoning": self.with_reasoning,
            "with_tools": self.with_tools,
            "inputs": [s.to_json() for s in self.inputs.values()],
        }


def validate_rows(rows: Iterable[RawRow], fmt: str = "auto",
                  column_map: Mapping[str, str] | Sequence[str] | None = None, *, max_chars: int = MAX_FIELD_CHARS,
                  oasst_paths: str = "all", on_reject: Callable[[Reject], None] | None = None,
                  on_record: Callable[[Record], None] | None = None) -> ValidationReport:
    """Validate every row and count the outcome (the whole of `sftdata validate` minus the printing).

    Args:
        rows: Raw rows, e.g. `read_rows("data.jsonl")`.
        fmt, column_map, max_chars, oasst_paths: As for `to_records`.
        on_reject: Called with each reject (e.g. a `RejectWriter`).
        on_record: Called with each accepted record (e.g. to collect or to count progress).
    """
    stream = to_records(rows, fmt, column_map, max_chars=max_chars, oasst_paths=oasst_paths)
    report = ValidationReport()
    last: tuple[str, int] | None = None
    for item in stream:
        key = (item.source, item.index)
        report.add(item, new_row=key != last)
        last = key
        if isinstance(item, Reject):
            if on_reject is not None:
                on_reject(item)
        elif on_record is not None:
            on_record(item)
    for source, name in stream.formats.items():
        report.inputs.setdefault(source, InputSummary(source)).format = name
    return report


def validate_inputs(sources: Sequence[str], fmt: str = "auto",
                    column_map: Mapping[str, str] | Sequence[str] | None = None, *, split: str | None = None,
                    max_chars: int = MAX_FIELD_CHARS, oasst_paths: str = "all", rejects: str | None = None,
                    on_record: Callable[[Record], None] | None = None,
                    on_reject: Callable[[Reject], None] | None = None) -> ValidationReport:
    """Read and validate several inputs (each detected on its own), optionally writing `rejects` JSONL.

    Every input is opened before any row is validated, so a missing second file fails at once.

    Raises:
        InputError: An input cannot be read, or its format cannot be detected.
    """
    from sftdata.rejects import RejectWriter

    streams = [read_rows(s, split=split) for s in sources]
    rows = itertools.chain.from_iterable(streams)
    if rejects is None:
        report = validate_rows(rows, fmt, column_map, max_chars=max_chars, oasst_paths=oasst_paths,
                               on_reject=on_reject, on_record=on_record)
        return _with_empty_inputs(report, sources)
    with RejectWriter(rejects) as writer:
        def both(reject: Reject) -> None:
            writer.write(reject)
            if on_reject is not None:
                on_reject(reject)

        report = validate_rows(rows, fmt, column_map, max_chars=max_chars, oasst_paths=oasst_paths,
                               on_reject=both, on_record=on_record)
    return _with_empty_inputs(report, sources)


def _with_empty_inputs(report: ValidationReport, sources: Sequence[str]) -> ValidationReport:
    """List inputs that had no rows too, in the order given."""
    report.inputs = {s: report.inputs.get(s, InputSummary(s)) for s in sources} | report.inputs
    return report
