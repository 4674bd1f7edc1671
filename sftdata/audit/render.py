"""Rendering for the audit: Hugging Face's own `apply_chat_template`, set up as the manifest says.

The audit must not trust the writer, so it renders with transformers directly: the template text
recorded in the manifest, its `template_kwargs`, the pinned date (passed both as `date_string`, which
Llama 3.x templates read first, and as a `strftime_now` that formats that date, which other templates
call), and `sanitize_control_tokens=True` when the manifest says `control_tokens: sanitize`.

Ids come from one batched encode of the rendered texts (`backend_tokenizer.encode_batch`, which is
what `apply_chat_template(tokenize=True)` does for a fast tokenizer), so every token keeps its
character offsets for the mask derivation. A conversation whose text spells a control token inside a
message is the exception: with sanitize on, Hugging Face encodes those pieces as plain text, so its ids
come from `apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)` itself and its offsets
from encoding the rendered text in the same pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

DATE_FORMATS = ("%d %b %Y", "%Y-%m-%d", "%d %B %Y")


@dataclass(frozen=True)
class RenderSettings:
    """The manifest's options that change what a conversation renders to and which tokens are trained."""

    chat_template: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    date: str | None = None
    sanitize: bool = True
    masking: str = "assistant"
    train_eot: bool = True
    train_reasoning: bool = True
    prompt_format: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], chat_template: str | None) -> RenderSettings:
        """From a manifest's `options` (mask options nested under `mask`, or flat)."""
        mask = options.get("mask") if isinstance(options.get("mask"), dict) else options
        return cls(
            chat_template=chat_template,
            template_kwargs=dict(mask.get("template_kwargs") or {}),
            date=mask.get("date"),
            sanitize=(mask.get("control_tokens") or "sanitize") == "sanitize",
            masking=str(mask.get("masking") or "assistant"),
            train_eot=bool(mask.get("train_eot", True)),
            train_reasoning=bool(mask.get("train_reasoning", True)),
            prompt_format=mask.get("prompt_format"),
        )


def pinned_date_kwargs(date: str | None) -> dict[str, Any]:
    """Template variables that make date-printing templates reproducible (empty when `date` is None)."""
    if not date:
        return {}
    fixed = None
    for fmt in DATE_FORMATS:
        try:
            fixed = datetime.strptime(date, fmt)
            break
        except ValueError:
            continue

    def strftime_now(fmt: str) -> str:
        return fixed.strftime(fmt) if fixed is not None else date

    return {"date_string": date, "strftime_now": strftime_now}


class Renderer:
    """Renders conversations with one tokenizer and one set of settings."""

    def __init__(self, tokenizer: Any, settings: RenderSettings) -> None:
        self.tok = tokenizer
        self.settings = settings
        self.template = settings.chat_template or getattr(tokenizer, "chat_template", None)
        self.kwargs = {**settings.template_kwargs, **pinned_date_kwargs(settings.date)}

    def text(self, messages: list[dict], tools: list[dict] | None = None, generation: bool = False) -> str:
        """The rendered text (raises whatever the template raises)."""
        return self.tok.apply_chat_template(messages, tools=tools, chat_template=self.template, tokenize=False,
                                            add_generation_prompt=generation, **self.kwargs)

    def reference_ids(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """Hugging Face's own ids for a conversation, exactly as `apply_chat_template(tokenize=True)` gives them."""
        out = self.tok.apply_chat_template(messages, tools=tools, chat_template=self.template, tokenize=True,
                                           sanitize_control_tokens=self.settings.sanitize, **self.kwargs)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    @cached_property
    def control_pattern(self) -> re.Pattern | None:
        """Matches control-token text in messages (what sanitize re-encodes as plain text)."""
        if not self.settings.sanitize or not self.template:
            return None
        try:
            tokens = self.tok._get_control_tokens(self.template)
        except Exception:  # older transformers: every added token counts
            tokens = tuple(self.tok.added_tokens_encoder)
        tokens = sorted((t for t in tokens if t), key=len, reverse=True)
        return re.compile("|".join(map(re.escape, tokens))) if tokens else None

    def needs_sanitize(self, messages: list[dict], tools: list[dict] | None) -> bool:
        """Does any message text (or tool schema) spell a control token?"""
        pattern = self.control_pattern
        if pattern is None:
            return False
        return pattern.search(repr(messages) + repr(tools or "")) is not None

    def encode(self, texts: list[str]) -> list[Any]:
        """Batch-encode rendered texts without adding special tokens (the template wrote them)."""
        backend = self.tok.backend_tokenizer
        return backend.encode_batch(texts, add_special_tokens=False)
