"""The three examples of the README section "Train with TRL / transformers / PyTorch" run as written.

Run in a temporary folder that holds what they name: `out/train` (packed) and `out/heldout` (`--no-pack`)
prepared from the bundled example, and a tiny random Llama with the bundled tokenizer saved under the
name `HuggingFaceTB/SmolLM2-135M-Instruct` (a local folder wins over the hub). The only edits: 1,000
steps become 2, and the trainers get `use_cpu=True` (TRL's default `bf16=True` refuses a CPU otherwise).
"""

from __future__ import annotations

import math
import re

import pytest
from conftest import ROOT
from hf_support import prepare_example, tiny_model, tokenizer

pytest.importorskip("trl", reason="trl is in the dev extra (pip install -e '.[dev]')")

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def examples() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Train with TRL / transformers / PyTorch", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    prepare_example(root / "out" / "train")
    prepare_example(root / "out" / "heldout", pack=False)
    tiny_model().save_pretrained(root / MODEL)
    tokenizer().save_pretrained(root / MODEL)
    return root


def run(code: str) -> dict:
    assert "max_steps=1000" in code or "range(1000)" in code
    namespace: dict = {}
    exec(compile(code.replace("max_steps=1000", "max_steps=2, use_cpu=True").replace("range(1000)", "range(2)"),  # noqa: S102
                 "README.md", "exec"), namespace)
    return namespace


def test_readme_has_three_examples_of_about_ten_lines():
    blocks = examples()
    assert len(blocks) == 3
    assert all(len(b.strip().splitlines()) <= 14 for b in blocks)


@pytest.mark.slow  # three trainers of a tiny model, 2 steps each: ~30 s idle, ~2 min on shared cores
def test_readme_examples_run(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    trl_example, trainer_example, plain_example = examples()
    ns = run(trl_example)
    assert ns["trainer"].state.global_step == 2
    assert math.isfinite(ns["trainer"].evaluate()["eval_loss"])  # the --no-pack held-out folder
    ns = run(trainer_example)
    assert ns["trainer"].state.global_step == 2
    assert all(math.isfinite(x["loss"]) for x in ns["trainer"].state.log_history if "loss" in x)
    ns = run(plain_example)
    assert ns["step"] == 1
