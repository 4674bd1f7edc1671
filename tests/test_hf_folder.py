"""`sftdata.hf.dataset(DIR)` and `Collator`: the shards' own rows, memory-mapped, and batches built from them."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch
from hf_support import CAPACITY, prepare_example
from test_train_support import random_rows, write_shards

import sftdata.hf
from sftdata.errors import InputError
from sftdata.train.data import ShardSet


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return prepare_example(tmp_path_factory.mktemp("folder") / "packed")


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory):
    return prepare_example(tmp_path_factory.mktemp("folder") / "unpacked", pack=False)


def test_rows_are_the_shard_rows_in_order_with_seq_lengths(packed):
    ds, shard_set = sftdata.hf.dataset(packed), ShardSet(packed)
    assert len(ds) == len(shard_set) and ds.format["type"] is None  # no with_transform: TRL takes it
    assert ds.column_names == ["input_ids", "labels", "doc_lens", "doc_ids", "seq_lengths"]
    for i in range(len(ds)):
        row = ds[i]
        assert row["input_ids"] == shard_set[i].input_ids.tolist()
        assert row["labels"] == shard_set[i].labels.tolist()
        assert row["seq_lengths"] == row["doc_lens"] == shard_set[i].doc_lens.tolist()
    assert max(len(x) for x in ds["doc_lens"]) > 1  # packed rows


def test_token_columns_are_memory_mapped_not_copied(packed):
    from datasets.table import InMemoryTable, MemoryMappedTable

    before = pa.total_allocated_bytes()
    ds = sftdata.hf.dataset(packed)
    allocated = pa.total_allocated_bytes() - before
    (mapped, extra), = ds.data.blocks
    assert isinstance(mapped, MemoryMappedTable) and mapped.path.endswith("shard-00000-of-00001.arrow")
    assert isinstance(extra, InMemoryTable) and extra.column_names == ["seq_lengths"]
    assert extra.schema.field("seq_lengths").type == pa.list_(pa.int32())
    assert allocated < 0.05 * mapped.nbytes and extra.nbytes < 0.05 * mapped.nbytes  # only seq_lengths
    assert len(pickle.dumps(ds)) < 0.2 * mapped.nbytes  # workers get the path, not the tokens
    cost = sftdata.hf.extra_cost(packed)
    assert 0 < cost.bytes_ratio < 0.05


def test_unpacked_and_multi_shard_folders(unpacked, tmp_path):
    ds = sftdata.hf.dataset(unpacked)
    assert all(len(x) == 1 for x in ds["seq_lengths"])
    rows = random_rows(0, 7)
    ds = sftdata.hf.dataset(write_shards(tmp_path / "s", rows, 128, per_shard=3))
    assert len(ds) == 7 and len(ds.data.blocks) == 3
    assert ds[6]["input_ids"] == np.concatenate([d[0] for d in rows[6]]).tolist()


def test_a_folder_without_manifest_is_named(tmp_path):
    with pytest.raises(InputError, match=r"no manifest.json.*sftdata prepare"):
        sftdata.hf.dataset(tmp_path)


def test_padding_free_batch_restarts_positions_and_keeps_our_labels():
    rows = [{"input_ids": [10, 11, 12, 20, 21], "labels": [-100, 11, 12, -100, 21], "doc_lens": [3, 2]},
            {"input_ids": [30, 31], "labels": [-100, 31], "doc_lens": [2]}]
    b = sftdata.hf.Collator(pad_to_multiple_of=4)(rows)
    assert b["input_ids"].tolist() == [[10, 11, 12, 20, 21, 30, 31, 0]]
    assert b["labels"].tolist() == [[-100, 11, 12, -100, 21, -100, 31, -100]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 0]]
    assert b["cu_seq_lens_q"].tolist() == [0, 3, 5, 7, 8] and b["max_length_q"] == 3
    assert b["use_cache"] is False and "attention_mask" not in b


def test_padded_batch_is_one_document_per_row():
    rows = [{"input_ids": [10, 11, 12, 20, 21], "labels": [-100, 11, 12, -100, 21], "seq_lengths": [3, 2]}]
    b = sftdata.hf.Collator(padding_free=False, pad_token_id=7)(rows)
    assert b["input_ids"].tolist() == [[10, 11, 12], [20, 21, 7]]
    assert b["labels"].tolist() == [[-100, 11, 12], [-100, 21, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2], [0, 1, 2]]


def test_rows_without_lengths_name_the_trainer_option():
    with pytest.raises(InputError, match=r"remove_unused_columns=False"):
        sftdata.hf.Collator()([{"input_ids": [1, 2], "labels": [-100, 2]}])
    with pytest.raises(InputError, match=r"must sum to the tokens"):
        sftdata.hf.Collator()([{"input_ids": [1, 2], "labels": [-100, 2], "doc_lens": [3]}])


@pytest.mark.slow  # ~15 s: a spawned worker imports torch
def test_collator_feeds_a_dataloader_with_workers(packed):
    """Pickled to a worker process, the dataset reopens the shard by path and batches come back the same."""
    ds = sftdata.hf.dataset(packed)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=sftdata.hf.Collator(), num_workers=1,
                                         multiprocessing_context="spawn")
    first = next(iter(loader))
    assert first["input_ids"].shape == (1, sum(len(ds[i]["input_ids"]) for i in range(3)))
    assert first["input_ids"].shape[1] <= 3 * CAPACITY
    assert torch.equal(first["input_ids"], sftdata.hf.Collator()([ds[i] for i in range(3)])["input_ids"])
