"""What every format adapter returns, and the field rules they share.

An adapter maps one raw row (a dict, after the column map) onto normal-form dicts of the
`Conversation` shape and does nothing more; `parse_conversation` then checks types and rules. Where
the row cannot even be mapped (a required field missing, a function call that is not JSON) the
adapter returns the problems instead, so the reject still names every reason it can.

Shared rules, documented once:
- `loss_weight` / `weight` on a message (LLaMA-Factory, axolotl): 0 -> `train: false`, 1 -> `train: true`,
  anything else is a `bad_loss_weight` problem (fractional weights cannot be expressed as a mask).
- Content is kept exactly as the user wrote it: a leading `<think>...</think>` block stays in the reply
  (the engine decides, per template, whether the template renders it as written or takes it as its
  reasoning; lifting it here made every template without a reasoning slot delete it).
- A row `id` that is a number becomes its decimal string (ids are strings everywhere downstream).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sftdata.reasons import Reason
from sftdata.records import Problem


@dataclass(slots=True)
class Candidate:
    """One conversation an adapter made from a row: a normal-form dict, or the problems that stopped it."""

    data: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    id: str | None = None
    raw: Any = None
    """What a reject should keep as raw when it is not the whole row (an OASST path); None = the row."""


@dataclass(frozen=True, slots=True)
class FormatOptions:
    """Options that change how rows are mapped (not what is valid)."""

    oasst_paths: str = "all"
    """`all`: one conversation per root-to-leaf path; `top`: only the path through the best-ranked replies."""


def row_id(row: Mapping[str, Any], key: str = "id") -> str | None:
    """The row's id as a string (whole numbers stringified), or None when absent or not an id."""
    value = row.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def id_field(row: Mapping[str, Any]) -> Any:
    """The `id` to put in the normal form: `row_id`, or the raw value when it is not one (so that the record
    is rejected as `wrong_type` instead of silently losing its id)."""
    rid = row_id(row)
    return rid if rid is not None else row.get("id")


def require_text(row: Mapping[str, Any], key: str, problems: list[Problem], *, required: bool = True) -> str:
    """A text field of the row; a missing or non-text value is recorded as a problem and '' returned."""
    value = row.get(key)
    if value is None:
        if required:
            problems.append(Problem(Reason.missing_field, f"required field `{key}` is missing or null", key))
        return ""
    if not isinstance(value, str):
        problems.append(Problem(Reason.wrong_type, f"`{key}` must be text, got {type(value).__name__}", key))
        return ""
    return value


def weight_to_train(value: Any, path: str, problems: list[Problem]) -> bool | None:
    """Map a LLaMA-Factory `loss_weight` of 0/1 onto `train`; other values are `bad_loss_weight`."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    problems.append(Problem(Reason.bad_loss_weight, f"loss_weight {value!r} is not 0 or 1; only whole-message "
                            "weights can be trained (use 0 to mask a message, 1 to train it)", path))
    return None


def system_message(row: Mapping[str, Any], problems: list[Problem], key: str = "system") -> list[dict[str, Any]]:
    """The optional `system` column as a leading system message (an empty column means no system message)."""
    value = row.get(key)
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        problems.append(Problem(Reason.wrong_type, f"`{key}` must be text, got {type(value).__name__}", key))
        return []
    return [{"role": "system", "content": value}]
