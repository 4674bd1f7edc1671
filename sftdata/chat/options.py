"""Options of the mask engine: a closed model, each choice documented (these become CLI flags)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sftdata.chat.limits import TemplateLimits


class Masking(StrEnum):
    """Which turns are in the loss (a message's own `train` field overrides this)."""

    assistant = "assistant"
    """Every assistant turn (default): what the model must generate."""
    last = "last"
    """Only the last assistant turn; earlier replies are context."""
    all = "all"
    """Every token of every turn ("train on inputs"), still never a document's first token."""


class ControlTokens(StrEnum):
    """What to do with message text that spells a control token (`<|im_end|>`, `[INST]`, `</s>`)."""

    sanitize = "sanitize"
    """Encode it as plain text (default): the same ids as `apply_chat_template(..., sanitize_control_tokens=True)`."""
    reject = "reject"
    """Reject the record with `control_token_in_content`."""
    allow = "allow"
    """Plain Hugging Face behaviour: the text becomes the control token (lets data forge turns)."""


class DropKind(StrEnum):
    """A kind of text a template may leave out of the rendered document (named by `--allow-drop`)."""

    tools = "tools"
    """The `tools` definitions (templates without tool support: Gemma, Mistral v0.2, Phi-3, DeepSeek V3...)."""
    system = "system"
    """The system prompt (Mistral v0.3 renders it only before a final user turn; Phi-3 never)."""
    name = "name"
    """A message's `name` field (speaker or tool name), which most templates never print."""
    tool_calls = "tool_calls"
    """An assistant turn's tool calls (name or arguments) on templates that do not render them."""
    content = "content"
    """Message content (Llama 3.1 drops assistant text written beside a tool call)."""


class ReasoningField(StrEnum):
    """What to do with a `reasoning` field when the template has no slot for it (Qwen2.5, Llama, Gemma...)."""

    inline = "inline"
    """Put it in the content as a leading `<think>\n...\n</think>\n\n` block (how DeepSeek-R1 distills write it)."""
    reject = "reject"
    """Reject the record with `template_drops_reasoning`."""


class ReasoningHistory(StrEnum):
    """What to do when the template drops the reasoning of earlier turns (Qwen3, DeepSeek V3, gpt-oss)."""

    split = "split"
    """Each assistant turn whose reasoning the full render loses becomes its own document `ID#K` (the
    conversation up to that turn, rendered as at inference, only that turn supervised)."""
    last = "last"
    """Supervise only the turns whose reasoning is rendered; the others stay as unsupervised context (counted)."""
    reject = "reject"
    """Reject the record with `template_drops_reasoning`."""


class MaskOptions(BaseModel):
    """How conversations become ids and supervision masks."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    masking: Masking = Masking.assistant
    """Which assistant turns are in the loss (a message's own `train` field overrides it)."""
    train_eot: bool = True
    """Train the end-of-turn token(s) of each supervised reply so the model learns to stop."""
    train_reasoning: bool = True
    """Train an assistant turn's think text; empty think blocks are never trained. Off, the thought is masked
    but still kept in the document."""
    allow_drop: list[DropKind] = Field(default_factory=list)
    """Kinds of text the template may leave out without rejecting the record (counted in the manifest),
    e.g. `tools,system`. By default every drop is a reject naming what the template drops."""
    reasoning_field: ReasoningField = ReasoningField.inline
    """A reasoning field on a template with no reasoning slot: inline it as a leading think block, or reject."""
    reasoning_history: ReasoningHistory = ReasoningHistory.split
    """Turns whose reasoning the template drops from history: split them into `ID#K` documents, supervise only
    the last ones, or reject."""
    control_tokens: ControlTokens = ControlTokens.sanitize
    """What to do with message text that spells a control token."""
    template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra variables for the template, e.g. `{"enable_thinking": false}`."""
    date: str | None = "26 Jul 2024"
    """Fixed `date_string` / `strftime_now` result for templates that print today's date (Llama 3.x),
    so that runs are reproducible. None uses the real clock (not reproducible)."""
    chat_template: str | None = None
    """Path to a Jinja file that overrides the tokenizer's chat template."""
    prompt_format: str | None = None
    """A plain format for base models with no chat template, e.g.
    `<|prompt|> {prompt}<|response|> {response}<|endoftext|>` (single-turn records only)."""
    template_limits: TemplateLimits = Field(default_factory=TemplateLimits)
    """Bounds on what the template may build while rendering one record (string and list sizes, range,
    call depth, output, seconds); a record that hits one is rejected with `template_limit`."""
