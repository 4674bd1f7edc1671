"""A tiny byte-level BPE tokenizer trained by sftdata itself on its example data (the embedded default).

Why: `make demo` and the tests must run on a fresh machine with no network and no model download, yet
exercise the real code paths (`AutoTokenizer.from_pretrained`, `apply_chat_template`, offsets). A
byte-level BPE covers every Unicode string (Chinese included) with 256 base symbols; 768 merges on the
example data (~40 kB of text) gives ~4 characters per token on English, enough for realistic lengths.
Training is deterministic (Hugging Face `tokenizers` BPE with one thread's worth of input order, ties
broken by the trainer's own ordering), so `build()` regenerates the committed folder byte for byte;
a test proves it.

The chat template (`chat_template.jinja`, written here) is ChatML: `<|im_start|>ROLE\\n...<|im_end|>\\n`,
with tool definitions in the system turn, tool calls as `<tool_call>` JSON blocks, and reasoning as a
`<think>` block before the reply. It never injects text the data did not contain (no default system
prompt, no date), and its renders of a conversation's prefixes are prefixes of the whole render.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
EXAMPLE_PATH = DATA_DIR / "example.jsonl"
TOKENIZER_DIR = DATA_DIR / "tokenizer"

VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
"""Structure markers the template writes: single tokens, but not special (they decode as text)."""

CHAT_TEMPLATE = """\
{#- sftdata tiny ChatML: system/user/assistant/tool, tools in the system turn, <tool_call> JSON, <think>. -#}
{%- set offset = 0 -%}
{%- if tools -%}
<|im_start|>system
{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}

{% set offset = 1 %}{% endif %}# Tools
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}<|im_end|>
{% endif -%}
{%- for message in messages[offset:] -%}
<|im_start|>{{ message['role'] }}
{% if message['role'] == 'assistant' and message.get('reasoning') is not none %}<think>
{{ message['reasoning'] }}
</think>
{% endif %}{{ message['content'] if message['content'] is string else '' }}
{%- for call in message.get('tool_calls') or [] %}
<tool_call>
{{ call['function'] | tojson }}
</tool_call>
{%- endfor %}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""


def corpus(path: Path = EXAMPLE_PATH) -> Iterator[str]:
    """Every text of the example data, in file order (unreadable lines are skipped: they are test rows)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        for m in row.get("messages", []):
            if isinstance(m.get("role"), str):
                yield m["role"]  # role names appear in every header: give them merges of their own
            for key in ("content", "reasoning"):
                if isinstance(m.get(key), str) and m[key]:
                    yield m[key]
            for call in m.get("tool_calls") or []:
                yield json.dumps(call["function"], ensure_ascii=False)
        for tool in row.get("tools") or []:
            yield json.dumps(tool, ensure_ascii=False)


def train(path: Path = EXAMPLE_PATH, vocab_size: int = VOCAB_SIZE):  # noqa: ANN201 - returns PreTrainedTokenizerFast
    """Train the BPE on the example data and wrap it as a Hugging Face fast tokenizer with the template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus(path)), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None, model_max_length=4096)
    fast.add_tokens(ADDED_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(out: Path = TOKENIZER_DIR, path: Path = EXAMPLE_PATH) -> Path:
    """Train and save the tokenizer folder (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`)."""
    out.mkdir(parents=True, exist_ok=True)
    train(path).save_pretrained(str(out))
    return out


def main() -> None:
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else TOKENIZER_DIR)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
