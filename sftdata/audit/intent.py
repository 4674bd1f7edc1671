"""What another tool's dataset was meant to train: the options `audit_dataset` re-derives its masks under.

A closed model, so that `--masking nope` is refused with the choices instead of auditing against nothing,
and the source of `sftdata audit`'s flags for such datasets (`sftdata.cli.flags`): each option, its help
and its check are written once. The audit's own vocabulary, not the writer's `MaskOptions` (the audit
imports none of the writer's code); `tests/test_audit_foreign.py` holds the two choice lists equal.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, ValidationError

from sftdata.errors import ConfigError


class Masking(StrEnum):
    """Which turns the dataset's labels were meant to train."""

    assistant = "assistant"
    """Every assistant turn (TRL's `assistant_only_loss`, axolotl's `roles_to_train: [assistant]`)."""
    last = "last"
    """Only the last assistant turn; earlier replies are context."""
    all = "all"
    """Every token but each document's first ("train on inputs")."""


class DatasetIntent(BaseModel):
    """How another tool's dataset was meant to be rendered and trained."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    masking: Masking = Masking.assistant
    """Which turns were meant to be trained."""
    train_eot: bool = True
    """Each trained reply's end-of-turn token was meant to be trained (TRL, axolotl and LLaMA-Factory train it)."""
    sanitize: bool = False
    """Control-token text in messages was encoded as plain text (Hugging Face's default is not to)."""
    date: str | None = None
    """The date the template printed (Llama 3.x 'Today Date'), e.g. '26 Jul 2024'; default: today."""


def dataset_intent(**options: object) -> DatasetIntent:
    """The options as a `DatasetIntent`; every bad value is named at once, with what was expected.

    Raises:
        ConfigError: an unknown option or a value outside its choices.
    """
    try:
        return DatasetIntent.model_validate(options)
    except ValidationError as err:
        problems = [f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']} (got {e.get('input')!r})"
                    for e in err.errors(include_url=False)]
        raise ConfigError("the dataset's audit options: " + "; ".join(problems)) from None
