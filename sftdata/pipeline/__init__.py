"""The steps of `sftdata prepare`, one module each, in the order a record meets them.

    read        sftdata.readers (+ sftdata.formats)      raw rows with their source position
    validate    sftdata.validate                         records or rejects with reason codes
    encode      pipeline.encode                          render + tokenize + mask + cut -> EncodedBatch
    (contract)  pipeline.batch                           Batch: every record's outcome, in input order
    plan        pipeline.plan (+ sftdata.pack)           windows, BFD plan, shuffle, packing figures
    write       pipeline.write                           rows -> shard parts (ShardWriter)
    journal     pipeline.journal                         commit, resume, finalize
    job         pipeline.job                             the loop above, engine-agnostic
    engines     pipeline.local, pipeline.ray_engine      each supplies a batch source and a part writer

`validate_records` (given the whole `ReadOptions`) and `encode_stage` take and return picklable values
only, so the same functions run inline, in a spawned process pool (`sftdata.pool`) or in Ray Data
actors (`pipeline.ray_encode`); in one process `encode_stream` runs them as one pipeline through all
batches. The public entry point stays `sftdata.prepare.prepare`. This package
file imports nothing, so importing one step (e.g. the journal) loads only that step.
"""
