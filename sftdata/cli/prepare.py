"""`sftdata prepare`: inputs -> packed Arrow shards, rejects and a manifest (a thin layer over `sftdata.prepare`).

Every option can come from a pipeline YAML (`--config pipelines/NAME.yaml`); flags given on the command
line override it. The options are `PipelineConfig`'s fields, derived by `sftdata.cli.flags` (names,
help and defaults come from the model); only the inputs, `--out`, `--config`, `--resume`,
`--overwrite` and `--json` are declared here. The live progress bar and the summary table go to
stderr; `--json` prints exactly one JSON object on one line on stdout (counts, packing figures and
phase timings).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from sftdata.cli.flags import model_flags, overrides, with_flags
from sftdata.config import PipelineConfig

EPILOG = """\
Examples:

  sftdata prepare data.jsonl --tokenizer Qwen/Qwen2.5-0.5B-Instruct --out out/train

  sftdata prepare alpaca_en.json --config pipelines/alpaca_chat.yaml --tokenizer ./tok --out out/a --workers 2

  sftdata prepare big.jsonl --tokenizer ./tok --out out/big --max-length 4096 --too-long truncate --json

  sftdata prepare big.jsonl --tokenizer ./tok --out out/big --resume     # after an interrupted run

  sftdata prepare big.jsonl --tokenizer ./tok --out out/big --engine ray --ray-address auto   # on a Ray cluster

Output: OUT/shard-00000-of-0000N.arrow (Arrow IPC stream), OUT/rejects.jsonl, OUT/manifest.json (written
last; the folder is OUT.incomplete/ until the run completes).
Exit codes: 0 done; 1 done but the reject fraction is above --max-reject-fraction; 2 bad arguments or input.
"""


SHORT = {"tokenizer": "-t", "format": "-f", "workers": "-w"}
"""Short options of config fields (the long option is always the field name)."""

PANELS = {"read": "Reading options (read:)", "mask": "Masking options (mask:)"}
"""Help panel of each nested model's options; top-level fields are listed under Options."""

FLAGS = model_flags(PipelineConfig, short=SHORT)
"""One option per `PipelineConfig` field, nested ones included (`sftdata.cli.flags`)."""


def register(app: typer.Typer) -> None:
    app.command("prepare", epilog=EPILOG, no_args_is_help=True)(prepare)


@with_flags(FLAGS, PANELS)
def prepare(
    inputs: Annotated[list[str], typer.Argument(help="Files (.jsonl .json .parquet .csv) or Hugging Face datasets.",
                                                show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (must not exist, unless --overwrite).",
                                     show_default=False)],
    config: Annotated[str | None, typer.Option("--config", "-c", help="Pipeline YAML; flags override it.",
                                               show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in OUT.incomplete/.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no table.")] = False,
    **values: Any,
) -> None:
    """Render, tokenize, mask, pack and write training shards, with a manifest and every reject."""
    from rich.console import Console

    from sftdata.config import resolve_config
    from sftdata.prepare import prepare as run_prepare

    err = Console(stderr=True)
    start = time.perf_counter()
    cfg = resolve_config(config, overrides(FLAGS, values))
    try:
        with _Bar(err, enabled=not as_json) as bar:
            result = run_prepare(inputs, out, cfg, resume=resume, overwrite=overwrite, on_progress=bar.update)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: partial output kept in OUT.incomplete/; rerun with --resume")
        raise typer.Exit(130) from None
    m = result.manifest
    if as_json:
        payload = {"out": str(result.out), "exit_code": result.exit_code, "resumed": result.resumed,
                   "counts": m.counts.model_dump(), "packing": m.packing.model_dump(),
                   "shards": len(m.shards), "fingerprint": m.fingerprint,
                   "timings": {**result.timings, "process_s": round(time.perf_counter() - start, 3)}}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        _summary(err, result, time.perf_counter() - start)
    raise typer.Exit(result.exit_code)


class _Bar:
    """A live progress line on stderr: records, documents, tokens/s, rejects (updated once per batch)."""

    def __init__(self, console: Any, enabled: bool) -> None:
        self.enabled = enabled and console.is_terminal
        self.console = console

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.start = time.perf_counter()
            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("starting", total=None)
        return self

    def update(self, p: Any) -> None:
        if self.enabled:
            secs = max(time.perf_counter() - self.start, 1e-9)
            self.bar.update(self.task, description=(
                f"{p.rows_in:,} records ({p.rows_in / secs:,.0f}/s)  {p.tokens:,} tokens "
                f"({p.tokens / secs:,.0f}/s)  {p.rejected:,} rejected"))

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)  # type: ignore[arg-type]


def _summary(console: Any, result: Any, seconds: float) -> None:
    from rich.table import Table

    m = result.manifest
    table = Table(title=f"sftdata prepare -> {result.out}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    c, p = m.counts, m.packing
    table.add_row("records in", f"{c.rows_in:,}")
    table.add_row("documents written", f"{c.docs_written:,}")
    table.add_row("rejected", f"{c.rejected:,} ({c.rejected / max(c.rows_in, 1):.2%})")
    for code, n in sorted(c.reasons.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {code}", f"{n:,}")
    if c.truncated:
        table.add_row("truncated (written)", f"{c.truncated:,}")
    table.add_row("rows x capacity", f"{p.rows:,} x {p.capacity:,}")
    table.add_row("tokens", f"{p.tokens:,} ({sum(s.supervised_tokens for s in m.shards):,} supervised)")
    table.add_row("packing efficiency", f"{p.efficiency:.4f} (bound {p.lower_bound_efficiency:.4f}, "
                  f"{p.lower_bound_rows:,} rows)")
    table.add_row("shards", f"{len(m.shards)}")
    table.add_row("time", f"{seconds:.1f} s")
    console.print(table)
    if m.over_reject_limit:
        console.print(f"[red]reject fraction above --max-reject-fraction {m.max_reject_fraction}[/]: exit 1 "
                      f"(see {result.out}/rejects.jsonl)")
