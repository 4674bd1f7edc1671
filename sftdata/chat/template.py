"""Where the chat template comes from, and what the engine learns about it once, from probes.

Sources, in order: `MaskOptions.chat_template` (a file that overrides the tokenizer's template),
`MaskOptions.prompt_format` (a plain format for base models, turned into an equivalent Jinja template
so that every later step is the same), then the tokenizer's own template. No template at all is a
`TemplateError` that says which option to set.

The `TemplateProfile` is computed once per template by rendering tiny probe conversations:
- `eot_texts`: the control token(s) the template writes right after an assistant reply (`<|im_end|>`,
  `<|eot_id|>`, `<end_of_turn>`, `</s>`, `<|end|>`...): the first added token in the text that follows
  a probe reply; else its first `<tag>` (a template used with a tokenizer of another family); else the
  plain closing text (stripped).
- `string_arguments`: DeepSeek-style templates concatenate `tool_call.function.arguments` as a string
  and fail on the JSON object our records hold; for those the arguments are passed as compact JSON
  text (`json.dumps`), which is what such a model was trained on.
- `renders_tool_calls`: whether a probe tool call's name appears at all (templates without tool
  support silently drop `tool_calls`). The probe call has a 9-character alphanumeric id, the one form
  every template accepts (Mistral v0.3 raises on any other id, and was wrongly thought to have no tool
  support).
- `reasoning_slot`: whether a `reasoning` field (passed as `reasoning_content`, `thinking` and
  `reasoning`, as transformers' callers do) is rendered on the final turn (Qwen3 yes; Qwen2.5, Llama,
  Gemma, Mistral, DeepSeek V3 no).
- `keeps_content_think`: whether a leading `<think>` block written in the content survives on the final
  turn (most templates print content as is; Qwen3 splits it into its own slot; DeepSeek V3 strips it).
- `think_opener`: the unclosed tag the generation prompt ends with (`<think>\n` on DeepSeek-R1-style
  templates), or None: then the thought is written after the prompt, R1-style, when no render keeps it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from sftdata.chat.jinja_env import TemplateLimitError, render
from sftdata.errors import TemplateError

PROBE_USER = "Q7probe user text"
PROBE_REPLY = "A9probe reply text"
PROBE_TOOL = "probe_tool_fn"
PROBE_CALL_ID = "pr0beCa11"
"""Nine alphanumeric characters: Mistral v0.3's template raises on any other tool-call id."""
PROBE_THOUGHT = "R5probe thought text"
_OPENER = re.compile(r"<(think|thinking|reasoning|thought)>\s*$")
_TAG = re.compile(r"<[^<>\s]{1,40}>")


@dataclass(frozen=True)
class TemplateSource:
    """The exact template text used (it goes into the manifest) and where it came from."""

    text: str
    origin: str
    """A short name for messages: a file path, `TOKENIZER chat template` or `prompt format`."""
    from_prompt_format: bool = False


def prompt_format_to_jinja(fmt: str) -> str:
    """Turn `<|prompt|> {prompt}<|response|> {response}<|endoftext|>` into an equivalent chat template.

    Each user/assistant pair renders the format once; a system message is prepended to the first prompt
    followed by a blank line. The text between `{prompt}` and `{response}` is the generation prompt,
    so the supervised part is the response plus whatever the format writes after it.
    """
    if fmt.count("{prompt}") != 1 or fmt.count("{response}") != 1 or fmt.index("{prompt}") > fmt.index("{response}"):
        raise TemplateError(f"prompt format {fmt!r} must contain `{{prompt}}` once, then `{{response}}` once, e.g. "
                            "'<|prompt|> {prompt}<|response|> {response}<|endoftext|>'")
    pre, rest = fmt.split("{prompt}")
    mid, post = rest.split("{response}")

    def lit(s: str) -> str:  # a Jinja string literal holding exactly `s` (unicode escapes survive the lexer)
        return "'" + "".join(f"\\U{ord(c):08x}" for c in s) + "'"

    return (
        "{%- set ns = namespace(sys='') -%}"
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'system' -%}{%- set ns.sys = m['content'] + '\\n\\n' -%}"
        f"{{%- elif m['role'] == 'user' -%}}{{{{ {lit(pre)} + ns.sys + m['content'] + {lit(mid)} }}}}"
        "{%- set ns.sys = '' -%}"
        f"{{%- elif m['role'] == 'assistant' -%}}{{{{ m['content'] + {lit(post)} }}}}"
        "{%- else -%}{{ raise_exception('the prompt format only has user and assistant turns, not ' + m['role']) }}"
        "{%- endif -%}{%- endfor -%}"
    )


def load_template_source(tokenizer: Any, tokenizer_name: str, chat_template: str | None,
                         prompt_format: str | None) -> TemplateSource:
    """Pick the template text: override file, plain prompt format, or the tokenizer's own."""
    if chat_template is not None and prompt_format is not None:
        raise TemplateError("set either `chat_template` (a Jinja file) or `prompt_format` (a plain format), not both")
    if chat_template is not None:
        path = Path(chat_template)
        if not path.is_file():
            raise TemplateError(f"chat template file {path} does not exist; pass a path to a .jinja file")
        return TemplateSource(path.read_text(encoding="utf-8"), str(path))
    if prompt_format is not None:
        return TemplateSource(prompt_format_to_jinja(prompt_format), "prompt format", from_prompt_format=True)
    text = getattr(tokenizer, "chat_template", None)
    if isinstance(text, dict):  # named templates: the default one is what apply_chat_template uses
        text = text.get("default")
    if not text:
        raise TemplateError(f"tokenizer {tokenizer_name} has no chat template; pass `--chat-template FILE` or "
                            "`--prompt-format '<|prompt|> {prompt}<|response|> {response}<|endoftext|>'`")
    return TemplateSource(text, f"{tokenizer_name} chat template")


