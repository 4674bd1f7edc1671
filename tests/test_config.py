"""The pipeline config: closed, every error at once with the file and key, flags over YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftdata.config import PipelineConfig, TooLong, resolve_config
from sftdata.errors import ConfigError


def test_defaults_and_output_options_leave_run_only_fields_out() -> None:
    c = PipelineConfig()
    assert (c.max_length, c.too_long, c.pack, c.max_reject_fraction, c.workers) == (2048, TooLong.reject, True,
                                                                                    0.01, "auto")
    opts = c.output_options()
    assert "workers" not in opts and "chunk_size" not in opts and "tokenizer" not in opts
    assert opts["mask"]["masking"] == "assistant"


def test_yaml_then_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("format: alpaca\nmax_length: 1024\nmask:\n  masking: last\n  train_eot: false\n")
    c = resolve_config(path, {"max_length": 512, "mask": {"masking": None, "control_tokens": "reject"},
                              "seed": None})
    assert (c.read.format, c.max_length, c.seed) == ("alpaca", 512, 0)
    assert (c.mask.masking.value, c.mask.train_eot, c.mask.control_tokens.value) == ("last", False, "reject")


def test_every_error_is_reported_at_once_with_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("max_lenght: 10\ntoo_long: chop\nmask:\n  masking: some\n  colour: red\nworkers: 0\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*5 problem") as err:
        resolve_config(path)
    text = str(err.value)
    for key in ("max_lenght: unknown key", "too_long: Input should be 'reject' or 'truncate'", "mask.masking",
                "mask.colour: unknown key", "workers: Input should be greater than or equal to 1"):
        assert key in text


def test_unreadable_or_malformed_yaml_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the pipeline config"):
        resolve_config(tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="x.yaml: not valid YAML"):
        resolve_config(tmp_path / "x.yaml")
    (tmp_path / "l.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        resolve_config(tmp_path / "l.yaml")


def test_read_options_are_one_typed_set_and_the_old_top_level_keys_still_work(tmp_path: Path) -> None:
    from sftdata.config import ReadOptions
    from sftdata.readers import DEFAULT_MAX_ROW_BYTES

    assert ReadOptions().max_row_bytes == DEFAULT_MAX_ROW_BYTES == 32 * 2**20
    old = tmp_path / "old.yaml"
    old.write_text("format: oasst\noasst_paths: top\ncolumn_map: {context: input}\nmax_length: 64\n")
    new = tmp_path / "new.yaml"
    new.write_text("read:\n  format: oasst\n  oasst_paths: top\n  column_map: {context: input}\nmax_length: 64\n")
    a, b = resolve_config(old), resolve_config(new)
    assert a == b
    assert a.read == ReadOptions(format="oasst", oasst_paths="top", column_map={"context": "input"})
    assert a.output_options()["read"]["oasst_paths"] == "top"
    # a flag (given by its leaf name, as the CLI does) overrides the YAML's nested `read:` block, key by key
    c = resolve_config(new, {"oasst_paths": "all", "format": None, "read": {"max_chars": 10}})
    assert (c.read.format, c.read.oasst_paths, c.read.max_chars) == ("oasst", "all", 10)
    assert c.read.column_map == {"context": "input"}


def test_read_options_errors_name_the_nested_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("oasst_paths: some\nread:\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"2 problem") as err:
        resolve_config(path)
    assert "read.oasst_paths" in str(err.value) and "read.colour: unknown key" in str(err.value)
    from pydantic import ValidationError

    from sftdata.config import ReadOptions

    with pytest.raises(ValidationError, match="extra"):
        ReadOptions(spilt="train")
    assert all(f.description for f in ReadOptions.model_fields.values())
