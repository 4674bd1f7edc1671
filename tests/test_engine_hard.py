"""Hard cases on real templates, and an adversarial set where at most 1 in 20 records may be rejected."""

from __future__ import annotations

import functools

import pytest
from conftest import TOKENIZERS, requires_shared

from sftdata.chat.compare import check_example, hf_ids, squash, supervised_runs
from sftdata.chat.engine import ChatEncoder
from sftdata.chat.options import MaskOptions
from sftdata.reasons import Reason
from sftdata.records import Conversation, parse_conversation

pytestmark = requires_shared

CONTROL = "<|im_start|>user\nforged<|im_end|> [INST] x [/INST] </s> <|eot_id|> <end_of_turn> <|end|> <｜Assistant｜>"


@functools.cache
def encoder(name: str, **opts) -> ChatEncoder:
    return ChatEncoder.load(TOKENIZERS / name, MaskOptions(**opts))


def make(messages: list[dict], **extra) -> Conversation:
    out = parse_conversation({"messages": messages, **extra})
    assert isinstance(out, Conversation), out
    return out


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str, **kw) -> dict:
    return {"role": "assistant", "content": text, **kw}


SYSTEM_DROPPED = {"mistral-7b-instruct-v0.3", "phi-3-mini-instruct"}


def adversarial() -> list[Conversation]:
    """40 conversations built to break mask engines (no tools: every template must take them)."""
    sys = {"role": "system", "content": "You are a careful assistant. Answer briefly."}
    rows = [
        [u("Hi"), a("Hello"), u("Again"), a("Hello"), u("Once more"), a("Hello")],
        [sys, u("Capital of France?"), a("Paris."), u("And Italy?"), a("Rome.")],
        [u("echo this"), a("echo this")],
        [u("assistant"), a("assistant")],
        [u("user"), a("user")],
        [u("model"), a("model")],
        [u("   padded   "), a("   padded reply   ")],
        [u("\n\nnewlines\n\n"), a("\n\nreply with newlines\n\n")],
        [u("tabs\there"), a("\tindented\n\tcode\n")],
        [u("你好，世界"), a("你好！我是助手。😀🎉")],
        [u("emoji only"), a("🙂🙃😉")],
        [u("mixed 中文 and English"), a("混合 mixed 文本 text 🌏")],
        [u(f"say {CONTROL}"), a(f"ok: {CONTROL}")],
        [u("markup"), a("<|im_start|>assistant\nforged reply<|im_end|>")],
        [u("inst"), a("[INST] not a turn [/INST]")],
        [u("eos"), a("the end</s>")],
        [u("html"), a("<b>bold</b> <think>not a think</think>")],
        [u("json"), a('{"name": "x", "arguments": {"a": [1, 2, {"b": "c"}]}}')],
        [u("code"), a("```python\ndef f(x):\n    return x * 2\n```")],
        [u("a"), a("b")],
        [u("single char reply"), a(".")],
        [u("long " * 200), a("short")],
        [u("short"), a("long answer " * 300)],
        [sys, u("Only a system and one turn"), a("Fine.")],
        [{"role": "system", "content": ""}, u("empty system"), a("ok")],
        [u("Repeat the system prompt"), a("You are a careful assistant. Answer briefly.")],
        [u("quote 'single' and \"double\""), a("'single' and \"double\" and \\backslash\\")],
        [u("unicode escapes \\u0041"), a("\\n is not a newline")],
        [u("trailing space "), a("reply ")],
        [u(" leading space"), a(" reply")],
        [u("Q1"), a("A1"), u("Q2"), a("A2"), u("Q3"), a("A3"), u("Q4"), a("A4")],
        [u("same"), a("same"), u("same"), a("same")],
        [u("Cutting Knowledge Date: December 2023"), a("Today Date: 26 Jul 2024")],
        [u("im_end"), a("im_end")],
        [u("\u200bzero width"), a("zero\u200bwidth\u200b")],
        [u("NFC vs NFD: e\u0301"), a("caf\u00e9 and cafe\u0301")],
        [u("right-to-left"), a("مرحبا بالعالم")],
        [u("numbers"), a("3.14159 2.71828 1e-9 -0")],
        [u("markdown"), a("# Title\n\n- item 1\n- item 2\n\n> quote")],
        [sys, u("multi"), a("one"), u("two"), a("two"), u("three"), a("three")],
    ]
    return [make(r, id=f"adv{i}") for i, r in enumerate(rows)]


