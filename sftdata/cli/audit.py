"""`sftdata audit`: prove the labels of prepared shards (or another tool's dataset) and show them.

A thin layer over `sftdata.audit.audit_prepared` / `audit_dataset`. The summary goes to stderr;
`--json` prints exactly one JSON object on one line on stdout; `--report` writes the HTML report.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from sftdata.audit.intent import DatasetIntent
from sftdata.cli import skip_teardown
from sftdata.cli.flags import model_flags, overrides, with_flags

EPILOG = """\
Examples:

  sftdata audit out/ --report audit.html

  sftdata audit out/ --json > audit.json

  sftdata audit trl_dataset/ --tokenizer Qwen/Qwen2.5-0.5B-Instruct --report trl.html

  sftdata audit data.parquet --tokenizer ./tok --chat-template my.jinja --masking last

The audit proves or fails: a missing or changed input, a mask it cannot re-derive, or a text of a raw
row found in none of its record's documents fails it. `--shards-only` and `--allow-unproven` ask for
a weaker audit by name; the summary lists every check that ran and every one that was skipped.

Exit codes: 0 every check passed; 1 a check failed (each failure names shard, row, document, token,
expected and found); 2 unreadable input or bad arguments.
"""


TERMINAL_PER_CHECK = 5
"""Located failures printed per check; --json and --report hold more."""

FLAGS = model_flags(DatasetIntent)
"""What another tool's dataset was meant to train (`audit.intent`); a prepared folder's come from its manifest."""
PANEL = "Other tools' datasets (what was meant to be trained)"


def register(app: typer.Typer) -> None:
    app.command("audit", epilog=EPILOG, no_args_is_help=True)(audit)


@with_flags(FLAGS, {f.path[0]: PANEL for f in FLAGS})
def audit(
    path: Annotated[str, typer.Argument(help="A folder written by `sftdata prepare`, or (with --tokenizer) a "
                                        "tokenized dataset: save_to_disk folder, .parquet or .arrow.",
                                        show_default=False)],
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", "-t", help="Tokenizer folder or hub id (required "
                         "for other tools' datasets; overrides the manifest's).", show_default=False)] = None,
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="Jinja file overriding the "
                             "tokenizer's template (other tools' datasets).", show_default=False)] = None,
    report: Annotated[str | None, typer.Option("--report", help="Write the self-contained HTML report here.",
                      show_default=False)] = None,
    sample: Annotated[int, typer.Option("--sample", min=0, help="Documents shown token by token in the report.")] = 8,
    shards_only: Annotated[bool, typer.Option("--shards-only", help="The weaker audit, by name: skip the source "
                           "rows (no re-derivation, no conservation check); the shard invariants still run and "
                           "the report lists what was skipped.")] = False,
    allow_unproven: Annotated[bool, typer.Option("--allow-unproven", help="A mask the audit cannot re-derive is a "
                              "warning, not a failure (the report still lists each one).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    **values: Any,
) -> None:
    """Check every label independently of the code that wrote it; report located failures and template findings."""
    from pathlib import Path

    from rich.console import Console

    from sftdata.audit import audit_dataset, audit_prepared, write_html
    from sftdata.manifest import MANIFEST_NAME

    err = Console(stderr=True)
    intent = overrides(FLAGS, values)
    if (Path(path) / MANIFEST_NAME).is_file():
        if intent or chat_template:
            given = [f.option for f in FLAGS if f.name in intent] + (["--chat-template"] if chat_template else [])
            raise typer.BadParameter(f"{', '.join(given)}: for other tools' datasets only; {path} was written by "
                                     f"`sftdata prepare`, and its {MANIFEST_NAME} records what it trains")
        result = audit_prepared(path, tokenizer=tokenizer, sample=sample, shards_only=shards_only,
                                allow_unproven=allow_unproven)
    elif tokenizer is None:
        raise typer.BadParameter(f"{path} has no {MANIFEST_NAME}: to audit another tool's dataset pass "
                                 "--tokenizer (and --chat-template if it used its own)")
    else:
        result = audit_dataset(path, tokenizer, chat_template=chat_template, sample=sample,
                               allow_unproven=allow_unproven, **intent)
    if report:
        write_html(result, report)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False, default=str) + "\n")
    else:
        _print_summary(err, result, report)
    skip_teardown()
    raise typer.Exit(0 if result.passed else 1)


def _print_summary(err, result, report_path: str | None) -> None:
    from rich.table import Table

    table = Table(title=f"sftdata audit: {result.target}", title_justify="left")
    for col in ("check", "checked", "result"):
        table.add_column(col, justify="right" if col == "checked" else "left")
    for c in result.findings.checks.values():
        state = (f"[dim]skipped: {c.skipped}[/]" if c.skipped else
                 f"[red]{c.failed:,} failed[/]" if c.failed and c.severity == "error" else
                 f"[yellow]{c.failed:,} warning(s)[/]" if c.failed else "[green]ok[/]")
        table.add_row(c.name, f"{c.checked:,}", state)
    err.print(table)
    for f in result.probes:
        err.print(f"  [cyan]template[/] {f.message}", highlight=False)
    shown: dict[str, int] = {}
    for f in result.findings.items:
        if f.severity == "info":
            continue
        shown[f.check] = shown.get(f.check, 0) + 1
        if shown[f.check] > TERMINAL_PER_CHECK:
            continue
        color = "red" if f.severity == "error" else "yellow"
        detail = f" expected {f.expected!r}, found {f.found!r}" if f.expected is not None or f.found is not None else ""
        err.print(f"  [{color}]{f.check}[/] {f.where()}: {f.message}.{detail}", highlight=False, soft_wrap=True)
    for check, n in shown.items():
        total = result.findings.checks[check].failed if check in result.findings.checks else n
        if total > TERMINAL_PER_CHECK:
            err.print(f"  [dim]{check}: {total - TERMINAL_PER_CHECK:,} more (see --json or --report)[/]")
    mode = result.about.get("mode") or {}
    weaker = [flag for flag, key in (("--shards-only", "shards_only"), ("--allow-unproven", "allow_unproven"))
              if mode.get(key)]
    if weaker:
        err.print(f"  [yellow]weaker audit asked for[/]: {', '.join(weaker)}", highlight=False)
    verdict = "[green]passed[/]" if result.passed else f"[red]FAILED ({result.findings.errors:,} problems)[/]"
    extra = f"; report: {report_path}" if report_path else ""
    err.print(f"audit {verdict} in {result.timings.get('total_s', 0):.1f} s{extra}")
