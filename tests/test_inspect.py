"""`sftdata inspect`: a record coloured by supervision, a packed row with its documents, clear errors."""

from __future__ import annotations

import json

import pyarrow as pa
from typer.testing import CliRunner

from sftdata.cli import app

runner = CliRunner()


def _data(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Paris."}]},
            {"messages": [{"role": "user", "content": "Write a poem."}, {"role": "assistant", "content": ""}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_record_view_shows_tokens_and_counts(tmp_path, test_tokenizer):
    tok_dir = tmp_path / "tok"
    test_tokenizer.save_pretrained(tok_dir)
    result = runner.invoke(app, ["inspect", str(_data(tmp_path)), "--tokenizer", str(tok_dir), "--row", "0"])
    assert result.exit_code == 0, result.output
    assert "<|im_start|>assistant" in result.output and "Paris.<|im_end|>" in result.output
    n_trained = len(test_tokenizer("Paris.<|im_end|>")["input_ids"])
    assert f"{n_trained} trained" in result.output


def test_rejected_record_prints_reasons_and_exits_1(tmp_path, test_tokenizer):
    tok_dir = tmp_path / "tok"
    test_tokenizer.save_pretrained(tok_dir)
    result = runner.invoke(app, ["inspect", str(_data(tmp_path)), "--tokenizer", str(tok_dir), "--row", "1"])
    assert result.exit_code == 1
    assert "empty_reply" in result.output


def test_row_out_of_range_and_missing_tokenizer_are_errors(tmp_path, test_tokenizer):
    # errors are handled once, by the app: a message on stderr and exit 2 (as `sftdata` itself exits)
    result = runner.invoke(app, ["inspect", str(_data(tmp_path)), "--row", "0"])
    assert result.exit_code == 2 and "error: inspecting" in result.stderr and "needs --tokenizer" in result.stderr
    tok_dir = tmp_path / "tok"
    test_tokenizer.save_pretrained(tok_dir)
    result = runner.invoke(app, ["inspect", str(_data(tmp_path)), "--tokenizer", str(tok_dir), "--row", "9"])
    assert result.exit_code == 2 and "has 2 records; --row 9 is out of range" in result.stderr


def test_packed_row_shows_document_boundaries(tmp_path, test_tokenizer):
    tok_dir = tmp_path / "tok"
    test_tokenizer.save_pretrained(tok_dir)
    out = tmp_path / "out"
    out.mkdir()
    a = test_tokenizer("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>")["input_ids"]
    b = test_tokenizer("<|im_start|>user\nSea<|im_end|>\n<|im_start|>assistant\nThe sea.<|im_end|>")["input_ids"]
    labels = [-100] * (len(a) - 3) + a[-3:] + [-100] * (len(b) - 4) + b[-4:]
    table = pa.table({"input_ids": [a + b], "labels": [labels], "doc_lens": [[len(a), len(b)]],
                      "doc_ids": [["doc-a", "doc-b"]]})
    with pa.OSFile(str(out / "shard-00000-of-00001.arrow"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
        w.write_table(table)
    (out / "manifest.json").write_text(json.dumps({"tokenizer": {"path": str(tok_dir)}}))
    result = runner.invoke(app, ["inspect", str(out), "--row", "0"])
    assert result.exit_code == 0, result.output
    assert "document 0 doc-a" in result.output and "document 1 doc-b" in result.output
    assert "2 documents" in result.output and f"{len(a) + len(b)} tokens" in result.output
    result = runner.invoke(app, ["inspect", str(out), "--row", "5"])
    assert result.exit_code == 2 and "has 1 packed rows" in result.stderr


def test_token_pieces_are_plain_data_that_spell_the_row(test_tokenizer):
    from sftdata.chat.view import TokenPiece, token_pieces

    text_a = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n你好 🙂<|im_end|>"
    a = test_tokenizer(text_a)["input_ids"]
    b = test_tokenizer("Paris.<|im_end|>")["input_ids"]
    supervised = [False] * (len(a) - 2) + [True] * 2 + [True] * len(b)
    pieces = token_pieces(test_tokenizer, a + b, supervised, [len(a), len(b)], ["x", "y"])
    assert all(isinstance(p, TokenPiece) for p in pieces) and len(pieces) == len(a) + len(b)
    assert "".join(p.text for p in pieces) == test_tokenizer.decode(a + b)  # byte-split characters stay whole
    assert [(i, p.starts_document, p.document_id) for i, p in enumerate(pieces) if p.starts_document is not None] == [
        (0, 0, "x"), (len(a), 1, "y")]
    assert [p.supervised for p in pieces] == supervised
    assert {p.text for p in pieces if p.special} == {"<|im_start|>", "<|im_end|>"}
