"""`sftdata audit` on other tools' tokenized datasets: TRL's SFT preparation, Parquet, Arrow, masks.

The TRL test builds a real dataset with TRL 1.16's `SFTTrainer` (assistant-only loss, with and
without BFD packing, a tiny random model on CPU, as `../shared/bench/trl_baseline.py` does) and
audits it. What it finds is a fact about TRL's Qwen2 training template, asserted here so a change in
TRL shows up: it trains the newline after the `assistant` header and the newline after `<|im_end|>`
(so its spans end one token past the end-of-turn token), and otherwise agrees with the audit.
"""

from __future__ import annotations

import importlib.util
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import requires_shared

from sftdata.audit import audit_dataset
from sftdata.errors import InputError

ROWS = [
    [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."}],
    [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "How can I help you today?"},
     {"role": "user", "content": "Write a poem."}, {"role": "assistant", "content": "The sea, the sea."}],
]


def _tokenized(tok):
    """(ids, assistant mask) per conversation, mask from a regex over the ChatML render."""
    import re

    out = []
    for conv in ROWS:
        text = tok.apply_chat_template(conv, tokenize=False)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [m.span(1) for m in re.finditer(r"<\|im_start\|>assistant\n(.*?<\|im_end\|>)", text, re.DOTALL)]
        mask = [int(any(a <= s < b for a, b in spans)) for s, _ in enc["offset_mapping"]]
        out.append((enc["input_ids"], mask))
    return out


@pytest.fixture
def tok_dir(tmp_path, test_tokenizer):
    path = tmp_path / "tok"
    test_tokenizer.save_pretrained(path)
    return str(path)


def test_parquet_with_assistant_masks_passes(tmp_path, test_tokenizer, tok_dir):
    docs = _tokenized(test_tokenizer)
    table = pa.table({"input_ids": [d[0] for d in docs], "assistant_masks": [d[1] for d in docs],
                      "messages": [[json.loads(json.dumps(m)) for m in conv] for conv in ROWS]})
    pq.write_table(table, tmp_path / "data.parquet")
    report = audit_dataset(tmp_path / "data.parquet", tok_dir)
    assert report.passed, [f.to_json() for f in report.findings.items]
    assert report.findings.checks["mask_match"].checked == 2  # re-derived from the messages column
    assert report.about["columns"]["data.parquet"] == "input_ids, assistant_masks"


