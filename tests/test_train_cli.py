"""`sftdata train --config train.yaml` with flags that override it; errors exit 2 with the key named."""

from __future__ import annotations

import json

from test_train_support import random_rows, write_shards
from typer.testing import CliRunner

from sftdata.cli import app


def test_config_file_and_flag_override(tmp_path):
    shards = write_shards(tmp_path / "s", random_rows(0, 6), 128)
    (tmp_path / "train.yaml").write_text(
        f"shards: {shards}\nout: {tmp_path / 'run'}\nmodel_from_config: tiny-llama\nmax_steps: 5\n"
        "lr: 1.0e-3\nlog_every: 1\nsave_final: false\nprogress: false\n")
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "train.yaml"), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and all(x["split"] == "train" for x in lines)
    assert "2 steps" in result.output and "sdpa attention" in result.output


def test_bad_config_exits_2_naming_the_key(tmp_path, monkeypatch, capsys):
    import sys

    import pytest

    from sftdata.cli import main

    (tmp_path / "train.yaml").write_text("shards: s\nout: o\nmodel: m\nbatch_size: 8\n")
    monkeypatch.setattr(sys, "argv", ["sftdata", "train", "--config", str(tmp_path / "train.yaml")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "batch_size: unknown key" in err and "micro_batch_size" in err
