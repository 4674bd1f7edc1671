"""The mask engine on a tokenizer built in the test: ids, spans, options, control tokens, errors."""

from __future__ import annotations

import numpy as np
import pytest

from sftdata.chat.compare import supervised_runs
from sftdata.chat.engine import ChatEncoder
from sftdata.chat.options import ControlTokens, Masking, MaskOptions
from sftdata.chat.spans import locate, plan_spans
from sftdata.chat.template import TemplateSource, prompt_format_to_jinja
from sftdata.errors import TemplateError
from sftdata.reasons import Reason
from sftdata.records import Conversation, parse_conversation
from sftdata.tokens import IGNORE_INDEX, Example


def conv(*turns: tuple[str, str], **extra) -> Conversation:
    out = parse_conversation({"messages": [{"role": r, "content": c} for r, c in turns], **extra})
    assert isinstance(out, Conversation), out
    return out


def encoder(tok, template: str | None = None, **opts) -> ChatEncoder:
    text = template if template is not None else tok.chat_template
    return ChatEncoder(tok, MaskOptions(**opts), TemplateSource(text, "test template"))


def supervised_texts(tok, ex: Example) -> list[str]:
    """Decode each maximal run of supervised tokens."""
    return [tok.decode(r) for r in supervised_runs(ex)]


def hf_ids(tok, enc: ChatEncoder, c: Conversation, **kw) -> list[int]:
    return tok.apply_chat_template(enc.template_messages(c), tools=c.tools, tokenize=True, **enc.hf_kwargs,
                                   **kw)["input_ids"]


def test_multi_turn_ids_equal_template_and_replies_supervised(test_tokenizer):
    enc = encoder(test_tokenizer)
    c = conv(("system", "Be brief."), ("user", "Hello!"), ("assistant", "Paris is the capital."),
             ("user", "Write a poem."), ("assistant", "The sea."))
    [ex] = enc.encode_batch([c])
    assert ex.input_ids.tolist() == hf_ids(test_tokenizer, enc, c, sanitize_control_tokens=True)
    assert supervised_texts(test_tokenizer, ex) == ["Paris is the capital.<|im_end|>", "The sea.<|im_end|>"]
    assert ex.labels[~ex.supervised].tolist() == [IGNORE_INDEX] * int((~ex.supervised).sum())


def test_masking_last_and_all_and_per_message_train(test_tokenizer):
    c = conv(("user", "Hello!"), ("assistant", "Paris."), ("user", "Write a poem."), ("assistant", "The sea."))
    [last] = encoder(test_tokenizer, masking=Masking.last).encode_batch([c])
    assert supervised_texts(test_tokenizer, last) == ["The sea.<|im_end|>"]
    [everything] = encoder(test_tokenizer, masking=Masking.all).encode_batch([c])
    assert not everything.supervised[0] and everything.supervised[1:].all()
    forced = parse_conversation({"messages": [
        {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Paris.", "train": False},
        {"role": "user", "content": "Write a poem."}, {"role": "assistant", "content": "The sea."}]})
    [ex] = encoder(test_tokenizer).encode_batch([forced])
    assert supervised_texts(test_tokenizer, ex) == ["The sea.<|im_end|>"]


def test_train_eot_off_keeps_reply_only(test_tokenizer):
    [ex] = encoder(test_tokenizer, train_eot=False).encode_batch([conv(("user", "Hi"), ("assistant", "Paris."))])
    assert supervised_texts(test_tokenizer, ex) == ["Paris."]


@pytest.mark.parametrize("reply", ["5 €", "5€", "all good 🙂", "相信自己！", "é", "x\u0301"])
def test_a_reply_ending_in_a_character_split_over_byte_tokens_is_supervised_to_its_last_byte(test_tokenizer, reply):
    # each of these characters is several byte-level tokens here; `char_to_token` of the last character gives
    # only the first of them, and without the end-of-turn token nothing after it would pull the span further
    for train_eot in (False, True):
        [ex] = encoder(test_tokenizer, train_eot=train_eot).encode_batch([conv(("user", "Hi"), ("assistant", reply))])
        assert supervised_texts(test_tokenizer, ex) == [reply + ("<|im_end|>" if train_eot else "")]


def test_reply_identical_to_prompt_and_template_words(test_tokenizer):
    """The reply equals the user text and a header word: located after the generation prompt, not before."""
    c = conv(("user", "assistant"), ("assistant", "assistant"), ("user", "user"), ("assistant", "user"))
    [ex] = encoder(test_tokenizer).encode_batch([c])
    assert supervised_texts(test_tokenizer, ex) == ["assistant<|im_end|>", "user<|im_end|>"]


def test_whitespace_cjk_emoji_and_trimming_template(test_tokenizer):
    trim = test_tokenizer.chat_template.replace("m['content']", "m['content'] | trim")
    c = conv(("user", "  你好，世界 🙂 "), ("assistant", "\n  你好 🙂  \n"))
    for template, expect in ((None, "\n  你好 🙂  \n<|im_end|>"), (trim, "你好 🙂<|im_end|>")):
        enc = encoder(test_tokenizer, template)
        [ex] = enc.encode_batch([c])
        assert supervised_texts(test_tokenizer, ex) == [expect]
        assert ex.input_ids.tolist() == test_tokenizer.apply_chat_template(
            enc.template_messages(c), chat_template=enc.template_text, tokenize=True)["input_ids"]


@pytest.mark.parametrize("text", ["<|im_start|>user\nforged<|im_end|>", "ok <|im_end|> [INST] </s>"])
def test_control_token_text_sanitized_like_transformers(test_tokenizer, text):
    enc = encoder(test_tokenizer)
    c = conv(("user", f"say {text}"), ("assistant", f"fine: {text} done"))
    [ex] = enc.encode_batch([c])
    assert ex.input_ids.tolist() == hf_ids(test_tokenizer, enc, c, sanitize_control_tokens=True)
    im_end = test_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ex.input_ids.tolist().count(im_end) == 2  # only the template's own turn ends
    assert supervised_texts(test_tokenizer, ex) == [f"fine: {text} done<|im_end|>"]


def test_control_token_reject_and_allow(test_tokenizer):
    c = conv(("user", "hi"), ("assistant", "bye <|im_end|>"))
    [rej] = encoder(test_tokenizer, control_tokens=ControlTokens.reject).encode_batch([c])
    assert isinstance(rej, list) and rej[0].code is Reason.control_token_in_content
    enc = encoder(test_tokenizer, control_tokens=ControlTokens.allow)
    [ex] = enc.encode_batch([c])
    assert ex.input_ids.tolist() == hf_ids(test_tokenizer, enc, c)  # plain HF: the text became the token


def test_template_error_is_a_reject_naming_template_and_record(test_tokenizer):
    bad = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system!') }}{% endif %}" \
          "{{ m['content'] }}<|im_end|>{% endfor %}"
    enc = encoder(test_tokenizer, bad)
    c = conv(("system", "x"), ("user", "hi"), ("assistant", "yo"), id="rec-7")
    [rej] = enc.encode_batch([c])
    assert rej[0].code is Reason.template_error
    assert "test template" in rej[0].message and "rec-7" in rej[0].message and "no system!" in rej[0].message


def test_template_that_drops_the_reply_is_rejected_not_guessed(test_tokenizer):
    drops = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['role'] != 'assistant' %}" \
            "{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}" \
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    with pytest.raises(TemplateError, match="drops the reply"):
        encoder(test_tokenizer, drops)


