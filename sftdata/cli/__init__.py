"""The `sftdata` command line: a thin layer over the library, one module per command.

Each `sftdata/cli/<command>.py` defines `register(app)`; heavy libraries (transformers, torch) are
imported inside the command functions so that `sftdata --help` is instant.
Exit codes: 0 success, 1 the data failed a check (reject fraction, audit), 2 bad arguments or
unreadable input. Errors are handled once, here (`_Commands.invoke`): a command raises
`SftdataError` and the message goes to stderr with the error's `exit_code`. Options that mirror a
config model are derived from it (`sftdata.cli.flags`).
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from sftdata.errors import SftdataError

_skip_teardown = False


def skip_teardown() -> None:
    """Ask `main` to end this process as soon as the command has returned, without the interpreter's teardown.

    For a command that loaded transformers and torch and holds large arrays (the audit), tearing the
    interpreter down takes ~0.8 s after the report is out, about 8% of its run. `main` still flushes the
    output and runs every `atexit` handler (logging, multiprocessing). Only the console-script entry point
    honours it: `CliRunner` tests and library callers never see a process exit.
    """
    global _skip_teardown
    _skip_teardown = True


COMMANDS = ("demo", "validate", "inspect", "prepare", "audit", "train", "schemas")


class _Commands(TyperGroup):
    """The `sftdata` group: the one place where a library error becomes a message and an exit code.

    Commands raise `SftdataError` (bad config, unreadable input) and never catch it themselves. The
    handler sits in the group's `invoke` rather than around `app()` in `main`, so that it also holds
    when the app is invoked directly (tests call `CliRunner().invoke(app, ...)`).
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SftdataError as err:
            Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None


app = typer.Typer(
    name="sftdata",
    cls=_Commands,
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
    """Console-script entry point; errors are turned into messages and exit codes by `_Commands.invoke`."""
    global _skip_teardown
    _skip_teardown = False  # asked for by this run's command only (an earlier in-process run may have set it)
    try:
        app()
    except SystemExit as done:
        if not _skip_teardown or not (done.code is None or isinstance(done.code, int)):
            raise  # a message as the exit code: Python's own exit prints it
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(done.code or 0)


if __name__ == "__main__":
    main()
