"""Nothing lost (issue 10): every text of a record reaches its documents, or the record is rejected naming
what the template drops. Ids are compared with `tokenizer.apply_chat_template` on the row *as stored*
(never on the engine's own conversion of it)."""

from __future__ import annotations

import functools

import pytest
from conftest import TOKENIZERS, requires_shared

from sftdata.chat.compare import supervised_runs
from sftdata.chat.conservation import Haystack, missing_texts
from sftdata.chat.engine import ChatEncoder
from sftdata.chat.options import MaskOptions
from sftdata.formats import FormatOptions, get_format
from sftdata.reasons import Reason
from sftdata.records import Conversation, parse_conversation
from sftdata.tokens import documents_of

THOUGHT = "First I add two and two, which makes four."
ANSWER = "The answer is 4."
THINK = f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}"


def test_haystack_normalises_only_when_needed():
    doc = Haystack("<s>[INST] caf\u00e9   and\n\nmore [/INST] {\"q\": \"say \\\"hi\\\"\"}</s>")
    assert doc.has("caf\u00e9")
    assert doc.has("cafe\u0301 and more")  # NFD vs NFC, and a run of whitespace
    assert doc.has('say "hi"')  # JSON-escaped inside a tojson'ed value
    assert not doc.has("tea")


def test_missing_texts_names_the_kind_and_place():
    conv = parse_conversation({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi", "name": "ann"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"k": 7}}}]},
        {"role": "tool", "content": "ok", "name": "f"}, {"role": "assistant", "content": "done"}],
        "tools": [{"name": "f", "description": "does f", "parameters": {"properties": {"k": {}}}}]})
    assert isinstance(conv, Conversation)
    full = Haystack("Be brief. ann Hi f {\"k\": 7} ok done does f")
    assert missing_texts(conv, full) == []
    lost = missing_texts(conv, Haystack("Hi f {\"k\": 7} ok done"))
    assert [(t.kind, t.path) for t in lost] == [("system", "messages[0].content"), ("name", "messages[1].name"),
                                               ("tools", "tools[0].function.description")]
    # the tool result's name is the call's own name: already checked there, not asked of the template again
    assert "messages[3].name" not in [t.path for t in lost]


@functools.cache
def encoder(name: str, **opts) -> ChatEncoder:
    return ChatEncoder.load(TOKENIZERS / name, MaskOptions(**opts))


