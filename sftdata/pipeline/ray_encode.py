"""The `map_batches` step of the Ray engine: validate + encode a batch of raw rows with the local stages.

`EncodeRows` is a callable class, so Ray Data runs it in an actor pool and each actor loads the
tokenizer / chat encoder once (`get_encoder`, ~1 s) and keeps it for every batch it is given. A call
turns raw rows (from `sftdata.pipeline.ray_read`) back into the local reader's `RawRow`s, runs
`validate_records` (per input, with the job's whole `ReadOptions` and the format the driver resolved
from the input's first rows, exactly as the local engine detects it) and `encode_stage`, and returns
ONE output row per batch:

- `keys`: int64 (input, row index, n-th record of that row) per outcome, the sort key of input order;
- `ids`, `labels`: the batch's tokens back to back (int32 bytes) - these stay in Ray's object store
  and go to the shard-writing tasks, never to the driver;
- `meta`: a pickle of what the driver needs: each outcome (`Kept` with its documents, or a `Reject`,
  from `sftdata.pipeline.batch.outcomes_of`, as the local engine makes them), lengths, doc ids and
  truncation flags.

Fault injection for the retry test: `crash_marker` (a path) makes the first call in the cluster
`os._exit` after creating the file; Ray restarts the actor and retries the batch.
"""

from __future__ import annotations

import os
import pickle
from itertools import groupby
from typing import Any

import numpy as np

from sftdata.config import ReadOptions
from sftdata.pipeline.batch import outcomes_of
from sftdata.pipeline.encode import StageOptions, encode_stage, get_encoder
from sftdata.pipeline.ray_read import to_raw_row
from sftdata.records import Record, Reject
from sftdata.validate import validate_records


class EncodeRows:
    """Ray Data UDF: raw rows -> one row of encoded arrays and metadata (see the module docstring).

    Args:
        sources: the inputs as given, by position on the command line.
        formats: the format of each input (None when its first rows held nothing readable).
        read: the job's read options, whole (the resolved format of each input replaces `read.format`).
        stage: the encoder options (`StageOptions`), the same the local engine uses.
        crash_marker: tests only; see the module docstring.
    """

    def __init__(self, sources: list[str], formats: list[str | None], read: ReadOptions, stage: StageOptions,
                 crash_marker: str | None = None) -> None:
        self.sources, self.formats, self.read, self.stage = sources, formats, read, stage
        self.crash_marker = crash_marker
        self.encoder = get_encoder(stage)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        if self.crash_marker and not os.path.exists(self.crash_marker):
            with open(self.crash_marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(1)
        rows = zip(batch["input"].tolist(), batch["index"].tolist(), batch["kind"].tolist(), batch["payload"],
                   strict=True)
        items: list[Record | Reject] = []
        inputs: list[int] = []
        for n, group in groupby(rows, key=lambda r: r[0]):
            raw = [to_raw_row(self.sources[n], index, kind, bytes(payload)) for _, index, kind, payload in group]
            found = list(validate_known_format(raw, self.formats[n], self.read))
            items.extend(found)
            inputs.extend([n] * len(found))
        return encode_items(items, inputs, self.stage, self.encoder)


def validate_known_format(rows: list[Any], fmt: str | None, read: ReadOptions) -> Any:
    """`validate_records` over some rows of one input whose format the driver already resolved.

    With `fmt=None` (the local engine found no readable row among the input's first rows), every row
    is rejected as the local engine does it: `validate_records` with `auto` over rows that hold nothing
    readable gives exactly that, so it is called on each row alone (a readable row later in the file
    must not be taken for a format detection).
    """
    if fmt is not None:
        return validate_records(rows, read.model_copy(update={"format": fmt}))
    auto = read.model_copy(update={"format": "auto"})
    from sftdata.readers import RawRow
    from sftdata.reasons import Reason
    from sftdata.records import Problem

    out: list[Record | Reject] = []
    for row in rows:
        unreadable = RawRow(row.source, row.index, None, row.raw,
                            row.problem or Problem(Reason.unknown_format, "row could not be read"))
        out.extend(validate_records([unreadable], auto))
    return out


def encode_items(items: list[Record | Reject], inputs: list[int], stage: StageOptions,
                 encoder: Any) -> dict[str, list[Any]]:
    """Encode the records among `items` and pack the outcomes into one output row."""
    records = [x for x in items if isinstance(x, Record)]
    encoded = encode_stage(records, stage, encoder)
    keys = np.zeros((len(items), 3), dtype=np.int64)
    previous: tuple[int, int] | None = None
    sub = 0
    for i, (item, n) in enumerate(zip(items, inputs, strict=True)):
        sub = sub + 1 if previous == (n, item.index) else 0
        previous = (n, item.index)
        keys[i] = (n, item.index, sub)
    meta = (outcomes_of(items, encoded), encoded.lengths, encoded.doc_ids, encoded.truncated)
    return {"keys": [keys.tobytes()], "ids": [encoded.input_ids.tobytes()], "labels": [encoded.labels.tobytes()],
            "meta": [pickle.dumps(meta, pickle.HIGHEST_PROTOCOL)]}
