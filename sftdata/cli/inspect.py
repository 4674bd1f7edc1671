"""`sftdata inspect`: print one conversation or one packed row with every token coloured by supervision.

A thin layer over `sftdata.chat.engine` (records) and the Arrow shards written by `prepare` (packed rows).
The view itself is `sftdata.chat.view.token_text`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EPILOG = """\
Examples:

  sftdata inspect data/alpaca.json --tokenizer Qwen/Qwen2.5-0.5B-Instruct --row 3

  sftdata inspect chats.jsonl --tokenizer ./tok --chat-template my_template.jinja --masking last

  sftdata inspect base.jsonl --tokenizer ./tok --prompt-format '<|prompt|> {prompt}<|response|> {response}<|endoftext|>'

  sftdata inspect out/ --row 0          (a packed row of prepared shards; document boundaries marked)
"""


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog=EPILOG, no_args_is_help=True)(inspect)


def inspect(
    input: Annotated[str, typer.Argument(help="A data file / Hugging Face dataset, or a folder of prepared shards.",
                                         show_default=False)],
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", "-t", help="Tokenizer folder or hub id (for a "
                         "shard folder: defaults to the one in its manifest).", show_default=False)] = None,
    row: Annotated[int, typer.Option("--row", "-n", min=0, help="0-based record (data) or packed row (shards).")] = 0,
    format: Annotated[str, typer.Option("--format", "-f", help="auto, alpaca, sharegpt, messages, "
                                        "prompt_completion or oasst.")] = "auto",
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="Jinja file overriding the "
                             "tokenizer's chat template.", show_default=False)] = None,
    prompt_format: Annotated[str | None, typer.Option("--prompt-format", help="Plain format for base models, with "
                             "{prompt} and {response}.", show_default=False)] = None,
    masking: Annotated[str, typer.Option("--masking", help="assistant, last or all.")] = "assistant",
) -> None:
    """Show the tokens of one record (or packed row), coloured by whether they are in the loss."""
    from rich.console import Console

    console = Console(highlight=False)
    if Path(input).is_dir():
        _inspect_shards(console, Path(input), row, tokenizer)
    else:
        _inspect_record(console, input, row, format, tokenizer, chat_template, prompt_format, masking)


def _inspect_record(console, source: str, row: int, fmt: str, tokenizer: str | None, chat_template: str | None,
                    prompt_format: str | None, masking: str) -> None:
    from pydantic import ValidationError

    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.view import legend, token_text
    from sftdata.errors import ConfigError
    from sftdata.readers import read_rows
    from sftdata.records import Record
    from sftdata.validate import to_records

    if tokenizer is None:
        raise ConfigError(f"inspecting {source} needs --tokenizer (a folder or hub id)")
    try:
        options = MaskOptions(masking=masking, chat_template=chat_template, prompt_format=prompt_format)
    except ValidationError as err:
        raise ConfigError(f"bad option: {err.errors()[0]['msg']} (--masking is assistant, last or all)") from None
    count = 0
    item = None
    for candidate in to_records(read_rows(source), fmt):
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
    enc = ChatEncoder.load(tokenizer, options)
    [result] = enc.encode_batch([item.conversation])
    if isinstance(result, list):
        console.print("[bold red]rejected by the mask engine:[/]")
        for p in result:
            console.print(f"  {p.code.value}: {p.message}")
        raise typer.Exit(1)
    console.print(token_text(enc.tokenizer, result.input_ids.tolist(), result.supervised.tolist()))
    console.print()
    console.print(legend())
    console.print(f"{len(result)} tokens, {result.n_supervised} trained; template: {enc.source.origin}")


def _inspect_shards(console, folder: Path, row: int, tokenizer: str | None) -> None:
    import json

    import pyarrow as pa
    from transformers import AutoTokenizer

    from sftdata.chat.view import legend, token_text
    from sftdata.errors import ConfigError, InputError
    from sftdata.tokens import IGNORE_INDEX

    shards = sorted(folder.glob("shard-*.arrow"))
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
        with pa.OSFile(str(shard), "rb") as f:
            table = pa.ipc.open_stream(f).read_all()
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
    console.print(token_text(tok, ids, supervised, doc_lens, [str(d) for d in doc_ids] if doc_ids else None))
    console.print()
    console.print(legend())
