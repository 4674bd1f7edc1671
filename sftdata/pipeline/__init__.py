"""The stages of `sftdata prepare`, as plain functions over batches (see `sftdata.prepare` for the job).

    read_rows (sftdata.readers)  ->  validate_records (sftdata.validate)  ->  encode_stage  ->  plan (sftdata.pack)
        ->  build_rows  ->  ShardWriter (sftdata.shards)

`validate_records` (given the whole `ReadOptions`) and `encode_stage` take and return picklable values only, so the same functions run
inline, in a spawned process pool (`sftdata.pipeline.pool`) or as Ray Data `map_batches` tasks.
I/O happens only in `sftdata.prepare` (reading inputs, writing shards, rejects and the manifest).
"""

from sftdata.pipeline.rows import build_rows, shard_slices
from sftdata.pipeline.stages import EncodedBatch, StageOptions, cut_example, encode_stage

__all__ = ["EncodedBatch", "StageOptions", "build_rows", "cut_example", "encode_stage", "shard_slices"]