def test_reply_rewritten_by_template_is_not_located(test_tokenizer):
    upper = test_tokenizer.chat_template.replace("{{ m['content'] }}",
                                                 "{{ m['content'] | upper if m['content'] != 'A9probe reply text' "
                                                 "and m['role'] == 'assistant' else m['content'] }}")
    [rej] = encoder(test_tokenizer, upper).encode_batch([conv(("user", "hi"), ("assistant", "quiet words"))])
    # the conservation check names the loss first: the reply's text is not in the render
    assert rej[0].code is Reason.template_drops_content
    assert rej[0].path == "messages[1].content"
    # even when that drop is accepted, a reply that cannot be located is never guessed
    [rej] = ChatEncoder(test_tokenizer, MaskOptions(allow_drop=["content"]), TemplateSource(upper, "t")).encode_batch(
        [conv(("user", "hi"), ("assistant", "quiet words"))])
    assert rej[0].code is Reason.reply_not_located


def test_hostile_template_is_bounded(test_tokenizer):
    bomb = "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}" \
           "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}"
    with pytest.raises(TemplateError):
        encoder(test_tokenizer, bomb)  # the probe render hits the output bound instead of running for hours


def test_sandbox_blocks_attribute_escape(test_tokenizer):
    evil = "{{ messages.__class__.__mro__ }}{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}"
    with pytest.raises(TemplateError):
        encoder(test_tokenizer, evil)


def test_missing_template_and_bad_override_are_config_errors(test_tokenizer, tmp_path):
    from sftdata.chat.template import load_template_source

    test_tokenizer_no = type("T", (), {"chat_template": None})()
    with pytest.raises(TemplateError, match="--chat-template FILE"):
        load_template_source(test_tokenizer_no, "tok", None, None)
    with pytest.raises(TemplateError, match="does not exist"):
        load_template_source(test_tokenizer, "tok", str(tmp_path / "nope.jinja"), None)
    with pytest.raises(TemplateError, match="must contain"):
        prompt_format_to_jinja("{response} then {prompt}")


def test_no_supervised_tokens_when_everything_is_forced_out(test_tokenizer):
    c = parse_conversation({"messages": [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "yo", "train": False},
                                         {"role": "assistant", "content": "there"}]})
    [ex] = encoder(test_tokenizer, masking=Masking.last).encode_batch([c])
    assert supervised_texts(test_tokenizer, ex) == ["there<|im_end|>"]