@functools.cache
def tokenizer(name: str):
    """transformers' own tokenizer: the reference shares no code with the engine's loader."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZERS / name)


def hf(name: str, messages: list[dict], **kw) -> list[int]:
    """apply_chat_template on the messages as stored (date pinned as the engine pins it)."""
    from sftdata.chat.compare import pinned_clock

    enc = encoder(name)
    with pinned_clock(enc.options.date):
        return tokenizer(name).apply_chat_template(messages, tokenize=True, **enc.hf_kwargs, **kw)["input_ids"]


def text_of(name: str, ids) -> str:
    return tokenizer(name).decode(list(ids))


ROWS = {
    "messages": {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": THINK}]},
    "alpaca": {"instruction": "2+2?", "output": THINK},
    "sharegpt": {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": THINK}]},
    "prompt_completion": {"prompt": "2+2?", "completion": THINK},
}
STORED = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": THINK}]


def convert(fmt: str, row: dict) -> Conversation:
    [cand] = get_format(fmt).convert(row, FormatOptions())
    conv = parse_conversation(cand.data)
    assert isinstance(conv, Conversation), conv
    return conv


@requires_shared
@pytest.mark.parametrize("fmt", sorted(ROWS))
@pytest.mark.parametrize("name", ["qwen2.5-instruct", "llama3.1-instruct", "gemma-3", "qwen3"])
def test_leading_think_block_is_kept_in_every_text_format(fmt, name):
    conv = convert(fmt, ROWS[fmt])
    assert conv.messages[-1].content == THINK and conv.messages[-1].reasoning is None  # as the user wrote it
    [ex] = encoder(name).encode_batch([conv])
    assert ex.input_ids.tolist() == hf(name, STORED)
    [run] = [text_of(name, r) for r in supervised_runs(ex)]
    assert THOUGHT in run and ANSWER in run  # the thought is trained with its reply


@requires_shared
def test_reasoning_field_is_inlined_and_trained_on_a_template_without_slot():
    conv = parse_conversation({"messages": [{"role": "user", "content": "2+2?"},
                                            {"role": "assistant", "content": ANSWER, "reasoning": THOUGHT}]})
    [ex] = encoder("qwen2.5-instruct").encode_batch([conv])
    assert ex.input_ids.tolist() == hf("qwen2.5-instruct", STORED)  # the DeepSeek-R1 distill layout
    [run] = [text_of("qwen2.5-instruct", r) for r in supervised_runs(ex)]
    assert run == f"{THINK}<|im_end|>"
    [off] = encoder("qwen2.5-instruct", train_reasoning=False).encode_batch([conv])
    assert THOUGHT in text_of("qwen2.5-instruct", off.input_ids)  # masked, still kept
    assert [text_of("qwen2.5-instruct", r) for r in supervised_runs(off)] == [f"{ANSWER}<|im_end|>"]
    [rej] = encoder("qwen2.5-instruct", reasoning_field="reject").encode_batch([conv])
    assert rej[0].code is Reason.template_drops_reasoning
    assert rej[0].path == "messages[1].reasoning"


def two_turns(first: dict, second: dict) -> list[dict]:
    return [{"role": "user", "content": "q1"}, first, {"role": "user", "content": "q2"}, second]


@requires_shared
def test_qwen3_multi_turn_reasoning_splits_each_dropped_turn():
    stored = two_turns({"role": "assistant", "content": "<think>\nold thought\n</think>\n\nanswer one"},
                       {"role": "assistant", "content": "answer two", "reasoning_content": "new thought"})
    conv = convert("messages", {"messages": stored})
    [out] = encoder("qwen3").encode_batch([conv])
    own, split = out.documents
    assert (own.key, split.key) == (None, 1)
    assert own.input_ids.tolist() == hf("qwen3", stored)  # the record's own id: apply_chat_template on the row
    assert split.input_ids.tolist() == hf("qwen3", stored[:2])  # turn 1 as at inference, with that turn last
    assert [text_of("qwen3", r) for r in supervised_runs(own)] == [
        "<think>\nnew thought\n</think>\n\nanswer two<|im_end|>"]
    assert [text_of("qwen3", r) for r in supervised_runs(split)] == [
        "<think>\nold thought\n</think>\n\nanswer one<|im_end|>"]  # no turn trained twice, no thought lost
    [last] = encoder("qwen3", reasoning_history="last").encode_batch([conv])
    assert last.counts == {"context_drop.reasoning": 1} and [d.key for d in last.documents] == [None]
    [rej] = encoder("qwen3", reasoning_history="reject").encode_batch([conv])
    assert rej[0].code is Reason.template_drops_reasoning and rej[0].path == "messages[1]"
    [masked] = encoder("qwen3", masking="last").encode_batch([conv])  # earlier turn is context: counted drop
    assert masked.counts == {"context_drop.reasoning": 1} and [d.key for d in masked.documents] == [None]


@requires_shared
def test_deepseek_r1_style_documents_continue_the_generation_prompt():
    stored = two_turns({"role": "assistant", "content": "<think>\nold thought\n</think>\n\nanswer one"},
                       {"role": "assistant", "content": "<think>\nnew thought\n</think>\n\nanswer two"})
    conv = convert("messages", {"messages": stored})
    [out] = encoder("deepseek-v4").encode_batch([conv])
    assert [d.key for d in out.documents] == [1, 3]  # every turn loses its thought in a render: no own document
    tok = tokenizer("deepseek-v4")
    for doc, k, thought, answer in zip(out.documents, (1, 3), ("old thought", "new thought"),
                                       ("answer one", "answer two"), strict=True):
        prompt = tok.apply_chat_template(stored[:k], tokenize=False, add_generation_prompt=True)
        assert prompt.endswith("<｜Assistant｜><think>\n")
        expected = f"{prompt}{thought}\n</think>\n\n{answer}<｜end▁of▁sentence｜>"
        assert doc.input_ids.tolist() == tok(expected, add_special_tokens=False)["input_ids"]
        assert [tok.decode(r) for r in supervised_runs(doc)] == [
            f"{thought}\n</think>\n\n{answer}<｜end▁of▁sentence｜>"]


@requires_shared
@pytest.mark.parametrize("name", ["gemma-3", "mistral-7b-instruct-v0.2", "phi-3-mini-instruct",
                                  "smollm2-135m-instruct", "tinyllama-1.1b-chat", "deepseek-v4"])
def test_tools_on_templates_without_tool_support(name):
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                               "parameters": {"type": "object", "properties": {"w": {}}}}}]
    conv = parse_conversation({"messages": [{"role": "user", "content": "define cat"},
                                            {"role": "assistant", "content": "A small feline."}], "tools": tools})
    [rej] = encoder(name).encode_batch([conv])
    assert rej[0].code is Reason.template_drops_tools and rej[0].path.startswith("tools[0]")
    [out] = encoder(name, allow_drop=("tools",)).encode_batch([conv])
    assert out.counts["allowed_drop.tools"] >= 1 and len(out.documents) == 1


@requires_shared
@pytest.mark.parametrize("name", ["mistral-7b-instruct-v0.3", "phi-3-mini-instruct"])
def test_system_prompt_drop_is_named(name):
    conv = parse_conversation({"messages": [{"role": "system", "content": "Answer in French."},
                                            {"role": "user", "content": "hi"},
                                            {"role": "assistant", "content": "salut"}]})
    [rej] = encoder(name).encode_batch([conv])
    assert rej[0].code is Reason.template_drops_system
    assert "--allow-drop system" in rej[0].message


@requires_shared
def test_llama31_drops_text_beside_a_tool_call():
    call = {"type": "function", "function": {"name": "lookup", "arguments": {"w": "cat"}}}
    conv = parse_conversation({"messages": [{"role": "user", "content": "define cat"},
                                            {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
                                            {"role": "tool", "content": "feline"},
                                            {"role": "assistant", "content": "A feline."}]})
    [rej] = encoder("llama3.1-instruct").encode_batch([conv])
    assert rej[0].code is Reason.template_drops_content and rej[0].path == "messages[1].content"


@requires_shared
def test_names_and_top_level_system():
    named = parse_conversation({"messages": [{"role": "user", "content": "hi", "name": "ann"},
                                             {"role": "assistant", "content": "hello"}]})
    [rej] = encoder("qwen2.5-instruct").encode_batch([named])
    assert rej[0].code is Reason.template_drops_name and rej[0].path == "messages[0].name"
    row = {"system": "Answer in French.", "messages": [{"role": "user", "content": "hi"},
                                                       {"role": "assistant", "content": "salut"}]}
    conv = convert("messages", row)
    [ex] = encoder("qwen2.5-instruct").encode_batch([conv])
    assert "Answer in French." in text_of("qwen2.5-instruct", ex.input_ids)  # read, as for the other formats
    assert ex.input_ids.tolist() == hf("qwen2.5-instruct", [{"role": "system", "content": row["system"]},
                                                            *row["messages"]])


@requires_shared
def test_mistral_v03_renders_tool_calls_with_nine_character_ids():
    call = {"id": "a1B2c3D4e", "type": "function", "function": {"name": "lookup", "arguments": {"w": "cat"}}}
    stored = [{"role": "user", "content": "define cat"}, {"role": "assistant", "content": "", "tool_calls": [call]},
              {"role": "tool", "content": "feline", "tool_call_id": "a1B2c3D4e"},
              {"role": "assistant", "content": "A feline."}]
    conv = parse_conversation({"messages": stored})
    assert encoder("mistral-7b-instruct-v0.3").profile.renders_tool_calls
    [ex] = encoder("mistral-7b-instruct-v0.3").encode_batch([conv])
    assert not isinstance(ex, list), ex
    assert ex.input_ids.tolist() == hf("mistral-7b-instruct-v0.3", stored)
    runs = [text_of("mistral-7b-instruct-v0.3", r) for r in supervised_runs(ex)]
    assert "lookup" in runs[0] and "cat" in runs[0] and runs[1].startswith("A feline.")


@requires_shared
def test_every_accepted_record_keeps_every_text_in_its_decoded_documents():
    """Decoded ids (not the render) hold every text of the record: one check independent of the render."""
    rows = [{"messages": two_turns({"role": "assistant", "content": "a1", "reasoning": "t-one"},
                                   {"role": "assistant", "content": "a2", "reasoning": "t-two"})}]
    conv = convert("messages", rows[0])
    for name in ["qwen3", "deepseek-v4", "qwen2.5-instruct", "gemma-3"]:
        [out] = encoder(name).encode_batch([conv])
        decoded = Haystack(" ".join(text_of(name, d.input_ids) for d in documents_of(out)))
        assert missing_texts(conv, decoded) == [] and decoded.has("t-one") and decoded.has("t-two"), name
