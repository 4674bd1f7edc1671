"""The `sftdata` command line: a thin layer over the library, one module per command.

Each `sftdata/cli/<command>.py` defines `register(app)`; heavy libraries (transformers, torch) are
imported inside the command functions so that `sftdata --help` is instant.
Exit codes: 0 success, 1 the data failed a check (reject fraction, audit), 2 bad arguments or
unreadable input.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from sftdata.errors import SftdataError

COMMANDS = ("demo", "validate", "inspect", "prepare", "audit", "train", "schemas")

app = typer.Typer(
    name="sftdata",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Instruction data -> packed SFT shards with proven loss masks; audit them; train from them.",
)

for _name in COMMANDS:
    try:
        _module = importlib.import_module(f"sftdata.cli.{_name}")
    except ModuleNotFoundError as err:  # a command still being built must not break the others
        if err.name != f"sftdata.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Console-script entry point: library errors become a clear message and exit code 2."""
    try:
        app()
    except SftdataError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