@dataclass(frozen=True)
class TemplateProfile:
    """Facts about one template learned from probe renders (see module docstring)."""

    eot_texts: tuple[str, ...]
    string_arguments: bool
    renders_tool_calls: bool
    reasoning_slot: bool = False
    keeps_content_think: bool = True
    think_opener: str | None = None
    """The text the generation prompt opens the thought with (`<think>\n`), when it ends with one."""

    @property
    def think_close(self) -> str:
        """The tag that closes `think_opener` (`</think>`)."""
        m = _OPENER.search(self.think_opener or "<think>")
        return f"</{m.group(1)}>" if m else "</think>"


def _probe(template: jinja2.Template, base: dict[str, Any], messages: list[dict[str, Any]],
           generation_prompt: bool = False) -> str | None:
    try:
        return render(template, {**base, "messages": messages, "tools": None, "documents": None,
                                 "add_generation_prompt": generation_prompt})
    except TemplateLimitError as err:  # a hostile or broken template: stop before any record, naming the bound
        raise TemplateError(f"the chat template hit a limit on a two-message probe conversation: {err}. Raise "
                            f"`template_limits.{err.limit}` only for a template you trust") from None
    except jinja2.exceptions.SecurityError as err:
        raise TemplateError(f"the chat template broke out of the sandbox's rules on a probe conversation: {err}"
                            ) from None
    except Exception:  # noqa: BLE001 - a probe the template refuses simply teaches us nothing
        return None


def _closing(tail: str, added_tokens: list[str]) -> tuple[str, ...]:
    """The end-of-turn text at the start of what follows a reply (see `TemplateProfile.eot_texts`)."""
    found = sorted((tail.find(t), -len(t), t) for t in added_tokens if t and not t.isspace() and t in tail)
    if found:
        return (found[0][2],)
    tag = _TAG.search(tail)
    if tag:  # the template's control text is not a token of this tokenizer: its first tag closes the turn
        return (tag.group(0),)
    return (tail.strip(),) if tail.strip() else ()


def profile_template(template: jinja2.Template, base_vars: dict[str, Any], added_tokens: list[str],
                     origin: str) -> TemplateProfile:
    """Render probes once and derive the template's end-of-turn text and tool-call conventions."""
    user = {"role": "user", "content": PROBE_USER}
    text = _probe(template, base_vars, [user, {"role": "assistant", "content": PROBE_REPLY}])
    if text is None or PROBE_REPLY not in text:
        raise TemplateError(f"{origin} cannot render a plain user/assistant exchange, or drops the reply; "
                            "is it a chat template?")
    eot = _closing(text[text.rindex(PROBE_REPLY) + len(PROBE_REPLY):], added_tokens)
    # an earlier turn may close differently (gpt-oss: `<|end|>` mid-conversation, `<|return|>` at the end)
    two = _probe(template, base_vars, [user, {"role": "assistant", "content": PROBE_REPLY + "1"},
                                       {"role": "user", "content": PROBE_USER + "2"},
                                       {"role": "assistant", "content": PROBE_REPLY}])
    if two is not None and PROBE_REPLY + "1" in two:
        start = two.index(PROBE_REPLY + "1") + len(PROBE_REPLY) + 1
        mid = two[start:two.find(PROBE_USER + "2", start)] if PROBE_USER + "2" in two[start:] else ""
        eot = eot + tuple(t for t in _closing(mid, added_tokens) if t not in eot)

    call = {"id": PROBE_CALL_ID, "type": "function", "function": {"name": PROBE_TOOL, "arguments": {"x": 1}}}
    reply = {"role": "assistant", "content": "", "tool_calls": [call]}
    with_dict = _probe(template, base_vars, [user, reply])
    string_arguments = False
    renders = with_dict is not None and PROBE_TOOL in with_dict
    if with_dict is None or "{'x': 1}" in with_dict:
        call_s = {**call, "function": {"name": PROBE_TOOL, "arguments": json.dumps({"x": 1})}}
        with_str = _probe(template, base_vars, [user, {**reply, "tool_calls": [call_s]}])
        if with_str is not None and PROBE_TOOL in with_str:
            string_arguments, renders = True, True
    slot = _probe(template, base_vars, [user, {"role": "assistant", "content": PROBE_REPLY, "reasoning_content":
                                               PROBE_THOUGHT, "thinking": PROBE_THOUGHT, "reasoning": PROBE_THOUGHT}])
    inline = _probe(template, base_vars, [user, {"role": "assistant",
                                                 "content": f"<think>\n{PROBE_THOUGHT}\n</think>\n\n{PROBE_REPLY}"}])
    prompt = _probe(template, base_vars, [user], generation_prompt=True) or ""
    opener = _OPENER.search(prompt)
    return TemplateProfile(eot_texts=eot, string_arguments=string_arguments, renders_tool_calls=renders,
                           reasoning_slot=slot is not None and PROBE_THOUGHT in slot,
                           keeps_content_think=inline is not None and PROBE_THOUGHT in inline,
                           think_opener=opener.group(0) if opener else None)
