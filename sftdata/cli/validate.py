"""`sftdata validate`: read inputs, detect their format, count what would be accepted and why not.

A thin layer over `sftdata.validate.validate_inputs`; the read options are `ReadOptions`' fields,
derived by `sftdata.cli.flags` (the same flags as `prepare`). The progress bar and the summary table
go to stderr; `--json` prints exactly one JSON object on one line on stdout and nothing else.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from sftdata.cli.flags import model_flags, overrides, with_flags
from sftdata.config import ReadOptions

EPILOG = """\
Examples:

  sftdata validate data/train.jsonl

  sftdata validate alpaca_en.json glaive.json --rejects rejects.jsonl --max-reject-fraction 0.01

  sftdata validate dolly.jsonl --column-map context=input,response=output --json

Exit codes: 0 reject fraction within --max-reject-fraction; 1 above it; 2 unreadable input or bad arguments.
"""

PROGRESS_EVERY = 2048


FLAGS = model_flags(ReadOptions, short={"format": "-f"})
"""One option per `ReadOptions` field (`sftdata.cli.flags`): the same read flags as `prepare`."""


def register(app: typer.Typer) -> None:
    app.command("validate", epilog=EPILOG, no_args_is_help=True)(validate)


@with_flags(FLAGS)
def validate(
    inputs: Annotated[list[str], typer.Argument(help="Files (.jsonl .json .parquet .csv) or Hugging Face datasets.",
                                                show_default=False)],
    rejects: Annotated[str | None, typer.Option("--rejects", help="Write rejected rows with every reason to this "
                       "JSONL file.", show_default=False)] = None,
    max_reject_fraction: Annotated[float, typer.Option("--max-reject-fraction", min=0.0, max=1.0,
                                   help="Exit 1 when rejected/records is above this.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no table.")] = False,
    **values: Any,
) -> None:
    """Check that inputs parse into conversations; count rows, rejects by reason, turns and roles."""
    from rich.console import Console

    from sftdata.validate import validate_inputs

    err = Console(stderr=True)
    start = time.perf_counter()
    with _progress(err, enabled=not as_json) as tick:
        report = validate_inputs(inputs, rejects=rejects, on_record=tick, on_reject=tick, **overrides(FLAGS, values))
    seconds = time.perf_counter() - start
    failed = report.reject_fraction > max_reject_fraction
    if as_json:
        out = report.to_json()
        out.update(rejects_path=rejects, max_reject_fraction=max_reject_fraction, passed=not failed,
                   seconds=round(seconds, 3))
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        _print_table(err, report, seconds, rejects)
        verdict = "[red]FAILED[/]" if failed else "[green]ok[/]"
        err.print(f"reject fraction {report.reject_fraction:.4%} (limit {max_reject_fraction:.4%}): {verdict}")
    raise typer.Exit(1 if failed else 0)


class _progress:
    """A rich progress line on stderr, ticked every `PROGRESS_EVERY` items (ticking costs ~0 per item)."""

    def __init__(self, console, enabled: bool) -> None:  # noqa: ANN001
        self.enabled = enabled and console.is_terminal
        self.console = console
        self.count = 0

    def __enter__(self):  # noqa: ANN204
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("validating {task.completed:,} records"),
                                TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("validate", total=None)
        return self.tick

    def tick(self, _item: object) -> None:
        self.count += 1
        if self.enabled and self.count % PROGRESS_EVERY == 0:
            self.bar.update(self.task, completed=self.count)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)  # type: ignore[arg-type]


def _print_table(console, report, seconds: float, rejects: str | None) -> None:  # noqa: ANN001
    from rich.table import Table

    table = Table(title="sftdata validate", show_header=True, header_style="bold")
    table.add_column("input")
    table.add_column("format")
    for name in ("rows", "records", "accepted", "rejected"):
        table.add_column(name, justify="right")
    for s in report.inputs.values():
        table.add_row(s.source, s.format or "-", f"{s.rows:,}", f"{s.records:,}", f"{s.accepted:,}", f"{s.rejected:,}")
    if len(report.inputs) > 1:
        table.add_row("[bold]total", report.format or "-", f"{report.rows:,}", f"{report.records:,}",
                      f"{report.accepted:,}", f"{report.rejected:,}")
    console.print(table)
    if report.reasons:
        reasons = Table(title="rejects by reason", header_style="bold")
        reasons.add_column("reason")
        reasons.add_column("records", justify="right")
        for code, n in report.reasons.most_common():
            reasons.add_row(code, f"{n:,}")
        console.print(reasons)
    j = report.to_json()
    roles = ", ".join(f"{k} {v:,}" for k, v in j["roles"].items()) or "-"
    console.print(f"turns per record min {j['turns']['min']} / mean {j['turns']['mean']} / max {j['turns']['max']}; "
                  f"roles: {roles}; tool calls {report.tool_calls:,}; with reasoning {report.with_reasoning:,}")
    rate = report.rows / seconds if seconds > 0 else 0.0
    console.print(f"{report.rows:,} rows in {seconds:.2f} s ({rate:,.0f} rows/s)"
                  + (f"; rejects written to {rejects}" if rejects else ""))