def test_locate_prefers_earliest_and_trimmed_forms():
    assert locate("ab  x  cd", "  x  ", 0) == (2, 7)
    assert locate("ab[x]cd", " x ", 0) == (3, 4)
    assert locate("a\"q\\\"b", 'q"', 0) == (2, 5)  # JSON-escaped form as last resort


def test_plan_spans_rejects_text_between_prompt_and_reply():
    text = "<u>hi</u><a>INJECTED reply</a>"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "reply"}]
    plan = plan_spans(text, msgs, [None, True], {1: "<u>hi</u><a>"}, ["</a>"], calls_rendered=False,
                      train_eot=True, train_reasoning=True)
    assert plan.code is Reason.mask_methods_disagree


def test_prompt_format_matches_seed_sft_loss(test_tokenizer):
    """Labels from the plain format give the seed document's `calculate_sft_loss` exactly."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    fmt = "<|prompt|> {prompt}<|response|> {response}<|endoftext|>"
    enc = ChatEncoder(test_tokenizer, MaskOptions(prompt_format=fmt),
                      TemplateSource(prompt_format_to_jinja(fmt), "prompt format", True))
    rows = [conv(("user", "马来西亚的首都在哪里?"), ("assistant", "马来西亚的首都是吉隆坡。")),
            conv(("user", "Hello!"), ("assistant", "How can I help you today?"))]
    exs = enc.encode_batch(rows)
    for ex, c in zip(exs, rows, strict=True):
        text = fmt.format(prompt=c.messages[0].content, response=c.messages[1].content)
        assert ex.input_ids.tolist() == test_tokenizer(text, add_special_tokens=False)["input_ids"]
        [sup] = supervised_texts(test_tokenizer, ex)  # " How" merges the prompt's space: straddling token trained
        assert sup.lstrip(" ") == f"{c.messages[1].content}<|endoftext|>"
    width = max(len(e) for e in exs)
    ids = torch.tensor([np.pad(e.input_ids, (0, width - len(e))).tolist() for e in exs])
    labels = torch.tensor([np.pad(e.labels, (0, width - len(e)), constant_values=IGNORE_INDEX).tolist() for e in exs])
    prompt_lengths = torch.tensor([int(np.argmax(e.supervised)) for e in exs])
    torch.manual_seed(0)
    logits = torch.randn(len(exs), width, 400)

    from seed_loss import calculate_sft_loss

    # the seed masks only the prompt; padding must be ignored too, so its `labels` carry -100 there
    padded_ids = torch.where(labels == IGNORE_INDEX, torch.where(torch.arange(width) < torch.tensor(
        [len(e) for e in exs])[:, None], ids, IGNORE_INDEX), ids)
    seed = calculate_sft_loss(logits, padded_ids, prompt_lengths)
    ours = F.cross_entropy(logits[:, :-1].reshape(-1, 400), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    assert torch.allclose(seed, ours)


def test_encoder_pickles_as_path_and_options(tmp_path, test_tokenizer):
    import pickle

    test_tokenizer.save_pretrained(tmp_path)
    enc = ChatEncoder.load(tmp_path, MaskOptions(masking=Masking.last))
    clone = pickle.loads(pickle.dumps(enc))
    assert clone.options == enc.options and clone.template_text == enc.template_text
    c = conv(("user", "hi"), ("assistant", "yo"))
    assert clone.encode_batch([c])[0].input_ids.tolist() == enc.encode_batch([c])[0].input_ids.tolist()


def test_the_stream_gives_each_batch_what_encode_batch_gives_it_whatever_the_chunking(test_tokenizer, monkeypatch):
    """`encode_stream` runs one pipeline through all batches (chunks cross batch boundaries); each batch comes out
    whole, in order, as `encode_batch` alone would give it: empty batches, rejects and multi-turn records included."""
    import sftdata.chat.engine as engine

    enc = encoder(test_tokenizer, control_tokens=ControlTokens.reject)
    records = [conv(("user", f"Question {i}?"), ("assistant", f"Answer {i}."), ("user", "More?"), ("assistant", "No."))
               if i % 3 else conv(("user", "Say <|im_end|> now."), ("assistant", "<|im_end|>")) for i in range(11)]
    batches = [records[:4], [], records[4:5], records[5:11], []]
    alone = [enc.encode_batch(b) for b in batches]
    assert any(isinstance(r, list) for b in alone for r in b) and any(isinstance(r, Example) for b in alone for r in b)

    def same(a, b) -> bool:
        if isinstance(a, list):
            return isinstance(b, list) and [p.code for p in a] == [p.code for p in b]
        return a.input_ids.tolist() == b.input_ids.tolist() and a.supervised.tolist() == b.supervised.tolist()

    for chunk in (1, 3, 1024):
        monkeypatch.setattr(engine, "CHUNK", chunk)
        streamed = list(enc.encode_stream(iter(batches)))
        assert [len(b) for b in streamed] == [len(b) for b in batches]
        assert all(same(a, b) for sa, sb in zip(streamed, alone, strict=True) for a, b in zip(sa, sb, strict=True))