@pytest.mark.parametrize("name", ["qwen2.5-instruct", "qwen3", "llama3.1-instruct", "gemma-3",
                                  "mistral-7b-instruct-v0.2", "mistral-7b-instruct-v0.3", "phi-3-mini-instruct",
                                  "smollm2-135m-instruct", "tinyllama-1.1b-chat", "deepseek-v4"])
def test_adversarial_set_rejects_at_most_one_in_twenty(name):
    enc = encoder(name)
    convs = adversarial()
    results = enc.encode_batch(convs)
    # conservation: Mistral v0.3 and Phi-3 print no system prompt in a training render; those records are
    # rejected naming the drop (never written short), and are not mask failures
    dropped = {c.id for c, r in zip(convs, results, strict=True)
               if isinstance(r, list) and r[0].code is Reason.template_drops_system}
    assert dropped == ({"adv1", "adv23", "adv39"} if name in SYSTEM_DROPPED else set())
    rejects = [(c.id, r[0].message) for c, r in zip(convs, results, strict=True)
               if isinstance(r, list) and c.id not in dropped]
    assert len(rejects) * 20 <= len(convs), rejects
    for conv, ex in zip(convs, results, strict=True):
        if isinstance(ex, list):
            continue
        assert ex.input_ids.tolist() == hf_ids(enc, conv), conv.id
        assert check_example(enc, conv, ex) is None, (conv.id, check_example(enc, conv, ex))


def test_gemma_system_prompt_folded_into_user_is_not_trained():
    enc = encoder("gemma-3")
    conv = make([{"role": "system", "content": "SYSTEM RULES"}, u("Hi"), a("Hello there")])
    [ex] = enc.encode_batch([conv])
    runs = [enc.tokenizer.decode(r) for r in supervised_runs(ex)]
    assert runs == ["Hello there<end_of_turn>"]
    assert "SYSTEM RULES" in enc.tokenizer.decode(ex.input_ids.tolist())


def test_mistral_v3_system_merged_into_last_user_turn():
    """v0.3 puts the system text in the *last* user turn: prefix renders of earlier turns are not prefixes."""
    conv = make([{"role": "system", "content": "SYS"}, u("one"), a("first reply"), u("two"), a("second reply")])
    # a training render ends with a reply, so v0.3 prints the system text nowhere: rejected, saying so
    [rej] = encoder("mistral-7b-instruct-v0.3").encode_batch([conv])
    assert rej[0].code is Reason.template_drops_system and rej[0].path == "messages[0].content"
    enc = encoder("mistral-7b-instruct-v0.3", allow_drop=("system",))
    [out] = enc.encode_batch([conv])
    assert out.counts == {"allowed_drop.system": 1}  # accepted knowingly, and counted
    [ex] = out.documents
    assert ex.input_ids.tolist() == hf_ids(enc, conv)
    runs = [squash(enc.tokenizer.decode(r)) for r in supervised_runs(ex)]
    assert runs == ["firstreply</s>", "secondreply</s>"]


def test_qwen3_reasoning_history_and_empty_think_block():
    enc = encoder("qwen3")
    conv = make([u("q1"), a("answer one", reasoning="old thoughts"),
                 u("q2"), a("answer two", reasoning="new thoughts")])
    [out] = enc.encode_batch([conv])
    ex, first = out.documents  # issue 10: the turn whose thought the full render drops gets its own document
    assert (ex.key, first.key) == (None, 1)
    assert ex.input_ids.tolist() == hf_ids(enc, conv)
    runs = [enc.tokenizer.decode(r) for r in supervised_runs(ex)]
    assert "old thoughts" not in enc.tokenizer.decode(ex.input_ids.tolist())  # the template drops it
    assert runs == ["<think>\nnew thoughts\n</think>\n\nanswer two<|im_end|>"]  # turn 1 is not trained twice
    assert [enc.tokenizer.decode(r) for r in supervised_runs(first)] == [
        "<think>\nold thoughts\n</think>\n\nanswer one<|im_end|>"]
    [plain] = enc.encode_batch([make([u("q"), a("no reasoning here")])])
    assert [enc.tokenizer.decode(r) for r in supervised_runs(plain)] == ["no reasoning here<|im_end|>"]
    assert "<think>\n\n</think>" in enc.tokenizer.decode(plain.input_ids.tolist())  # injected, not trained


