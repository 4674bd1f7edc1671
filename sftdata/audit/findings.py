"""What an audit found: one `Finding` per failed (or noteworthy) check, located to the token.

A finding names the check, how serious it is, and where: shard file, row, document id, token
position (in the row and in the document), with the expected and the found value. Failures of the
same check are counted in full but only the first `MAX_PER_CHECK` are kept with their location, so a
shard with a million broken labels still gives a small, readable report (and a small `--json`).

Severity: `error` fails the audit (exit 1); `warning` is shown but passes (e.g. a record that could not
be re-derived because its input file is gone); `info` is a plain fact (template probes, totals).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

MAX_PER_CHECK = 25
"""Located findings kept per check; the count is always complete."""


class Severity(StrEnum):
    error = "error"
    """The data is wrong: the audit fails."""
    warning = "warning"
    """Something could not be proven or looks unusual; the audit still passes."""
    info = "info"
    """A fact worth knowing (template behaviour, totals)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One located result of one check."""

    check: str
    """Stable check name, e.g. `label_not_id`, `span_end_not_eot`, `ids_differ`."""
    severity: Severity
    message: str
    shard: str | None = None
    row: int | None = None
    """Row index inside the shard (or dataset)."""
    doc_id: str | None = None
    position: int | None = None
    """Token position inside the row."""
    doc_position: int | None = None
    """Token position inside the document."""
    expected: Any = None
    found: Any = None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items() if v is not None}

    def where(self) -> str:
        """`shard-00000-of-00001.arrow row 3 doc 'abc' token 17` (only the parts that are known)."""
        parts = []
        if self.shard is not None:
            parts.append(self.shard)
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.doc_id is not None:
            parts.append(f"doc {self.doc_id!r}")
        if self.position is not None:
            parts.append(f"token {self.position}")
        if self.doc_position is not None:
            parts.append(f"(doc token {self.doc_position})")
        return " ".join(parts)


@dataclass(slots=True)
class CheckResult:
    """How many items one check looked at and how many failed."""

    name: str
    description: str
    checked: int = 0
    failed: int = 0
    severity: Severity = Severity.error
    skipped: str | None = None
    """Why the check did not run (e.g. `train_eot is off`), or None."""


@dataclass(slots=True)
class Findings:
    """An accumulator of check results and located findings, capped per check."""

    checks: dict[str, CheckResult] = field(default_factory=dict)
    items: list[Finding] = field(default_factory=list)
    _kept: dict[str, int] = field(default_factory=dict)

    def check(self, name: str, description: str, checked: int, severity: Severity = Severity.error) -> CheckResult:
        """Register (or extend) a check that looked at `checked` items."""
        result = self.checks.get(name)
        if result is None:
            result = self.checks[name] = CheckResult(name, description, severity=severity)
        result.checked += checked
        return result

    def skip(self, name: str, description: str, why: str) -> None:
        self.checks.setdefault(name, CheckResult(name, description, skipped=why))

    def fail(self, finding: Finding, count: int = 1) -> None:
        """Record `count` failures of `finding.check`; keep the located finding while under the cap."""
        result = self.checks.get(finding.check)
        if result is None:
            result = self.checks[finding.check] = CheckResult(finding.check, finding.check, severity=finding.severity)
        result.failed += count
        self._keep(finding)

    def merge(self, other: Findings) -> None:
        """Add the results of checks run elsewhere (another process): counts in full, findings under the cap."""
        for name, result in other.checks.items():
            mine = self.check(name, result.description, result.checked, result.severity)
            mine.failed += result.failed
        for finding in other.items:
            self._keep(finding)

    def _keep(self, finding: Finding) -> None:
        """Keep a located finding while its check is under the cap of findings shown."""
        kept = self._kept.get(finding.check, 0)
        if kept < MAX_PER_CHECK:
            self._kept[finding.check] = kept + 1
            self.items.append(finding)

    def note(self, finding: Finding) -> None:
        """A finding that is not a check failure (info about the template, a skipped record)."""
        self.items.append(finding)

    @property
    def errors(self) -> int:
        return sum(c.failed for c in self.checks.values() if c.severity == Severity.error)

    @property
    def passed(self) -> bool:
        return self.errors == 0

    def checks_json(self) -> list[dict[str, Any]]:
        return [
            {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(c).items() if v is not None}
            for c in self.checks.values()
        ]
