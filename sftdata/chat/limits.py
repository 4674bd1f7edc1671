"""How much a chat template may build while it renders one conversation: one closed, documented model.

Chat templates are code downloaded with a model; Jinja's sandbox stops them reaching Python internals
but not from building a gigabyte string (`'a' * 10**9`), doubling one in a loop or a recursive macro, or
looping 10**10 times. `sftdata.chat.jinja_env` enforces these limits inside the sandbox (see its module
docstring for where each one is checked). The defaults sit far above every real template: over the 179
fixture templates, on the survey conversations plus a 100-turn one (`benchmarks/template_survey.py
--limits`), the largest string built is 64.5 k characters (1/1000 of the default), the largest stored
value 500 items, the longest `range` 100, the deepest call chain 4, the longest output 73 k characters,
the slowest render 0.05 s of CPU (Gemma 4's template is quadratic in the turns: 2.5 s at 800 turns). With
the defaults every hostile case in `tests/test_hostile_templates.py` stops in under a second (the clock
cases at 10 s) below 300 MiB of peak memory for the whole process.

A limit hit while the template is probed (before any record) is a `TemplateError` (exit 2) naming the
limit and the construct; on one record it is a reject with reason `template_limit` naming the limit.
The audit renders with transformers' own environment and bounds it from outside
(`sftdata.audit.bounds`: forked workers with an address-space ceiling and `max_render_seconds` per render).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TemplateLimits(BaseModel):
    """Bounds on what a chat template may build while rendering one conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    max_output_chars: int = Field(default=64 * 2**20, ge=1)
    """Largest rendered conversation, in characters (default 64 Mi; an input row is at most 32 MiB). Also
    bounds text captured by `{% set %}...{% endset %}`, macro bodies and `{% filter %}` blocks."""
    max_string_chars: int = Field(default=64 * 2**20, ge=1)
    """Largest string a template may build or keep (`*`, `~`, `+`, `join`, `replace`, padding, `%`
    formatting), and the most characters held in one value it stores (default 64 Mi)."""
    max_items: int = Field(default=2**20, ge=1)
    """Most items in one list, tuple or dict a template builds or stores, nested items counted each time
    they are reached (default 1 Mi): bounds `[x] * n`, `list`, `batch`, `slice`, `sum` and shared-list
    towers such as `[l, l]` in a loop."""
    max_range: int = Field(default=100_000, ge=1)
    """Most numbers one `range()` may yield: Jinja's own sandbox cap, the one transformers applies."""
    max_int_bits: int = Field(default=2**20, ge=64)
    """Largest integer a template may compute, in bits (`**`, `*`; default 1 Mi bits)."""
    max_call_depth: int = Field(default=100, ge=1)
    """Deepest chain of macro, `caller()` and recursive `loop()` calls (default 100)."""
    max_render_seconds: float = Field(default=10.0, gt=0)
    """Wall time one render may take (a record takes one render plus one per trained turn), checked at
    every call, every loop entry and each item of a loop longer than 64 (default 10 s; some published
    templates are quadratic in the turns: Gemma 4's takes 2.5 s of CPU for an 800-message conversation)."""
