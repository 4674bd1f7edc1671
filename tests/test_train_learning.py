"""Learning happens: the plain command line trains a tiny random Llama on real data and its loss falls."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATASETS, TOKENIZERS, requires_shared
from test_train_support import prepare_alpaca
from typer.testing import CliRunner

from sftdata.cli import app


@requires_shared
@pytest.mark.slow  # 60 steps x 1,024 tokens: ~1.5 min on 2 idle cores (7 min with the CPUs shared)
def test_plain_form_lowers_the_loss_of_a_tiny_llama_on_alpaca(tmp_path):
    shards = prepare_alpaca(tmp_path / "shards", TOKENIZERS / "smollm2-135m-instruct",
                            DATASETS / "llama_factory" / "alpaca_en_demo.json", 1024)
    args = ["train", "--shards", str(shards), "--model-config", "tiny-llama", "--out", str(tmp_path / "run"),
            "--max-steps", "60", "--lr", "1e-3", "--micro-batch-size", "1", "--grad-accum", "1", "--log-every", "1",
            "--seed", "0", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["loss"] for x in lines if x["split"] == "train"]
    assert len(losses) == 60
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert first > 10.0  # ln(49152) = 10.8: a random model
    assert last < first - 2.0, (first, last)  # measured: 10.5 -> 7.6
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "final" / "tokenizer.json").is_file()
