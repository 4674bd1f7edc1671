"""Every schema in `schemas/` equals what the models export, and the export writes exactly those files."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from sftdata.cli import app
from sftdata.schemas import SUFFIX, json_schemas, schema_text, write_schemas

SCHEMAS = ROOT / "schemas"


def test_shipped_schemas_equal_the_models():
    exported = json_schemas()
    shipped = {p.name[: -len(SUFFIX)] for p in SCHEMAS.glob(f"*{SUFFIX}")}
    assert shipped == set(exported), "run `make schemas` (sftdata schemas --out schemas) and commit the result"
    for name, schema in exported.items():
        assert (SCHEMAS / f"{name}{SUFFIX}").read_text(encoding="utf-8") == schema_text(schema), (
            f"schemas/{name}{SUFFIX} is stale: run `make schemas`")


def test_conversation_schema_describes_the_record():
    schema = json_schemas()["conversation"]
    assert schema["required"] == ["messages"]
    assert set(schema["$defs"]["Role"]["enum"]) == {"system", "user", "assistant", "tool"}
    assert "train" in schema["$defs"]["Message"]["properties"]


def test_cli_writes_and_prunes(tmp_path):
    (tmp_path / f"old{SUFFIX}").write_text("{}")
    result = CliRunner().invoke(app, ["schemas", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} == {f"{n}{SUFFIX}" for n in json_schemas()}
    assert json.loads((tmp_path / f"conversation{SUFFIX}").read_text())["title"] == "Conversation"


@pytest.mark.parametrize("name", ["conversation", "reject"])
def test_core_schemas_always_exist(name, tmp_path):
    assert (tmp_path / f"{name}{SUFFIX}") in write_schemas(tmp_path)
