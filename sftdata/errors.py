"""Exceptions for bad configuration and unreadable inputs (a bad *record* is a Reject, never an exception).

Every message says what went wrong, where (file, key, row), what was expected and how to fix it.
The CLI turns these into a one-paragraph message on stderr and exit code 2.
"""

from __future__ import annotations


class SftdataError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 2


class InputError(SftdataError):
    """An input cannot be opened or read at all (missing file, unknown dataset, unsupported extension)."""


class ConfigError(SftdataError):
    """A pipeline or training config is invalid. The message lists every problem at once."""


class TemplateError(SftdataError):
    """A chat template cannot be loaded or compiled (a template failing on one record is a Reject)."""
