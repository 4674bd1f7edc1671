"""Options of the mask engine: a closed model, each choice documented (these become CLI flags)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


class MaskOptions(BaseModel):
    """How conversations become ids and supervision masks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    masking: Masking = Masking.assistant
    train_eot: bool = True
    """Train the end-of-turn token(s) of each supervised reply so the model learns to stop."""
    train_reasoning: bool = True
    """Train an assistant turn's think text; empty think blocks are never trained."""
    control_tokens: ControlTokens = ControlTokens.sanitize
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
