"""Helpers for the trainer tests (shards written with pyarrow directly), and tests of the pure data layer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sftdata.manifest import SHARD_SCHEMA, Counts, Manifest, Packing, ShardInfo, TokenizerInfo, shard_name
from sftdata.tokens import IGNORE_INDEX

Doc = tuple[np.ndarray, np.ndarray]  # (input_ids, labels), labels aligned and unshifted


def random_doc(rng: np.random.Generator, vocab: int, length: int, prompt: int) -> Doc:
    """A document whose first `prompt` tokens are not supervised (so the first label is always -100)."""
    ids = rng.integers(3, vocab, size=length).astype(np.int32)
    labels = ids.copy()
    labels[:max(1, prompt)] = IGNORE_INDEX
    return ids, labels


def write_shards(folder: Path, rows: list[list[Doc]], capacity: int, *, tokenizer: str = "",
                 per_shard: int = 0) -> Path:
    """Write `rows` (each a list of documents) as prepared shards + manifest, the way `prepare` lays them out."""
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = per_shard or len(rows)
    chunks = [rows[i:i + per_shard] for i in range(0, len(rows), per_shard)]
    infos = []
    for k, chunk in enumerate(chunks):
        table = pa.table({
            "input_ids": [np.concatenate([d[0] for d in row]) for row in chunk],
            "labels": [np.concatenate([d[1] for d in row]) for row in chunk],
            "doc_lens": [[len(d[0]) for d in row] for row in chunk],
            "doc_ids": [[f"r{k}-{i}-{j}" for j in range(len(row))] for i, row in enumerate(chunk)],
        }, schema=SHARD_SCHEMA)
        name = shard_name(k, len(chunks))
        with pa.ipc.new_stream(str(folder / name), table.schema) as w:
            w.write_table(table)
        tokens = sum(len(d[0]) for row in chunk for d in row)
        sup = sum(int((d[1] != IGNORE_INDEX).sum()) for row in chunk for d in row)
        infos.append(ShardInfo(file=name, sha256=hashlib.sha256((folder / name).read_bytes()).hexdigest(),
                               rows=len(chunk), documents=sum(map(len, chunk)), tokens=tokens, supervised_tokens=sup))
    tokens = sum(i.tokens for i in infos)
    docs = sum(i.documents for i in infos)
    manifest = Manifest(
        sftdata_version="test", fingerprint="test", inputs=[], tokenizer=TokenizerInfo(path=tokenizer, files={}),
        chat_template=None, options={}, shards=infos, counts=Counts(rows_in=docs, docs_written=docs, rejected=0),
        packing=Packing(packed=True, capacity=capacity, rows=len(rows), tokens=tokens,
                        efficiency=tokens / (len(rows) * capacity), lower_bound_rows=-(-tokens // capacity),
                        lower_bound_efficiency=0.0, seed=0),
        max_reject_fraction=0.0, over_reject_limit=False)
    (folder / "manifest.json").write_text(manifest.to_json_text())
    return folder


def random_rows(seed: int, n_rows: int, vocab: int = 300, docs_per_row: tuple[int, int] = (1, 4),
                doc_len: tuple[int, int] = (4, 24)) -> list[list[Doc]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_rows):
        docs = []
        for _ in range(int(rng.integers(*docs_per_row, endpoint=True))):
            n = int(rng.integers(*doc_len, endpoint=True))
            docs.append(random_doc(rng, vocab, n, int(rng.integers(1, n))))
        rows.append(docs)
    return rows


# -- tests of the pure data layer ------------------------------------------------------------

def test_shardset_reads_rows_across_shards(tmp_path):
    from sftdata.train.data import ShardSet

    rows = random_rows(0, 7)
    write_shards(tmp_path / "s", rows, 128, per_shard=3)
    shards = ShardSet(tmp_path / "s")
    assert len(shards) == 7 and len(list((tmp_path / "s").glob("shard-*"))) == 3
    for i, docs in enumerate(rows):
        row = shards[i]
        assert row.input_ids.tolist() == np.concatenate([d[0] for d in docs]).tolist()
        assert row.labels.tolist() == np.concatenate([d[1] for d in docs]).tolist()
        assert row.doc_lens.tolist() == [len(d[0]) for d in docs]


def test_shardset_names_missing_manifest(tmp_path):
    from sftdata.errors import InputError
    from sftdata.train.data import ShardSet

    with pytest.raises(InputError, match=r"no manifest.json.*sftdata prepare"):
        ShardSet(tmp_path)


def test_collate_restarts_positions_and_shifts_labels_once():
    from sftdata.train.data import Row, collate

    labels = np.array([-100, 11, 12, -100, -100, 22], dtype=np.int32)
    row = Row(np.array([10, 11, 12, 20, 21, 22], dtype=np.int32), labels, np.array([3, 3], dtype=np.int32))
    short = Row(np.array([30, 31], dtype=np.int32), np.array([-100, 31], dtype=np.int32), np.array([2], dtype=np.int32))
    b = collate([row, short])
    assert b.position_ids.tolist() == [[0, 1, 2, 0, 1, 2], [0, 1, 0, 1, 2, 3]]
    assert b.segments.tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    # position i predicts token i+1; the last token of doc 1 does not predict doc 2's first token
    assert b.targets.tolist() == [[11, 12, -100, -100, 22, -100], [31, -100, -100, -100, -100, -100]]
    assert b.doc_lens == [[3, 3], [2]] and b.tokens == 8 and b.supervised == 4


def test_step_rows_partition_each_epoch_across_ranks_and_micro_steps():
    from sftdata.train.data import step_rows

    n, kw = 10, {"micro_batch_size": 1, "grad_accum": 2, "seed": 3, "shuffle": True}
    for step in (0, 1):  # 2 steps of 2 ranks x 4 rows use 8 distinct rows, the remainder of 2 is dropped
        one = [r for m in step_rows(n, step, world=1, rank=0, **{**kw, "grad_accum": 4}) for r in m]
        two = [r for rank in (0, 1) for m in step_rows(n, step, world=2, rank=rank, **kw) for r in m]
        assert one == two and len(set(two)) == 4
    epoch0 = {r for s in (0, 1) for rank in (0, 1) for m in step_rows(n, s, world=2, rank=rank, **kw) for r in m}
    assert len(epoch0) == 8
    assert step_rows(n, 2, world=2, rank=0, **kw) != step_rows(n, 0, world=2, rank=0, **kw)  # epoch 1 reshuffled


def prepare_alpaca(out: Path, tokenizer_dir: Path, data: Path, max_length: int, *, rows: slice = slice(None)) -> Path:
    """alpaca_en_demo -> packed shards at `max_length`: `sftdata prepare` when its engine is installed,
    else a small stand-in here (template prefix renders, first-fit-decreasing packing)."""
    import json

    records = json.loads(data.read_text(encoding="utf-8"))[rows]
    try:
        from sftdata.chat import engine  # noqa: F401
        from sftdata.config import resolve_config
        from sftdata.prepare import prepare
    except ImportError:
        pass
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.with_suffix(".json")
        src.write_text(json.dumps(records), encoding="utf-8")
        prepare([str(src)], out, resolve_config(None, {"tokenizer": str(tokenizer_dir), "max_length": max_length}))
        return out
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = []
    for r in records:
        user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": r["output"]}]
        prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=True)["input_ids"]
        full = tok.apply_chat_template(msgs, tokenize=True)["input_ids"]
        if full[:len(prompt)] != prompt or len(full) > max_length:
            continue
        ids = np.asarray(full, dtype=np.int32)
        labels = ids.copy()
        labels[:len(prompt)] = IGNORE_INDEX
        docs.append((ids, labels))
    bins: list[list[Doc]] = []
    for d in sorted(docs, key=lambda d: -len(d[0])):
        for b in bins:
            if sum(len(x[0]) for x in b) + len(d[0]) <= max_length:
                b.append(d)
                break
        else:
            bins.append([d])
    return write_shards(out, bins, max_length, tokenizer=str(tokenizer_dir))


def test_import_sftdata_and_its_train_config_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, sftdata; sftdata.TrainConfig; import sftdata.train.config; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "from sftdata.train import train; assert callable(train)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
