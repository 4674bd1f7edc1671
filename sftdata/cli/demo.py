"""`sftdata demo`: prepare the bundled example data with the bundled tokenizer, then audit it.

Needs nothing but the installed package: `sftdata/data/example.jsonl` (about 190 conversations, three
deliberately broken) and `sftdata/data/tokenizer/` (a small BPE with a ChatML template). The output goes
to `./out/demo` (replaced on each run); the audit report, when the `audit` command is installed, to
`./out/demo-report.html`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

DATA = Path(__file__).resolve().parents[1] / "data"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Where to write the prepared demo folder.")] = "out/demo",
) -> None:
    """Prepare the bundled example data into ./out/demo, audit it, and print a short summary."""
    from rich.console import Console

    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    console = Console(stderr=True)
    example, tokenizer = DATA / "example.jsonl", DATA / "tokenizer"
    if not example.is_file() or not (tokenizer / "tokenizer.json").is_file():
        console.print(f"[red]error:[/] the bundled example data is missing under {DATA}; reinstall sftdata")
        raise typer.Exit(2)
    # the example holds three broken rows on purpose (1.6%): allow them, they are listed in rejects.jsonl
    config = resolve_config(None, {"tokenizer": str(tokenizer), "max_length": 1024, "max_reject_fraction": 0.05})
    start = time.perf_counter()
    result = prepare([str(example)], out, config, overwrite=True)
    m = result.manifest
    console.print(f"[bold]prepared[/] {m.counts.rows_in} records -> {m.counts.docs_written} documents in "
                  f"{m.packing.rows} rows of {m.packing.capacity} tokens (packing {m.packing.efficiency:.3f}), "
                  f"{m.counts.rejected} rejected ({', '.join(f'{k} {v}' for k, v in sorted(m.counts.reasons.items()))})"
                  f" -> {result.out}/ in {time.perf_counter() - start:.1f} s")
    audit_rc = 0
    try:
        import sftdata.cli.audit  # noqa: F401
    except ModuleNotFoundError:
        console.print("audit: not installed in this build; skipped")
    else:
        report = Path(out).with_name(Path(out).name + "-report.html")
        audit_rc = subprocess.call([sys.executable, "-m", "sftdata", "audit", str(result.out), "--report",
                                    str(report)])
        console.print(f"audit: {'passed' if audit_rc == 0 else f'FAILED (exit {audit_rc})'}; report {report}")
    console.print(f"next: sftdata inspect {result.out} --row 0    |    rejects: {result.out}/rejects.jsonl")
    raise typer.Exit(max(result.exit_code, 1 if audit_rc else 0))
