"""`sftdata prepare`: inputs -> packed Arrow shards, rejects and a manifest (a thin layer over `sftdata.prepare`).

Every option can come from a pipeline YAML (`--config pipelines/NAME.yaml`); flags given on the command
line override it. The live progress bar and the summary table go to stderr; `--json` prints exactly one
JSON object on one line on stdout (counts, packing figures and phase timings).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

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


def register(app: typer.Typer) -> None:
    app.command("prepare", epilog=EPILOG, no_args_is_help=True)(prepare)


def prepare(
    inputs: Annotated[list[str], typer.Argument(help="Files (.jsonl .json .parquet .csv) or Hugging Face datasets.",
                                                show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (must not exist, unless --overwrite).",
                                     show_default=False)],
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", "-t", help="Tokenizer folder or hub id.",
                                                  show_default=False)] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Pipeline YAML; flags override it.",
                                               show_default=False)] = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="auto, alpaca, sharegpt, messages, "
                                               "prompt_completion or oasst.", show_default=False)] = None,
    column_map: Annotated[list[str] | None, typer.Option("--column-map", help="Rename fields OLD=NEW before "
                          "detection; repeat or separate with commas.", show_default=False)] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split of a Hugging Face dataset.",
                                              show_default=False)] = None,
    oasst_paths: Annotated[str | None, typer.Option("--oasst-paths", help="OASST trees: `all` paths or `top`.",
                                                    show_default=False)] = None,
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="Jinja file overriding the "
                             "tokenizer's chat template.", show_default=False)] = None,
    prompt_format: Annotated[str | None, typer.Option("--prompt-format", help="Plain format for base models, e.g. "
                             "'<|prompt|> {prompt}<|response|> {response}<|endoftext|>'.", show_default=False)] = None,
    masking: Annotated[str | None, typer.Option("--masking", help="assistant (default), last or all.",
                                                show_default=False)] = None,
    control_tokens: Annotated[str | None, typer.Option("--control-tokens", help="sanitize (default), reject or "
                              "allow: text that spells a control token.", show_default=False)] = None,
    train_eot: Annotated[bool | None, typer.Option("--train-eot/--no-train-eot", help="Train end-of-turn tokens "
                         "(default on).", show_default=False)] = None,
    train_reasoning: Annotated[bool | None, typer.Option("--train-reasoning/--no-train-reasoning", help="Train "
                               "think text (default on).", show_default=False)] = None,
    template_kwargs: Annotated[str | None, typer.Option("--template-kwargs", help="JSON object of template "
                               "variables, e.g. '{\"enable_thinking\": false}'.", show_default=False)] = None,
    date: Annotated[str | None, typer.Option("--date", help="Fixed date for templates that print today's date.",
                                             show_default=False)] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per row (default 2048).",
                                                   show_default=False)] = None,
    too_long: Annotated[str | None, typer.Option("--too-long", help="reject (default) or truncate.",
                                                 show_default=False)] = None,
    pack: Annotated[bool | None, typer.Option("--pack/--no-pack", help="Pack documents into rows (default) or "
                                              "write one per row.", show_default=False)] = None,
    pack_window: Annotated[int | None, typer.Option("--pack-window", help="Documents planned together "
                           "(default 32768; bounds memory).", show_default=False)] = None,
    shuffle: Annotated[bool | None, typer.Option("--shuffle/--no-shuffle", help="Shuffle rows (default on).",
                                                 show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the row shuffle (default 0).",
                                             show_default=False)] = None,
    rows_per_shard: Annotated[int | None, typer.Option("--rows-per-shard", help="Most rows per shard "
                              "(default 8192).", show_default=False)] = None,
    max_reject_fraction: Annotated[float | None, typer.Option("--max-reject-fraction", help="Exit 1 above this "
                                   "fraction of rejects (default 0.01); everything is still written.",
                                   show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Processes that render and tokenize "
                       "(default 1).", show_default=False)] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="local (default) or ray: Ray Data on a Ray cluster "
                      "(pip install 'sftdata[ray]'); same output bytes.", show_default=False)] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to join with --engine ray "
                           "(default: start a local Ray).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in OUT.incomplete/.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing OUT.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout; no table.")] = False,
) -> None:
    """Render, tokenize, mask, pack and write training shards, with a manifest and every reject."""
    from rich.console import Console

    from sftdata.config import resolve_config
    from sftdata.errors import ConfigError, SftdataError
    from sftdata.prepare import prepare as run_prepare

    err = Console(stderr=True)
    start = time.perf_counter()
    try:
        kwargs: Any = None
        if template_kwargs is not None:
            try:
                kwargs = json.loads(template_kwargs)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--template-kwargs is not valid JSON ({exc}); pass an object such as "
                                  "'{\"enable_thinking\": false}'") from None
        overrides = {
            "tokenizer": tokenizer, "format": format, "column_map": _column_map(column_map), "split": split,
            "oasst_paths": oasst_paths, "max_length": max_length, "too_long": too_long, "pack": pack,
            "pack_window": pack_window, "shuffle": shuffle, "seed": seed, "rows_per_shard": rows_per_shard,
            "max_reject_fraction": max_reject_fraction, "workers": workers, "engine": engine,
            "ray_address": ray_address,
            "mask": {"masking": masking, "control_tokens": control_tokens, "train_eot": train_eot,
                     "train_reasoning": train_reasoning, "template_kwargs": kwargs, "date": date,
                     "chat_template": chat_template, "prompt_format": prompt_format},
        }
        cfg = resolve_config(config, overrides)
        with _Bar(err, enabled=not as_json) as bar:
            result = run_prepare(inputs, out, cfg, resume=resume, overwrite=overwrite, on_progress=bar.update)
    except SftdataError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
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


def _column_map(values: list[str] | None) -> dict[str, str] | None:
    """`["a=b,c=d", "e=f"]` -> {"a": "b", "c": "d", "e": "f"}."""
    from sftdata.errors import ConfigError

    if not values:
        return None
    mapping = {}
    for item in (part for value in values for part in value.split(",") if part.strip()):
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--column-map {item!r}: expected OLD=NEW, e.g. --column-map context=input")
        mapping[old.strip()] = new.strip()
    return mapping


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
