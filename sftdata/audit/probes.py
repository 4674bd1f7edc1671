"""Template probes: what a chat template does to conversations, found by rendering small ones.

Each probe renders two or three tiny conversations and compares the texts; none needs a model or
the data. They answer the questions behind most silent SFT bugs:

- `eot`: which token ends an assistant turn (and so must be trained for the model to stop)?
- `history`: is the render of a conversation a prefix of the render with one more exchange? If not,
  the template rewrites history (Qwen3 drops earlier reasoning) and per-turn prefix tricks break.
- `date`: does the output change with the date (Llama 3.x "Today Date")? Then runs are only
  reproducible with a pinned date.
- `default_system`: does the template write a system prompt of its own when none is given?
- `empty_think`: does it add an empty `<think></think>` block to replies without reasoning?
- `system_role`: where does a system message go (own turn, folded into the first user turn, dropped,
  or an error)?
- `trims`: does it strip whitespace from message content?
- `reasoning_history`: is the reasoning of an earlier turn kept?

Each costs a few milliseconds of Jinja; all of them together well under a second.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from sftdata.audit.findings import Finding, Severity
from sftdata.audit.render import Renderer, pinned_date_kwargs

TAG_RE = re.compile(r"<[^<>\s]{1,40}>")
"""Markup such as `<|END_OF_TURN_TOKEN|>`: where no added token follows a reply, its first tag closes the turn."""

USER, REPLY, USER2, REPLY2 = "What is 2+2?", "It is 4.", "And 3+3?", "It is 6."
SYSTEM = "Always answer in one sentence."


@dataclass
class ProbeResult:
    """What the probes learned: the end-of-turn token(s) the checks need, and findings to report."""

    eot_ids: frozenset[int] = frozenset()
    eot_texts: tuple[str, ...] = ()
    bos_id: int | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(self, name: str, message: str, severity: Severity = Severity.info, **extra: Any) -> None:
        self.findings.append(Finding(f"template:{name}", severity, message, **extra))


def _conv(*pairs: tuple[str, str], system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system is not None else []
    for role_content in pairs:
        msgs.append({"role": role_content[0], "content": role_content[1]})
    return msgs


def _render(r: Renderer, messages: list[dict], generation: bool = False, **extra: Any) -> str | Exception:
    try:
        return r.text(messages, generation=generation, **extra)
    except Exception as err:  # probes report what a template does, raising included
        return err


def _inserted(a: str, b: str) -> str:
    """Text present in `a` but not in `b` (longest pieces first)."""
    ops = difflib.SequenceMatcher(None, b, a, autojunk=False).get_opcodes()
    return "".join(a[j1:j2] for tag, _, _, j1, j2 in ops if tag in ("insert", "replace"))


def probe_eot(r: Renderer, result: ProbeResult) -> None:
    """Find the token(s) that close an assistant turn: the first added/special token after the reply."""
    prompt = _render(r, _conv(("user", USER)), generation=True)
    full = _render(r, _conv(("user", USER), ("assistant", REPLY)))
    if isinstance(prompt, Exception) or isinstance(full, Exception):
        result.add("eot", f"cannot render a one-turn chat: {prompt if isinstance(prompt, Exception) else full}",
                   Severity.warning)
        return
    if not full.startswith(prompt):
        common = len(os.path.commonprefix([prompt, full]))
        result.add("generation_prompt", f"the generation prompt ends with {prompt[common:]!r}, which a finished turn "
                   f"does not contain ({full[common:common + 30]!r} follows instead): the model is prompted "
                   "differently from how its replies are trained", Severity.warning)
    at = full.find(REPLY, len(prompt) if full.startswith(prompt) else 0)
    tail = full[at + len(REPLY):] if at >= 0 else ""
    found = sorted((tail.find(t), -len(t), t) for t in r.added_tokens if t and not t.isspace() and t in tail)
    if found:
        hit = found[0][2]
        result.eot_texts = (hit,)
        result.eot_ids = frozenset({int(r.tok.convert_tokens_to_ids(hit))})
        trained = "trained" if r.settings.train_eot else "NOT trained (train_eot is off)"
        result.add("eot", f"an assistant turn ends with {hit!r} (id {min(result.eot_ids)}), {trained}; "
                   f"the template writes {tail!r} after the reply", expected=hit)
        return
    marker = TAG_RE.search(tail)
    text = marker.group(0) if marker else tail.strip()
    if text:  # the template's own end marker (its first tag, or all it writes), which this tokenizer splits
        result.eot_texts = (text,)
        pieces = len(r.tok.backend_tokenizer.encode(text, add_special_tokens=False).ids)
        result.add("eot", f"an assistant turn ends with {text!r}, which is no token of this tokenizer: the model "
                   f"learns to stop by writing it in {pieces} pieces (stop on the string at inference, or add it as "
                   "a special token); token-level end-of-turn checks are skipped", Severity.warning, expected=text)
        return
    result.add("eot", f"no control token follows an assistant reply (the template writes {tail!r}): the model "
               "cannot learn to stop; end-of-turn checks are skipped", Severity.warning)


def probe_history(r: Renderer, result: ProbeResult) -> None:
    one = _render(r, _conv(("user", USER), ("assistant", REPLY)))
    two = _render(r, _conv(("user", USER), ("assistant", REPLY), ("user", USER2), ("assistant", REPLY2)))
    if isinstance(one, Exception) or isinstance(two, Exception):
        return
    if two.startswith(one):
        result.add("history", "history re-renders identically when a turn is added (prefix renders are stable)")
    else:
        at = next((i for i, (a, b) in enumerate(zip(one, two, strict=False)) if a != b), min(len(one), len(two)))
        result.add("history", f"the template rewrites history: adding a turn changes earlier text at character {at} "
                   f"({one[at:at + 40]!r} becomes {two[at:at + 40]!r})", Severity.warning)


def probe_date(r: Renderer, result: ProbeResult) -> None:
    conv = _conv(("user", USER), ("assistant", REPLY))
    a = _render(r, conv, **pinned_date_kwargs("01 Jan 2001"))
    b = _render(r, conv, **pinned_date_kwargs("02 Feb 2002"))
    if isinstance(a, Exception) or isinstance(b, Exception):
        return
    if a != b:
        pinned = r.settings.date
        how = f"pinned to {pinned!r} by the manifest" if pinned else "NOT pinned: renders change with the clock"
        result.add("date", f"the template prints the date ({how})", Severity.info if pinned else Severity.warning)
    else:
        result.add("date", "the template does not print a date")


def probe_default_system(r: Renderer, result: ProbeResult) -> None:
    bare = _render(r, _conv(("user", USER), ("assistant", REPLY)))
    with_system = _render(r, _conv(("user", USER), ("assistant", REPLY), system="QQSYSQQ"))
    if isinstance(bare, Exception) or isinstance(with_system, Exception):
        return
    extra = _inserted(bare, with_system.replace("QQSYSQQ", ""))
    if len(re.findall(r"\w", extra)) >= 12:
        result.add("default_system", f"without a system message the template writes its own: {extra.strip()!r} "
                   "(in the prompt, never trained)", Severity.info)
    else:
        result.add("default_system", "no default system prompt is injected")


def probe_think(r: Renderer, result: ProbeResult) -> None:
    full = _render(r, _conv(("user", USER), ("assistant", REPLY)))
    if isinstance(full, Exception):
        return
    m = re.search(r"<think>(\s*)</think>", full)
    if m:
        result.add("empty_think", f"the template adds an empty think block {m.group(0)!r} to a reply without "
                   "reasoning (it must not be trained)", Severity.info)


def probe_system_role(r: Renderer, result: ProbeResult) -> None:
    text = _render(r, _conv(("user", USER), ("assistant", REPLY), system=SYSTEM))
    if isinstance(text, Exception):
        result.add("system_role", f"a system message makes the template raise: {text}", Severity.warning)
        return
    if SYSTEM not in text:
        result.add("system_role", "the template DROPS the system message", Severity.warning)
        return
    between = text[text.find(SYSTEM) + len(SYSTEM): text.find(USER)] if USER in text else ""
    has_control = any(t in between for t in r.added_tokens if t and not t.isspace())
    if text.find(SYSTEM) < text.find(USER) and not has_control:
        result.add("system_role", f"no system role: the system text is folded into the first user turn "
                   f"(joined by {between!r})")
    else:
        result.add("system_role", "a system message gets its own turn")


def probe_trims(r: Renderer, result: ProbeResult) -> None:
    padded = "  It is 4.  \n"
    text = _render(r, _conv(("user", "  " + USER + "\n"), ("assistant", padded)))
    if isinstance(text, Exception):
        return
    changed = [who for who, s in (("user", "  " + USER + "\n"), ("assistant", padded)) if s not in text]
    if changed:
        result.add("trims", f"the template trims or rewrites the content of {' and '.join(changed)} messages "
                   "(the writer must find replies by more than their raw text)")
    else:
        result.add("trims", "message content is rendered verbatim")


def probe_reasoning(r: Renderer, result: ProbeResult) -> None:
    template = r.template or ""
    if "reasoning" not in template and "think" not in template:
        return
    conv = [{"role": "user", "content": USER}, {"role": "assistant", "content": REPLY, "reasoning": "QQR1QQ",
                                                  "reasoning_content": "QQR1QQ"},
            {"role": "user", "content": USER2}, {"role": "assistant", "content": REPLY2}]
    text = _render(r, conv)
    if isinstance(text, Exception):
        return
    if "QQR1QQ" in text:
        result.add("reasoning_history", "reasoning of earlier turns is kept in the render")
    else:
        result.add("reasoning_history", "the template drops the reasoning of earlier turns (history is rewritten)")


PROBES = (probe_eot, probe_history, probe_date, probe_default_system, probe_think, probe_system_role, probe_trims,
          probe_reasoning)


def run_probes(renderer: Renderer) -> ProbeResult:
    """Run every probe; the result carries the end-of-turn ids the shard checks need."""
    result = ProbeResult()
    tok = renderer.tok
    result.bos_id = tok.bos_token_id if getattr(tok, "bos_token", None) else None
    if not renderer.template:
        result.add("template", "the tokenizer has no chat template", Severity.info)
        return result
    for probe in PROBES:
        probe(renderer, result)
    return result
