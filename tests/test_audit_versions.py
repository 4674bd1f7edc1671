"""Manifest format versions: every version is read, the fixtures keep each layout, a newer one is refused.

`tests/manifests/manifest-v2.json` is the current layout (the bundled example prepared with the bundled
tokenizer); `manifest-v1.json` is the layout before read options were nested under `options.read`.
A change to the manifest's layout must bump `FORMAT_VERSION` and add a fixture: the first test fails
when the writer's keys drift from the current fixture's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sftdata
from sftdata.audit import audit_prepared
from sftdata.errors import InputError
from sftdata.manifest import FORMAT_VERSION, READ_DEFAULTS, Manifest

HERE = Path(__file__).resolve().parent / "manifests"
PACKAGE = Path(sftdata.__file__).resolve().parent


def _keys(value, prefix: str = "") -> set[str]:
    """Key paths of a manifest, with open dicts (option values, per-file hashes, counts by reason) as leaves."""
    if not isinstance(value, dict) or prefix.endswith((".files", ".reasons", "template_kwargs", "allowed_drops",
                                                       "context_drops", "column_map")):
        return {prefix}
    out = {prefix} if prefix else set()
    for key, item in value.items():
        out |= _keys(item[0] if isinstance(item, list) and item and isinstance(item[0], dict) else item,
                     f"{prefix}.{key}" if prefix else key)
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from sftdata.config import resolve_config
    from sftdata.prepare import prepare

    out = tmp_path_factory.mktemp("versions") / "out"
    config = resolve_config(None, {"tokenizer": str(PACKAGE / "data" / "tokenizer"), "max_length": 1024,
                                   "max_reject_fraction": 0.05})
    return prepare([str(PACKAGE / "data" / "example.jsonl")], out, config).out


def test_the_current_fixture_has_the_writers_layout(prepared):
    written = json.loads((prepared / "manifest.json").read_text(encoding="utf-8"))
    fixture = json.loads((HERE / f"manifest-v{FORMAT_VERSION}.json").read_text(encoding="utf-8"))
    assert written["format_version"] == fixture["format_version"] == FORMAT_VERSION
    assert _keys(written) == _keys(fixture), "the manifest layout changed: bump FORMAT_VERSION and add a fixture"


@pytest.mark.parametrize("version", [1, 2])
def test_every_version_is_read_with_its_read_options(version):
    manifest = Manifest.model_validate_json((HERE / f"manifest-v{version}.json").read_text(encoding="utf-8"))
    assert manifest.format_version == version
    assert manifest.read_options() == READ_DEFAULTS
    assert manifest.counts.rows_in == manifest.counts.docs_written - manifest.counts.split_docs + \
        manifest.counts.rejected


def test_the_audit_reads_a_version_1_folder_and_refuses_a_newer_one(prepared, tmp_path):
    import shutil

    folder = tmp_path / "v1"
    shutil.copytree(prepared, folder)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    read = manifest["options"].pop("read")
    manifest["options"].update({k: read[k] for k in ("format", "column_map", "split", "oasst_paths")})
    manifest["format_version"] = 1
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    report = audit_prepared(folder, sample=0)
    assert report.passed, [f.to_json() for f in report.findings.items if f.severity == "error"][:3]
    assert report.about["manifest_version"] == 1 and report.about["read"]["oasst_paths"] == "all"
    manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"manifest format version {FORMAT_VERSION + 1} is not one this sftdata "
                                         rf"reads \(1 to {FORMAT_VERSION}\); upgrade sftdata"):
        audit_prepared(folder, sample=0)
