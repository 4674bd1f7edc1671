"""Issue 10's reasoning demo: `reason_tool_use` (50 records) on Qwen3 before/after split, and on Qwen2.5.

    HF_HUB_OFFLINE=1 python benchmarks/reasoning_demo.py

For each setting: records rejected, documents (the records' own + `ID#K`), tokens, supervised tokens, and how
many assistant thoughts (field or leading think block) end up in the supervised tokens.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from conservation_table import SHARED, load_records  # noqa: E402

SETTINGS = [("qwen3", {"reasoning_history": "last"}), ("qwen3", {}), ("qwen2.5-instruct", {})]


def main() -> None:
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.records import Role, thought_of
    from sftdata.tokens import documents_of

    convs = load_records("reason_tool_use", 0)
    for name, opts in SETTINGS:
        enc = ChatEncoder.load(SHARED / "tokenizers" / name, MaskOptions(**opts))
        results = enc.encode_batch(convs)
        docs = [d for r in results if not isinstance(r, list) for d in documents_of(r)]
        own = [d for d in docs if d.key is None]
        split = [d for d in docs if d.key is not None]
        thoughts = trained = 0
        for conv, result in zip(convs, results, strict=True):
            if isinstance(result, list):
                continue
            supervised = " ".join(enc.tokenizer.decode(d.input_ids[d.supervised].tolist())
                                  for d in documents_of(result))
            for m in conv.messages:
                thought = thought_of(m) if m.role is Role.assistant else None
                if thought and thought.strip():
                    thoughts += 1
                    trained += thought.strip()[:40] in supervised
        print(f"{name} {opts or 'defaults'}: rejected {sum(isinstance(r, list) for r in results)}, documents "
              f"{len(docs)} ({len(own)} own + {len(split)} ID#K), tokens {sum(map(len, docs)):,} "
              f"({sum(map(len, own)):,} + {sum(map(len, split)):,}), supervised {sum(d.n_supervised for d in docs):,}, "
              f"thoughts trained {trained}/{thoughts}")


if __name__ == "__main__":
    main()
