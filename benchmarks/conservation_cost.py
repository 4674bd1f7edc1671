"""Cost of the engine's conservation check (issue 10) as a share of encoding, in one process and one run.

    HF_HUB_OFFLINE=1 python benchmarks/conservation_cost.py CORPUS.jsonl TOKENIZER_DIR [--rows N]

Times `ChatEncoder.encode_batch` over the corpus (render + conservation + spans + batch encode) and, inside
the same run, the time spent in the conservation check itself (`missing_texts`, the located view and the
reasoning check), by wrapping those three functions. `prepare` also reads, validates, packs and writes, so
the share of a whole
`prepare` is smaller than the share printed here (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("tokenizer")
    parser.add_argument("--rows", type=int, default=0, help="first N rows only (0 = all)")
    args = parser.parse_args()

    import sftdata.chat.engine as engine
    from sftdata.records import parse_conversation

    convs = []
    with open(args.corpus, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if args.rows and n >= args.rows:
                break
            conv = parse_conversation(json.loads(line))
            if not isinstance(conv, list):
                convs.append(conv)
    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t
        return wrapper

    engine.missing_texts = timed(engine.missing_texts)
    engine.ChatEncoder._reasoning_splits = timed(engine.ChatEncoder._reasoning_splits)
    engine._located = timed(engine._located)
    enc = engine.ChatEncoder.load(args.tokenizer)
    enc.encode_batch(convs[:256])  # warm up
    spent[0] = 0.0
    t = time.perf_counter()
    results = enc.encode_batch(convs)
    total = time.perf_counter() - t
    print(json.dumps({"records": len(convs), "rejected": sum(isinstance(r, list) for r in results),
                      "encode_s": round(total, 3), "conservation_s": round(spent[0], 3),
                      "share_of_encode": round(spent[0] / total, 4)}))


if __name__ == "__main__":
    main()
