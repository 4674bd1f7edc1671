"""`sftdata schemas`: export the JSON Schemas of the records, rejects, pipeline config and manifest."""

from __future__ import annotations

from typing import Annotated

import typer

EPILOG = """\
Example:

  sftdata schemas --out schemas/
"""


def register(app: typer.Typer) -> None:
    app.command("schemas", epilog=EPILOG)(schemas)


def schemas(
    out: Annotated[str, typer.Option("--out", "-o", help="Folder to write NAME.schema.json files into.")] = "schemas",
) -> None:
    """Write the JSON Schema of every public model (kept equal to the models by a test)."""
    from rich.console import Console

    from sftdata.schemas import write_schemas

    for path in write_schemas(out):
        Console(stderr=True).print(f"wrote {path}", highlight=False)
