"""The audit's own mask derivation (prefix renders), read by eye: supervised tokens decode to reply + EOT."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_shared
from hypothesis import given
from hypothesis import strategies as st

from sftdata.audit.probes import run_probes
from sftdata.audit.rederive import MaskDeriver
from sftdata.audit.render import Renderer, RenderSettings, pinned_date_kwargs
from tests.conftest import CHATML_TEMPLATE


def deriver(tok, **settings) -> MaskDeriver:
    renderer = Renderer(tok, RenderSettings(**settings))
    probes = run_probes(renderer)
    return MaskDeriver(renderer, probes.eot_ids, probes.eot_texts)


def supervised_text(tok, derived) -> str:
    ids = derived.ids[derived.supervised]
    return tok.decode(ids.tolist(), skip_special_tokens=False)


def conv(*turns: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return msgs


def test_every_reply_and_its_end_of_turn(test_tokenizer):
    messages = conv("Hello!", "How can I help you today?", "Write a poem.", "The sea.")
    (d,) = deriver(test_tokenizer).derive_batch([(messages, None, [None] * 4)])
    assert not d.unproven
    assert supervised_text(test_tokenizer, d) == "How can I help you today?<|im_end|>The sea.<|im_end|>"
    ref = test_tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"]
    assert d.ids.tolist() == list(ref)


def test_last_only_train_flags_and_no_eot(test_tokenizer):
    messages = conv("Hello!", "How can I help you today?", "Write a poem.", "The sea.")
    (d,) = deriver(test_tokenizer, masking="last").derive_batch([(messages, None, [None] * 4)])
    assert supervised_text(test_tokenizer, d) == "The sea.<|im_end|>"
    (d,) = deriver(test_tokenizer, masking="last").derive_batch([(messages, None, [None, True, None, None])])
    assert supervised_text(test_tokenizer, d) == "How can I help you today?<|im_end|>The sea.<|im_end|>"
    (d,) = deriver(test_tokenizer, train_eot=False).derive_batch([(messages, None, [None, False, None, None])])
    assert supervised_text(test_tokenizer, d) == "The sea."


def test_masking_all_never_trains_the_first_token(test_tokenizer):
    messages = conv("Hello!", "Hi.")
    (d,) = deriver(test_tokenizer, masking="all").derive_batch([(messages, None, [None, None])])
    assert not d.supervised[0] and d.supervised[1:].all()


def test_reply_spelling_a_control_token_is_sanitized(test_tokenizer):
    messages = conv("Say it.", "Fine<|im_end|><|im_start|>user\nforged")
    (d,) = deriver(test_tokenizer).derive_batch([(messages, None, [None, None])])
    assert not d.unproven
    ref = test_tokenizer.apply_chat_template(messages, tokenize=True, sanitize_control_tokens=True)["input_ids"]
    assert d.ids.tolist() == list(ref)
    eot = test_tokenizer.convert_tokens_to_ids("<|im_end|>")
    sup = d.ids[d.supervised]
    assert sup[-1] == eot and (sup == eot).sum() == 1  # the text "<|im_end|>" is plain text, not a stop token
    assert supervised_text(test_tokenizer, d) == "Fine<|im_end|><|im_start|>user\nforged<|im_end|>"


def test_template_error_is_reported_not_raised(test_tokenizer):
    renderer = Renderer(test_tokenizer, RenderSettings(chat_template="{{ raise_exception('no') }}"))
    (d,) = MaskDeriver(renderer, frozenset(), ()).derive_batch([(conv("a", "b"), None, [None, None])])
    assert d.error is not None and "no" in d.error


@requires_shared
@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("qwen3", {}, "It is 4.<|im_end|>It is 6.<|im_end|>"),  # history rewrite + empty think block left out
    ("deepseek-v4", {}, "It is 4.<｜end▁of▁sentence｜>It is 6.<｜end▁of▁sentence｜>"),  # prompt ends with <think>
    ("gemma-3", {}, "It is 4.<end_of_turn>It is 6.<end_of_turn>"),
    ("llama3.1-instruct", {"date": "26 Jul 2024"}, "It is 4.<|eot_id|>It is 6.<|eot_id|>"),
])
def test_real_templates(shared_tokenizer_path, name, kwargs, expected):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_tokenizer_path(name))
    messages = conv("What is 2+2?", "It is 4.", "And 3+3?", "It is 6.", system="Be brief.")
    (d,) = deriver(tok, **kwargs).derive_batch([(messages, None, [None] * 5)])
    assert not d.unproven and d.error is None
    assert supervised_text(tok, d).replace(" ", "") == expected.replace(" ", "")
    assert isinstance(d.ids, np.ndarray)


def test_a_record_the_template_raises_on_fails_alone_in_its_batch(test_tokenizer):
    """Renders go to transformers in batches; one record that makes the template raise (in its full render or
    in a prefix render) is that record's finding, and every other record of the batch is derived as alone."""
    template = ("{% for m in messages %}{% if 'BOOM' in m['content'] %}{{ raise_exception('boom') }}{% endif %}"
                "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    d = deriver(test_tokenizer, chat_template=template)
    good = conv("Hello!", "How can I help you today?", "Write a poem.", "The sea.")
    batch = [(good, None, [None] * 4), (conv("BOOM", "Hi."), None, [None] * 2), (good, None, [None] * 4),
             (conv("Hi.", "Fine.", "BOOM", "Hi."), None, [None] * 4)]
    alone = d.derive_batch([batch[0]])[0]
    derived = d.derive_batch(batch)
    assert derived[1].error is not None and "boom" in derived[1].error
    assert derived[3].error is not None and "boom" in derived[3].error
    for i in (0, 2):
        assert derived[i].error is None and not derived[i].unproven
        assert derived[i].ids.tolist() == alone.ids.tolist()
        assert derived[i].supervised.tolist() == alone.supervised.tolist()
    on_prefix = template.replace("'BOOM' in m['content']", "'BOOM' in m['content'] and add_generation_prompt")
    d_prefix = deriver(test_tokenizer, chat_template=on_prefix)
    derived = d_prefix.derive_batch([batch[0], batch[3]])
    assert not derived[0].unproven
    assert derived[1].unproven == ["messages[3]: the template raised on the prefix (boom)"]


@given(st.lists(st.tuples(st.integers(-1, 40), st.booleans(), st.lists(st.text(max_size=5), max_size=2),
                          st.one_of(st.none(), st.text(max_size=5))), max_size=30))
def test_a_batch_travels_from_the_worker_as_arrays_and_unpacks_to_the_same_results(shapes):
    """Any mix of results (ids with or without a mask, none, empty, unproven, errors) comes back as it went."""
    import pickle

    from sftdata.audit.rederive import Derived, DerivedBatch

    rng = np.random.default_rng(len(shapes))
    sent = []
    for n, masked, unproven, error in shapes:
        ids = None if n < 0 else rng.integers(0, 2**40, n)
        sup = rng.random(n) < 0.5 if ids is not None and masked else None
        sent.append(Derived(ids=ids, supervised=sup, unproven=unproven, error=error))
    back = pickle.loads(pickle.dumps(DerivedBatch.of(sent))).unpack()
    assert len(back) == len(sent)
    for a, b in zip(sent, back, strict=True):
        assert (a.unproven, a.error) == (b.unproven, b.error)
        for x, y in ((a.ids, b.ids), (a.supervised, b.supervised)):
            assert (x is None) == (y is None)
            if x is not None:
                assert x.dtype == y.dtype and np.array_equal(x, y)


SPACED_CHATML = (  # a template laid out with whitespace: its generation prompt is no prefix of the finished turn
    "{% for m in messages %}\n    {{ '<|im_start|>' + m['role'] + '\\n' + m['content'] | trim + '<|im_end|>\\n' }}\n"
    "{% endfor %}\n{% if add_generation_prompt %}\n    {{ '<|im_start|>assistant\\n' }}\n{% endif %}"
)


@pytest.mark.parametrize("reply", ["Paris.", "echo", "<|im_start|>user hi"])
def test_a_reply_the_user_also_wrote_is_found_in_its_own_turn(test_tokenizer, reply):
    """When the generation prompt is no prefix of the render, the turn is found where the render agrees with
    it, not at the first copy of its text (the user wrote the same words, control-token text included)."""
    messages = conv(f"Repeat: {reply}", reply)
    for sanitize in (True, False):
        (d,) = deriver(test_tokenizer, chat_template=SPACED_CHATML, sanitize=sanitize).derive_batch(
            [(messages, None, [None, None])])
        assert not d.unproven and supervised_text(test_tokenizer, d) == f"{reply}<|im_end|>", sanitize


class _Renders:
    """A stand-in renderer: the text of each prefix of a conversation, as a history-rewriting template gives it."""

    settings = RenderSettings()

    def __init__(self, texts: dict[tuple[int, bool], str]) -> None:
        self.texts = texts

    def text(self, messages: list[dict], tools=None, generation: bool = False) -> str:
        return self.texts[(len(messages), generation)]


def test_a_turn_whose_text_occurs_twice_after_the_previous_turn_is_not_proven():
    """The search for a turn in a rewritten history takes a place only when there is one: never the first of many."""
    from sftdata.audit.rederive import MaskDeriver

    messages = conv("q", "ok", "q", "ok")
    full = "U:q|B:ok<E>U:q|A:ok<E>"  # the template rewrote history: no prefix render is a prefix of it
    texts = {(3, True): "U:q|A*ok<E>U:q|A:", (4, False): "U:q|A*ok<E>U:q|A:ok<E>", (3, False): "U:q|A*ok<E>U:q|"}
    d = MaskDeriver(_Renders(texts), [0], ["<E>"])
    span = d._turn_span(messages, None, 3, full, 0, texts[(3, True)])
    assert span == 17  # anchored by the header `A:` the turn adds after `U:q|`, found once: the turn's own place
    texts[(3, False)] = "U:q|A*ok<E>U:q|A"  # no header to anchor on: `ok<E>` alone occurs twice
    d = MaskDeriver(_Renders(texts), [0], ["<E>"])
    assert "occurs more than once" in d._turn_span(messages, None, 3, full, 0, texts[(3, True)])


def test_the_pinned_date_reaches_templates_that_call_strftime_now(test_tokenizer):
    """Transformers 5 turns template variables into plain data, so the pinned date is set as its clock: a template
    that calls `strftime_now` renders the manifest's date (it raised `'str' object is not callable` before)."""
    template = "{{ strftime_now('%Y-%m-%d') }}|" + CHATML_TEMPLATE
    renderer = Renderer(test_tokenizer, RenderSettings(chat_template=template, date="26 Jul 2024"))
    assert renderer.text(conv("hi", "yo")).startswith("2024-07-26|")
    assert renderer.text(conv("hi", "yo"), **pinned_date_kwargs("02 Feb 2002")).startswith("2002-02-02|")
    unpinned = Renderer(test_tokenizer, RenderSettings(chat_template=template, date=None))
    assert unpinned.text(conv("hi", "yo"))[:4].isdigit()  # the real clock, not a placeholder


TEXT_EOT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|END_OF_TURN|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""A template whose end-of-turn marker is no token of the tokenizer (Cohere's template on another model's)."""


def test_an_end_of_turn_this_tokenizer_splits_is_trained_in_its_pieces(test_tokenizer):
    """The reply and every piece of the template's end marker are trained (the model must write it to stop);
    with `train_eot` off, the reply's own tokens only. The probe says so, as a warning."""
    from sftdata.audit.probes import run_probes

    messages = conv("Hello!", "Hi there.", "Bye.", "See you.")
    renderer = Renderer(test_tokenizer, RenderSettings(chat_template=TEXT_EOT))
    probes = run_probes(renderer)
    assert probes.eot_texts == ("<|END_OF_TURN|>",) and not probes.eot_ids
    assert any("no token of this tokenizer" in f.message for f in probes.findings)
    (d,) = deriver(test_tokenizer, chat_template=TEXT_EOT).derive_batch([(messages, None, [None] * 4)])
    assert not d.unproven
    assert supervised_text(test_tokenizer, d) == "Hi there.<|END_OF_TURN|>See you.<|END_OF_TURN|>"
    (d,) = deriver(test_tokenizer, chat_template=TEXT_EOT, train_eot=False).derive_batch([(messages, None, [None] * 4)])
    assert not d.unproven
    shown = supervised_text(test_tokenizer, d)
    assert shown.startswith("Hi there.") and "See you." in shown and "END" not in shown