def test_packed_with_position_ids_and_a_prompt_token_trained(tmp_path, test_tokenizer, tok_dir):
    docs = _tokenized(test_tokenizer)
    ids = docs[0][0] + docs[1][0]
    labels = [i if m else -100 for d in docs for i, m in zip(d[0], d[1], strict=True)]
    labels[2] = ids[2]  # a user-turn token of the first document
    positions = list(range(len(docs[0][0]))) + list(range(len(docs[1][0])))
    table = pa.table({"input_ids": [ids], "labels": [labels], "position_ids": [positions]})
    with pa.OSFile(str(tmp_path / "packed.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    report = audit_dataset(tmp_path / "packed.arrow", tok_dir)
    assert not report.passed
    assert report.stats["totals"]["documents"] == 2
    (f,) = [f for f in report.findings.items if f.check == "span_end_not_eot"]
    assert (f.row, f.position, f.doc_position) == (0, 2, 2)


def test_shifted_labels_are_named(tmp_path, test_tokenizer, tok_dir):
    docs = _tokenized(test_tokenizer)
    ids = docs[0][0]
    labels = [ids[i + 1] if i + 1 < len(ids) and docs[0][1][i + 1] else -100 for i in range(len(ids))]
    pq.write_table(pa.table({"input_ids": [ids], "labels": [labels]}), tmp_path / "shifted.parquet")
    report = audit_dataset(tmp_path / "shifted.parquet", tok_dir)
    assert [f.check for f in report.findings.items if f.check == "labels_shifted"] == ["labels_shifted"]


def test_missing_columns_are_clear(tmp_path, tok_dir):
    pq.write_table(pa.table({"input_ids": [[1, 2, 3]]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x.parquet: no `labels`, `assistant_masks` or `completion_mask`"):
        audit_dataset(tmp_path / "x.parquet", tok_dir)
    pq.write_table(pa.table({"text": ["hi"]}), tmp_path / "y.parquet")
    with pytest.raises(InputError, match=r"y.parquet: no `input_ids` column"):
        audit_dataset(tmp_path / "y.parquet", tok_dir)


@pytest.fixture(scope="module")
def trl_datasets(tmp_path_factory):
    """TRL 1.16 SFT preparation of 12 alpaca rows with Qwen2.5, saved with save_to_disk (packed and not)."""
    if importlib.util.find_spec("trl") is None:
        pytest.skip("trl is not installed (dev extra): the TRL interoperability test is skipped")
    from conftest import DATASETS, TOKENIZERS

    if not TOKENIZERS.is_dir():
        pytest.skip(f"{TOKENIZERS} is absent (needs ../shared/fixtures)")
    import datasets
    from datasets import Dataset
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    datasets.disable_caching()
    tok_path = str(TOKENIZERS / "qwen2.5-instruct")
    tok = AutoTokenizer.from_pretrained(tok_path)
    rows = json.loads((DATASETS / "llama_factory" / "alpaca_en_demo.json").read_text())[:12]
    ds = Dataset.from_list([{"messages": [
        {"role": "user", "content": r["instruction"] + ("\n" + r["input"] if r["input"] else "")},
        {"role": "assistant", "content": r["output"]}]} for r in rows])
    cfg = AutoConfig.for_model("qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                               num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    model = AutoModelForCausalLM.from_config(cfg)
    root = tmp_path_factory.mktemp("trl")
    out = {}
    for packing in (False, True):
        args = SFTConfig(output_dir=str(root / "run"), assistant_only_loss=True, packing=packing, max_length=1024,
                         report_to=[], use_cpu=True)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        path = root / ("packed" if packing else "unpacked")
        trainer.train_dataset.save_to_disk(str(path))
        out[packing] = path
    return tok_path, out


@requires_shared
def test_trl_unpacked_is_rederived_and_its_extra_newlines_are_located(trl_datasets):
    tok_path, paths = trl_datasets
    report = audit_dataset(paths[False], tok_path)
    checks = report.findings.checks
    for name in ("label_not_id", "doc_first_label", "doc_unsupervised", "ids_match"):
        assert checks[name].failed == 0, name
    assert checks["ids_match"].checked == 12  # every row re-rendered from TRL's kept `messages` column
    assert checks["span_end_not_eot"].failed == 12  # one reply per row, each span ends on "\n" after <|im_end|>
    span = next(f for f in report.findings.items if f.check == "span_end_not_eot")
    assert "runs past the end-of-turn token" in span.message and "<|im_end|>" in span.expected
    mask = next(f for f in report.findings.items if f.check == "mask_match")
    assert mask.row == 0 and mask.expected.startswith("not supervised (198 '\\n')")
    assert "2 token(s)" in mask.message  # the header newline and the trailing newline, nothing else


@requires_shared
def test_trl_packed_documents_come_from_seq_lengths(trl_datasets):
    tok_path, paths = trl_datasets
    report = audit_dataset(paths[True], tok_path)
    assert "seq_lengths" in next(iter(report.about["columns"].values()))
    assert report.stats["totals"]["documents"] == 12
    checks = report.findings.checks
    assert checks["doc_lens_sum"].failed == 0 and checks["doc_first_label"].failed == 0
    assert checks["span_end_not_eot"].failed == 12
    rows = report.stats["docs_per_row"]["hist"]
    assert sum(n * c for n, c in zip(rows["edges"], rows["counts"], strict=False)) == 12


def test_what_a_dataset_was_meant_to_train_is_one_closed_model_for_the_function_and_the_flags(
        tmp_path, test_tokenizer, tok_dir):
    """`audit.intent.DatasetIntent` is the one declaration: `audit_dataset` refuses a value outside it, the CLI too
    (its flags are the model's fields), the value reaches the re-derivation, and a prepared folder (whose manifest
    records what it trains) refuses the flags instead of ignoring them."""
    from typer.testing import CliRunner

    from sftdata.audit.intent import Masking
    from sftdata.chat.options import Masking as WriterMasking
    from sftdata.cli import app
    from sftdata.errors import ConfigError

    assert [m.value for m in Masking] == [m.value for m in WriterMasking]  # one vocabulary, written twice on purpose
    docs = _tokenized(test_tokenizer)  # every assistant turn trained
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"input_ids": [d[0] for d in docs], "assistant_masks": [d[1] for d in docs],
                             "messages": ROWS}), path)
    with pytest.raises(ConfigError, match=r"--masking: Input should be 'assistant', 'last' or 'all' \(got 'nope'\)"):
        audit_dataset(path, tok_dir, masking="nope")
    assert audit_dataset(path, tok_dir).passed
    meant_last = audit_dataset(path, tok_dir, masking="last")  # the two-turn row trains its first reply too
    assert meant_last.findings.checks["mask_match"].failed == 1

    runner = CliRunner()  # each field is a flag with its docstring as help: tests/test_cli_flags.py
    bad = runner.invoke(app, ["audit", str(path), "-t", tok_dir, "--masking", "nope"])
    assert bad.exit_code == 2 and "'assistant', 'last' or 'all'" in bad.output
    last = runner.invoke(app, ["audit", str(path), "-t", tok_dir, "--masking", "last", "--json"])
    assert last.exit_code == 1 and json.loads(last.stdout.splitlines()[-1])["about"]["options"]["masking"] == "last"
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "manifest.json").write_text("{}", encoding="utf-8")
    for flags in (["--masking", "last"], ["--no-train-eot"], ["--chat-template", "t.jinja"]):
        refused = runner.invoke(app, ["audit", str(prepared), *flags])
        assert refused.exit_code == 2 and "other tools' datasets only" in " ".join(refused.output.split()), flags
