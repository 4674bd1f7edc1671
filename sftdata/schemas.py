"""JSON Schemas of the public models, exported to `schemas/` and kept equal to the models by a test.

Models that belong to later stages (pipeline config, manifest, train config) are included when their
modules exist, so the export grows with the package without a list to keep in sync by hand. Files
are `NAME.schema.json`, pretty-printed with a trailing newline, so that a diff of `schemas/` reads
like a diff of the models.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

SCHEMA_SOURCES = {
    "conversation": ("sftdata.records", "Conversation"),
    "reject": ("sftdata.rejects", "RejectLine"),
    "pipeline-config": ("sftdata.config", "PipelineConfig"),
    "manifest": ("sftdata.manifest", "Manifest"),
    "train-config": ("sftdata.train.config", "TrainConfig"),
}
SUFFIX = ".schema.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """`{name: JSON Schema}` for every model whose module is present."""
    out: dict[str, dict[str, Any]] = {}
    for name, (module_name, attr) in SCHEMA_SOURCES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and module_name.startswith(err.name):
                continue
            raise
        model = getattr(module, attr, None)
        if model is not None:
            out[name] = model.model_json_schema()
    return out


def schema_text(schema: dict[str, Any]) -> str:
    """The file text of one schema (stable formatting)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(out: str | Path) -> list[Path]:
    """Write every schema to `out/NAME.schema.json`, removing stale `*.schema.json` files; returns the paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for stale in folder.glob(f"*{SUFFIX}"):
        if stale.name[: -len(SUFFIX)] not in schemas:
            stale.unlink()
    paths = []
    for name, schema in schemas.items():
        path = folder / f"{name}{SUFFIX}"
        path.write_text(schema_text(schema), encoding="utf-8")
        paths.append(path)
    return paths
