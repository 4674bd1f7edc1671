"""`sftdata inspect`: print one conversation or one packed row with every token coloured by supervision.

A thin layer over `sftdata.chat.engine` (records) and the Arrow shards written by `prepare` (packed rows,
read with `sftdata.shards.read_shard`). The tokens come from `sftdata.chat.view.token_pieces` (plain
data); `sftdata.cli.colors` colours them. The read and mask options are `PipelineConfig`'s, derived by
`sftdata.cli.flags`, so a record is encoded exactly as `prepare` would with the same flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sftdata.cli.flags import model_flags, overrides, with_flags
from sftdata.config import PipelineConfig

EPILOG = """\
Examples:

  sftdata inspect data/alpaca.json --tokenizer Qwen/Qwen2.5-0.5B-Instruct --row 3

  sftdata inspect chats.jsonl --tokenizer ./tok --chat-template my_template.jinja --masking last

  sftdata inspect base.jsonl --tokenizer ./tok --prompt-format '<|prompt|> {prompt}<|response|> {response}<|endoftext|>'

  sftdata inspect out/ --row 0          (a packed row of prepared shards; document boundaries marked)
"""


FLAGS = [f for f in model_flags(PipelineConfig, short={"format": "-f"}) if f.path[0] in ("read", "mask")]
"""The read and mask options of `PipelineConfig` (`sftdata.cli.flags`): a record is shown as `prepare`
would encode it with the same flags."""

PANELS = {"read": "Reading options (read:)", "mask": "Masking options (mask:)"}


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog=EPILOG, no_args_is_help=True)(inspect)


@with_flags(FLAGS, PANELS)
def inspect(
    input: Annotated[str, typer.Argument(help="A data file / Hugging Face dataset, or a folder of prepared shards.",
                                         show_default=False)],
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", "-t", help="Tokenizer folder or hub id (for a "
                         "shard folder: defaults to the one in its manifest).", show_default=False)] = None,
    row: Annotated[int, typer.Option("--row", "-n", min=0, help="0-based record (data) or packed row (shards).")] = 0,
    **values: Any,
) -> None:
    """Show the tokens of one record (or packed row), coloured by whether they are in the loss."""
    from rich.console import Console

    console = Console(highlight=False)
    if Path(input).is_dir():
        _inspect_shards(console, Path(input), row, tokenizer)
    else:
        from sftdata.config import resolve_config

        _inspect_record(console, input, row, tokenizer, resolve_config(None, overrides(FLAGS, values)))


def _inspect_record(console: Any, source: str, row: int, tokenizer: str | None, cfg: PipelineConfig) -> None:
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.view import token_pieces
    from sftdata.cli.colors import colored, legend
    from sftdata.errors import ConfigError
    from sftdata.records import Record
    from sftdata.validate import read_inputs, validate_records

    if tokenizer is None:
        raise ConfigError(f"inspecting {source} needs --tokenizer (a folder or hub id)")
    count = 0
    item = None
    for candidate in validate_records(read_inputs([source], cfg.read), cfg.read):
        if count == row:
            item = candidate
            break
        count += 1
    if item is None:
        raise ConfigError(f"{source} has {count} records; --row {row} is out of range (rows count from 0)")
    console.print(f"[bold]{source}[/] record {row} (source row {item.index})")
    if not isinstance(item, Record):
        console.print("[bold red]rejected while reading:[/]")
        for p in item.problems:
            console.print(f"  {p.code.value}: {p.message} ({p.path})")
        raise typer.Exit(1)
    enc = ChatEncoder.load(tokenizer, cfg.mask)
    [result] = enc.encode_batch([item.conversation])
    if isinstance(result, list):
        console.print("[bold red]rejected by the mask engine:[/]")
        for p in result:
            console.print(f"  {p.code.value}: {p.message}")
        raise typer.Exit(1)
    from sftdata.tokens import documents_of

    for doc in documents_of(result):  # a record may yield several documents: its own, then `ID#K` ones
        if doc.key is not None:
            console.print(f"[bold magenta]── document #{doc.key} (assistant turn {doc.key} alone) ──[/]")
        console.print(colored(token_pieces(enc.tokenizer, doc.input_ids.tolist(), doc.supervised.tolist())))
        console.print()
        console.print(f"{len(doc)} tokens, {doc.n_supervised} trained")
    console.print(legend())
    console.print(f"template: {enc.source.origin}")


def _inspect_shards(console: Any, folder: Path, row: int, tokenizer: str | None) -> None:
    import json

    from transformers import AutoTokenizer

    from sftdata.chat.view import token_pieces
    from sftdata.cli.colors import colored, legend
    from sftdata.errors import ConfigError, InputError
    from sftdata.shards import read_shard, shard_paths
    from sftdata.tokens import IGNORE_INDEX

    shards = shard_paths(folder)
    if not shards:
        raise InputError(f"{folder} holds no shard-*.arrow files; is it the output folder of `sftdata prepare`?")
    if tokenizer is None:
        manifest = folder / "manifest.json"
        try:
            tokenizer = json.loads(manifest.read_text())["tokenizer"]["path"]
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"cannot read the tokenizer path from {manifest} ({err}); pass --tokenizer") from None
    seen = 0
    for shard in shards:
        table = read_shard(shard)
        if row < seen + table.num_rows:
            rec = table.slice(row - seen, 1).to_pylist()[0]
            break
        seen += table.num_rows
    else:
        raise ConfigError(f"{folder} has {seen} packed rows; --row {row} is out of range")
    tok = AutoTokenizer.from_pretrained(tokenizer)
    ids, labels = rec["input_ids"], rec["labels"]
    supervised = [lab != IGNORE_INDEX for lab in labels]
    doc_lens = rec.get("doc_lens")
    doc_ids = rec.get("doc_ids")
    console.print(f"[bold]{folder}[/] packed row {row}: {len(ids)} tokens, {len(doc_lens or [])} documents, "
                  f"{sum(supervised)} trained")
    pieces = token_pieces(tok, ids, supervised, doc_lens, [str(d) for d in doc_ids] if doc_ids else None)
    console.print(colored(pieces))
    console.print()
    console.print(legend())