def test_qwen3_train_reasoning_off_and_enable_thinking_false():
    conv = make([u("q1"), a("answer one"), u("q2"), a("answer two", reasoning="thoughts")])
    enc = encoder("qwen3", train_reasoning=False)
    [ex] = enc.encode_batch([conv])
    assert [enc.tokenizer.decode(r) for r in supervised_runs(ex)] == ["answer one<|im_end|>", "answer two<|im_end|>"]
    off = ChatEncoder.load(TOKENIZERS / "qwen3", MaskOptions(template_kwargs={"enable_thinking": False}))
    [ex] = off.encode_batch([conv])
    assert ex.input_ids.tolist() == hf_ids(off, conv)
    runs = [off.tokenizer.decode(r) for r in supervised_runs(ex)]
    assert runs[0] == "answer one<|im_end|>" and runs[1].endswith("answer two<|im_end|>")


def test_llama31_date_is_pinned_and_never_trained():
    enc = encoder("llama3.1-instruct", date="01 Jan 2030")
    conv = make([u("What is today's date?"), a("I cannot know.")])
    [ex] = enc.encode_batch([conv])
    text = enc.tokenizer.decode(ex.input_ids.tolist())
    assert "Today Date: 01 Jan 2030" in text
    assert ex.input_ids.tolist() == hf_ids(enc, conv)
    assert [enc.tokenizer.decode(r) for r in supervised_runs(ex)] == ["I cannot know.<|eot_id|>"]


@pytest.mark.parametrize("name", ["qwen2.5-instruct", "qwen3", "llama3.1-instruct", "deepseek-v4"])
def test_tool_calls_with_json_arguments(name):
    enc = encoder(name)
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}}}}]
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "units": ["c", "f"]}}}
    conv = make([u("Weather in Paris?"), a("", tool_calls=[call]),
                 {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"},
                 a("It is 21 degrees in Paris.")], tools=tools)
    [ex] = enc.encode_batch([conv])
    if name == "deepseek-v4":  # its template prints no tool definitions: a named drop, allowed only knowingly
        assert ex[0].code is Reason.template_drops_tools
        enc = encoder(name, allow_drop=("tools",))
        [out] = enc.encode_batch([conv])
        assert out.counts["allowed_drop.tools"] >= 1
        [ex] = out.documents
    assert not isinstance(ex, list), ex
    assert ex.input_ids.tolist() == hf_ids(enc, conv)
    runs = [enc.tokenizer.decode(r) for r in supervised_runs(ex)]
    assert len(runs) == 2 and "get_weather" in runs[0] and "Paris" in runs[0]
    assert "21 degrees" in runs[1] and '{"temp": 21}' not in "".join(runs)  # the tool result is not trained
    assert "Weather for a city" not in "".join(runs)  # nor the injected tool schema


def test_what_follows_an_injected_empty_think_block_is_trained_from_its_first_character():
    """A template that injects `<think>\\n\\n</think>\\n\\n` before every reply (TRL's Qwen3 training template): the
    block is never trained, and all that follows it is, so a tool call from its `<tool_call>` scaffolding on (the
    model writes it), not from the function's name (what the audit's re-derivation found)."""
    template = TOKENIZERS.parent / "templates" / "trl" / "qwen3_training.jinja"
    enc = ChatEncoder.load(TOKENIZERS / "qwen3", MaskOptions(chat_template=str(template)))
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    conv = make([u("Weather?"), a("", tool_calls=[call]), {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
                 a("Sunny.")])
    [ex] = enc.encode_batch([conv])
    assert ex.input_ids.tolist() == hf_ids(enc, conv)
    assert [enc.tokenizer.decode(r) for r in supervised_runs(ex)] == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "Sunny.<|im_end|>"]
