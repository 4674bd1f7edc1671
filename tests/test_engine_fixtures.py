"""The engine on the ten real tokenizers and the real datasets (samples; the full sweep is
`benchmarks/template_survey.py --datasets`).

For every accepted record: ids == `apply_chat_template(..., sanitize_control_tokens=True)`, and each
supervised run decodes to one reply plus the template's closing text and end-of-turn (whitespace aside).
Rejects are allowed only for reasons a user would agree with (the template refuses the record, has no
tool support, or rewrites the reply), never a mask the engine could not prove on plain chat data.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import pytest
from conftest import DATASETS, TOKENIZER_NAMES, requires_shared

from sftdata.chat.compare import supervised_runs
from sftdata.chat.conservation import Haystack, missing_texts
from sftdata.chat.engine import ChatEncoder
from sftdata.chat.options import MaskOptions
from sftdata.reasons import Reason
from sftdata.records import Conversation, Record, Role, thought_of
from sftdata.tokens import Encoded

pytestmark = requires_shared

PLAIN = {"alpaca_en": "llama_factory/alpaca_en_demo.json", "alpaca_zh": "llama_factory/alpaca_zh_demo.json",
         "fastchat": "fastchat/dummy_conversation.json", "oasst": "oasst/en_100_tree.jsonl"}
TOOLS = {"glaive": "llama_factory/glaive_toolcall_en_demo.json",
         "reason_tool_use": "llama_factory/reason_tool_use_demo_50.jsonl"}
SAMPLE = 12
ACCEPTABLE = {Reason.template_error, Reason.reply_not_located, Reason.control_token_in_content,
              Reason.template_drops_tools, Reason.template_drops_tool_calls, Reason.template_drops_content,
              Reason.template_drops_system, Reason.template_drops_name, Reason.template_drops_reasoning}
"""Rejects on tool data: the template raises (roles must alternate, one tool call only, id format), has
no tool support (it drops the tool definitions or calls: named, issue 10), drops text beside a tool call
(Llama 3.1: the reply's text, and with it an inlined thought), drops a reply the record has, or the reply
holds an unsanitizable `</think>`."""


@functools.cache
def records(name: str, step: int = 1) -> list[Conversation]:
    from sftdata.readers import read_rows
    from sftdata.validate import to_records

    path = DATASETS / {**PLAIN, **TOOLS}[name]
    convs = [r.conversation for r in to_records(read_rows(str(path))) if isinstance(r, Record)]
    stride = max(1, len(convs) // SAMPLE)
    return convs[::stride][:SAMPLE]


@functools.cache
def encoder(name: str, **opts) -> ChatEncoder:
    from conftest import TOKENIZERS

    return ChatEncoder.load(TOKENIZERS / name, MaskOptions(**opts))


def check_conserved(enc: ChatEncoder, conv: Conversation, result: Encoded) -> None:
    """A record that became several documents: every text of it is in their decoded ids."""
    decoded = Haystack(" ".join(enc.tokenizer.decode(d.input_ids.tolist()) for d in result.documents))
    allowed = {k.split(".", 1)[1] for k in result.counts if k.startswith("allowed_drop.")}
    assert [t for t in missing_texts(conv, decoded) if t.kind not in allowed] == [], conv.id
    for m in conv.messages:
        if m.role is Role.assistant and (thought := thought_of(m)) and "context_drop.reasoning" not in result.counts:
            assert decoded.has(thought), (conv.id, thought[:60])


def squash(s: str) -> str:
    """Whitespace removed and NFC-normalised (Qwen's tokenizer normalises to NFC, so decode gives NFC)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFC", s))


def check_accepted(enc: ChatEncoder, conv: Conversation, ex) -> None:
    tok = enc.tokenizer
    # sanitize_control_tokens=True gives the plain ids when no control text is present (its code path is
    # one `encode` of the whole chat) and is slow on 262k-vocabulary tokenizers, so only ask for it when needed
    sanitize = enc._has_control_text(str(conv.model_dump()))
    ref = tok.apply_chat_template(enc.template_messages(conv), tools=conv.tools, tokenize=True,
                                  sanitize_control_tokens=sanitize, **enc.hf_kwargs)["input_ids"]
    assert ex.input_ids.tolist() == ref, f"ids differ from apply_chat_template for {conv.id}"
    replies = [m for m in conv.messages if m.role is Role.assistant]
    decoded = [tok.decode(r) for r in supervised_runs(ex)]
    assert len(decoded) == len(replies), (conv.id, decoded)
    eot = enc.profile.eot_texts[0]
    for m, text in zip(replies, decoded, strict=True):
        assert text.rstrip().endswith(eot), (conv.id, text[-80:])
        body = squash(text)[: -len(squash(eot))]
        if m.tool_calls:
            assert all(c.function.name in body for c in m.tool_calls)
        if m.content.strip() and not m.tool_calls:
            assert body.endswith(squash(m.content)) or squash(m.content) in body, (conv.id, body[-120:])
            if not m.reasoning:  # nothing but the reply (and closing text) is trained
                assert body.startswith(squash(m.content)[:20]), (conv.id, body[:80])
        assert not any(squash(u.content) and squash(u.content) in body and len(squash(u.content)) > 40
                       for u in conv.messages if u.role is Role.user and squash(u.content) not in squash(m.content))


@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
def test_real_chat_data_all_accepted_and_exact(tokenizer):
    enc = encoder(tokenizer)
    for dataset in PLAIN:
        convs = records(dataset)
        for conv, result in zip(convs, enc.encode_batch(convs), strict=True):
            assert not isinstance(result, list), f"{tokenizer}/{dataset} rejected {conv.id}: {result}"
            check_accepted(enc, conv, result)


@pytest.mark.parametrize("tokenizer", TOKENIZER_NAMES)
def test_tool_data_exact_where_the_template_takes_it(tokenizer):
    enc = encoder(tokenizer)
    for dataset in TOOLS:
        convs = records(dataset)
        for conv, result in zip(convs, enc.encode_batch(convs), strict=True):
            if isinstance(result, list):
                assert {p.code for p in result} <= ACCEPTABLE, result
                continue
            if isinstance(result, Encoded):
                check_conserved(enc, conv, result)
                continue
            check_accepted(enc, conv, result)


@pytest.mark.parametrize("tokenizer", ["qwen2.5-instruct", "qwen3", "llama3.1-instruct", "deepseek-v4"])
def test_tool_templates_accept_most_tool_records(tokenizer):
    # DeepSeek V3's template prints no tool definitions: accepted only with that drop named (and counted)
    enc = encoder(tokenizer, **({"allow_drop": ("tools",)} if tokenizer == "deepseek-v4" else {}))
    convs = records("glaive")
    accepted = sum(not isinstance(r, list) for r in enc.encode_batch(convs))
    assert accepted == len(convs)
