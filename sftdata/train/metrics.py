"""`OUT/metrics.jsonl`: one JSON object per logged step, and the throughput meter behind it.

Each train line: `step`, `split: "train"`, `loss` (per supervised token over the logged window's
last step), `lr`, `grad_norm`, `tokens_per_s` (real tokens, all ranks), `supervised_tokens_per_s`,
`mfu` (GPU only, else null), `tokens` (seen so far). Each eval line: `step`, `split: "eval"`,
`loss`, `tokens`. A skipped step (no supervised token anywhere in it) is logged with
`skipped: true` and `loss: null`. Only rank 0 writes. Lines are flushed as written so a crashed run
keeps its curve; on resume the file is appended to, after dropping lines past the resume step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends JSON lines to OUT/metrics.jsonl (no-op on ranks other than 0)."""

    def __init__(self, path: Path, *, enabled: bool, resume_step: int | None = None) -> None:
        self.path = path
        self.enabled = enabled
        self.records: list[dict[str, Any]] = []
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class Throughput:
    """Tokens, supervised tokens and FLOPs since the last `take()`, over wall time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()
        self.tokens = 0
        self.supervised = 0
        self.flops = 0.0

    def add(self, tokens: int, supervised: int, flops: float) -> None:
        self.tokens += tokens
        self.supervised += supervised
        self.flops += flops

    def take(self, peak_flops_total: float | None) -> dict[str, float | None]:
        """Rates since the last call (then restart the window)."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rates = {
            "tokens_per_s": round(self.tokens / elapsed, 1),
            "supervised_tokens_per_s": round(self.supervised / elapsed, 1),
            "mfu": round(self.flops / elapsed / peak_flops_total, 4) if peak_flops_total else None,
        }
        self.reset()
        return rates
