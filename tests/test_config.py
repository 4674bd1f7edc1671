"""The pipeline config: closed, every error at once with the file and key, flags over YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from sftdata.config import PipelineConfig, TooLong, resolve_config
from sftdata.errors import ConfigError


def test_defaults_and_output_options_leave_run_only_fields_out() -> None:
    c = PipelineConfig()
    assert (c.max_length, c.too_long, c.pack, c.max_reject_fraction, c.workers) == (2048, TooLong.reject, True,
                                                                                    0.01, 1)
    opts = c.output_options()
    assert "workers" not in opts and "chunk_size" not in opts and "tokenizer" not in opts
    assert opts["mask"]["masking"] == "assistant"


def test_yaml_then_flags_override(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("format: alpaca\nmax_length: 1024\nmask:\n  masking: last\n  train_eot: false\n")
    c = resolve_config(path, {"max_length": 512, "mask": {"masking": None, "control_tokens": "reject"},
                              "seed": None})
    assert (c.format, c.max_length, c.seed) == ("alpaca", 512, 0)
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
