"""Raw rows -> `Record`s or `Reject`s, and the counts a person checks before preparing data.

`validate_records(rows, read)` is the one validation step every path uses (local `prepare`, the Ray
engine's tasks, `sftdata validate`), always given the whole `ReadOptions` so no path can forget one:
per input it detects the format from the first rows (or takes the named one), applies the column
map, lets the format adapter build normal-form dicts (OASST paths as `read.oasst_paths` says), and
validates them (`parse_conversation`, fields up to `read.max_chars`). `to_records` is the same step
with the options spelled as arguments; `count_records` counts its outcome. Every input row yields at least one item, so
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

from pydantic import ValidationError

from sftdata.config import ReadOptions
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
from sftdata.records import Problem, Record, Reject, Role, parse_conversation, thought_of

__all__ = ["InputSummary", "RecordStream", "ValidationReport", "count_records", "to_records", "validate_inputs",
           "validate_records"]


class RecordStream(Iterator["Record | Reject"]):
    """The iterator `validate_records` returns; `formats` maps each source seen so far to its format."""

    def __init__(self, items: Iterator[Record | Reject], formats: dict[str, str | None]) -> None:
        self._items = items
        self.formats = formats

    def __next__(self) -> Record | Reject:
        return next(self._items)


def read_options(read: ReadOptions | None = None, **fields: Any) -> ReadOptions:
    """`read` with `fields` on top, validated (a keyword spelling of the one typed set of read options).

    Raises:
        ConfigError: A field is unknown or has a bad value (every problem at once).
    """
    if not fields:
        return read or ReadOptions()
    cmap = fields.get("column_map")
    if cmap is not None and not isinstance(cmap, Mapping):  # `["old=new", ...]` as flags give it
        fields["column_map"] = parse_column_map(cmap) or None
    base = read.model_dump() if read is not None else {}
    try:
        return ReadOptions.model_validate({**base, **{k: v for k, v in fields.items() if v is not None}})
    except ValidationError as err:
        raise ConfigError("; ".join(_describe(e) for e in err.errors(include_url=False))) from None


def _describe(error: Any) -> str:
    key = ".".join(map(str, error["loc"])) or "read options"
    if error["type"] == "literal_error":
        return f"{key} must be {error['ctx']['expected']}, got {error['input']!r}"
    return f"{key}: {error['msg']} (got {error.get('input')!r})"


def validate_records(rows: Iterable[RawRow], read: ReadOptions | None = None) -> RecordStream:
    """Validate raw rows into records, streaming: THE validation step of every path (prepare, Ray, validate).

    Args:
        rows: Raw rows (from `read_rows`); rows of several sources are detected per source.
        read: The read options, whole: `format` (`auto` or a name), `column_map` (`{old: new}` renames
            applied before detection), `oasst_paths`, `max_chars` (the largest text field accepted,
            `oversize_field` above it). `split` and `max_row_bytes` act in the reader.

    Returns:
        An iterator of `Record | Reject` (at least one per row) whose `formats` attribute maps each source
        to the format used.

    Raises:
        InputError: `format` is `auto` and an input's first rows fit no format (raised while iterating).
        ConfigError: An unknown format name or a malformed column map (raised at once).
    """
    read = read or ReadOptions()
    fmt = read.format
    if fmt != "auto":
        get_format(fmt)
    mapping = parse_column_map(read.column_map)
    formats: dict[str, str | None] = {}
    options = FormatOptions(oasst_paths=read.oasst_paths)
    max_chars = read.max_chars

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


def to_records(rows: Iterable[RawRow], fmt: str = "auto", column_map: Mapping[str, str] | Sequence[str] | None = None,
               **fields: Any) -> RecordStream:
    """`validate_records` with the read options spelled as arguments (kept for callers and tests that do)."""
    return validate_records(rows, read_options(format=fmt, column_map=column_map, **fields))


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
            if m.reasoning or (m.role is Role.assistant and "<think>" in m.content and thought_of(m)):
                reasoning = True  # a field, or a leading think block kept in the content as written
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


def count_records(rows: Iterable[RawRow], read: ReadOptions | None = None, *,
                  on_reject: Callable[[Reject], None] | None = None,
                  on_record: Callable[[Record], None] | None = None) -> ValidationReport:
    """Validate every row and count the outcome (the whole of `sftdata validate` minus the printing).

    Args:
        rows: Raw rows, e.g. `read_rows("data.jsonl")`.
        read: The read options, as for `validate_records`.
        on_reject: Called with each reject (e.g. a `RejectWriter`).
        on_record: Called with each accepted record (e.g. to collect or to count progress).
    """
    stream = validate_records(rows, read)
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


def read_inputs(sources: Sequence[str], read: ReadOptions) -> Iterator[RawRow]:
    """The raw rows of every input in order, read with `read.split` and `read.max_row_bytes`.

    Every input is opened before any row is read, so a missing second file fails at once.
    """
    streams = [read_rows(s, split=read.split, max_row_bytes=read.max_row_bytes) for s in sources]
    return itertools.chain.from_iterable(streams)


def validate_inputs(sources: Sequence[str], read: ReadOptions | None = None, *, rejects: str | None = None,
                    on_record: Callable[[Record], None] | None = None,
                    on_reject: Callable[[Reject], None] | None = None, **fields: Any) -> ValidationReport:
    """Read and validate several inputs (each detected on its own), optionally writing `rejects` JSONL.

    Args:
        sources: Files or Hugging Face datasets.
        read: The read options; `fields` (e.g. `column_map=...`) are set on top of them.
        rejects: Write every reject to this JSONL file.

    Raises:
        InputError: An input cannot be read, or its format cannot be detected.
    """
    from sftdata.rejects import RejectWriter

    read = read_options(read, **fields)
    rows = read_inputs(sources, read)
    if rejects is None:
        report = count_records(rows, read, on_reject=on_reject, on_record=on_record)
        return _with_empty_inputs(report, sources)
    with RejectWriter(rejects) as writer:
        def both(reject: Reject) -> None:
            writer.write(reject)
            if on_reject is not None:
                on_reject(reject)

        report = count_records(rows, read, on_reject=both, on_record=on_record)
    return _with_empty_inputs(report, sources)


def _with_empty_inputs(report: ValidationReport, sources: Sequence[str]) -> ValidationReport:
    """List inputs that had no rows too, in the order given."""
    report.inputs = {s: report.inputs.get(s, InputSummary(s)) for s in sources} | report.inputs
    return report
