"""Reason codes: why a record was rejected or a document cut.

Every reject in `rejects.jsonl`, every count in a manifest and every line of `sftdata validate`
names one of these codes. They are part of the public contract: add members, never rename one.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a record was not written as it came (one code per problem; a record may have several)."""

    # -- reading: the row could not be turned into a JSON-like object
    invalid_json = "invalid_json"
    """The line or file is not valid JSON (the raw text is kept in the reject)."""
    invalid_utf8 = "invalid_utf8"
    """The bytes are not valid UTF-8."""
    not_an_object = "not_an_object"
    """The row is valid JSON but not an object (a list, a number, a string...)."""
    too_deep = "too_deep"
    """Nesting deeper than the reader allows (guards against pathological rows)."""
    oversize_row = "oversize_row"
    """One row (a JSONL line, a JSON array element, a Parquet/CSV cell) is larger than `max_row_bytes`; it is
    streamed past, never held whole, and the reject records its position and size, not its text."""

    # -- format: the row does not match the declared or detected input format
    unknown_format = "unknown_format"
    """No known format fits the row's keys; name the format or give a column map."""
    missing_field = "missing_field"
    """A field the format requires is absent or null."""
    wrong_type = "wrong_type"
    """A field has the wrong JSON type (e.g. a number where text is expected)."""
    bad_content_part = "bad_content_part"
    """A typed content part is not text/reasoning (images, audio) or has no text."""
    bad_loss_weight = "bad_loss_weight"
    """A LLaMA-Factory `loss_weight` other than 0 or 1 (fractional weights are not supported)."""

    # -- text hygiene
    nul_byte = "nul_byte"
    """Text contains a NUL character, which no tokenizer should see."""
    lone_surrogate = "lone_surrogate"
    """Text contains an unpaired UTF-16 surrogate (broken Unicode from a bad export)."""
    oversize_field = "oversize_field"
    """A single text field is larger than the configured limit."""

    # -- conversation rules
    unknown_role = "unknown_role"
    """A role outside system/user/assistant/tool (after the format's role map)."""
    empty_conversation = "empty_conversation"
    """The record has no messages at all."""
    empty_reply = "empty_reply"
    """An assistant message with no content, reasoning or tool calls (or only whitespace)."""
    empty_message = "empty_message"
    """A user or tool message with no content (or only whitespace). Empty system messages are legal."""
    no_assistant_turn = "no_assistant_turn"
    """No assistant message would be trained: nothing to learn from."""
    system_not_first = "system_not_first"
    """A system message after the first position."""
    tool_result_without_call = "tool_result_without_call"
    """A tool message with no assistant tool call before it."""
    bad_tool_arguments = "bad_tool_arguments"
    """Tool-call arguments that are not a JSON object (or a string holding one)."""
    bad_tools = "bad_tools"
    """The `tools` field is not a list of JSON-schema objects (or a JSON string holding one)."""

    # -- encoding (the mask engine)
    template_error = "template_error"
    """The chat template raised while rendering this record."""
    reply_not_located = "reply_not_located"
    """An assistant reply could not be found in the rendered text: no mask can be proven."""
    mask_methods_disagree = "mask_methods_disagree"
    """The two independent mask derivations differ: the record is rejected, never guessed."""
    no_supervised_tokens = "no_supervised_tokens"
    """After masking, no token is in the loss."""
    control_token_in_content = "control_token_in_content"
    """Message text spells a control token and `control_tokens: reject` is set."""
    tokenizer_mismatch = "tokenizer_mismatch"
    """The ids differ from the template's own ids (a bug guard: should never happen)."""
    template_limit = "template_limit"
    """Rendering this record hit a named template limit (output size, string/list size, range, recursion, time)."""

    # -- conservation: a text the user gave would not reach the training document
    template_drops_reasoning = "template_drops_reasoning"
    """The template does not render an assistant turn's reasoning (and no reasoning policy keeps it)."""
    template_drops_tools = "template_drops_tools"
    """The template does not render the `tools` definitions (allow with `--allow-drop tools`)."""
    template_drops_system = "template_drops_system"
    """The template does not render the system prompt (allow with `--allow-drop system`)."""
    template_drops_name = "template_drops_name"
    """The template does not render a message's `name` field (allow with `--allow-drop name`)."""
    template_drops_tool_calls = "template_drops_tool_calls"
    """The template does not render an assistant turn's tool calls (name or arguments)."""
    template_drops_content = "template_drops_content"
    """The template does not render some message content (a user, tool or assistant text)."""

    # -- length
    too_long = "too_long"
    """Longer than `max_length` with the `reject` policy."""
    truncated = "truncated"
    """Cut to `max_length` with the `truncate` policy (counted, still written)."""
    prompt_too_long = "prompt_too_long"
    """With `truncate`, not even the first reply starts within `max_length`."""
