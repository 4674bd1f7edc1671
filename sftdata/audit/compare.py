"""Compare a stored document with the audit's own derivation, and say exactly where they differ.

Ids must be equal token for token (a truncated document must equal the derivation's prefix). The
mask must be equal on every token, except that position 0 of a document is never supervised (the
writer forces label -100 there so no position learns across documents). A difference is reported
once per document, at its first differing token, with the expected and the found token and the
number of tokens that differ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.rederive import Derived
from sftdata.audit.tables import TokenView

IDS = ("ids_match", "each document's ids equal the chat template's ids for its source record")
MASK = ("mask_match", "each document's supervised tokens are exactly what the model must generate (re-derived)")
UNPROVEN = ("mask_unproven", "documents whose mask the audit could not re-derive (fails unless --allow-unproven)")


def compare_document(view: TokenView, doc: int, derived: Derived, truncated: bool, findings: Findings,
                     show: Callable[[int], str], allow_unproven: bool = False) -> np.ndarray | bool:
    """Check one stored document against its derivation.

    A mask the audit cannot re-derive is a failure (`mask_unproven`), or a warning with
    `allow_unproven` (the weaker audit, asked for by name).

    Returns True when it matches, False when it does not (ids, or no derivation), and the expected
    supervision mask when only the mask differs (so the report can mark the differing tokens).
    """
    ids, labels = view.doc_tokens(doc)
    start = int(view.doc_starts[doc])
    findings.check(*IDS, 1)
    if derived.error is not None or derived.ids is None:
        findings.fail(Finding(IDS[0], Severity.error, f"the template raises on the source record: {derived.error}",
                              expected="a rendered conversation", found=derived.error, **view.locate(start)))
        return False
    expected = derived.ids[: len(ids)] if truncated else derived.ids
    if len(expected) != len(ids) or not np.array_equal(expected, ids):
        n = min(len(expected), len(ids))
        diff = np.flatnonzero(expected[:n] != ids[:n])
        p = int(diff[0]) if len(diff) else n
        where = view.locate(start + min(p, len(ids) - 1))
        exp = show(int(expected[p])) if p < len(expected) else "end of document"
        got = show(int(ids[p])) if p < len(ids) else "end of document"
        findings.fail(Finding(IDS[0], Severity.error,
                              f"ids differ from the template's ({len(ids)} stored vs {len(expected)} expected tokens, "
                              f"first difference at document token {p})", expected=exp, found=got, **where))
        return False
    if derived.supervised is None or derived.unproven:
        severity = Severity.warning if allow_unproven else Severity.error
        findings.check(*UNPROVEN, 1, severity)
        hint = "" if allow_unproven else " (pass --allow-unproven to accept masks the audit cannot prove)"
        findings.fail(Finding(UNPROVEN[0], severity, ("; ".join(derived.unproven) or "mask not derived") + hint,
                              **view.locate(start)))
        return True
    findings.check(*MASK, 1)
    want = derived.supervised[: len(ids)].copy()
    want[0] = False
    have = labels != -100
    diff = np.flatnonzero(want != have)
    if len(diff):
        p = int(diff[0])
        state = {True: "supervised", False: "not supervised"}
        findings.fail(Finding(MASK[0], Severity.error,
                              f"mask differs on {len(diff)} token(s); first at {show(int(ids[p]))}",
                              expected=f"{state[bool(want[p])]} ({show(int(ids[p]))})",
                              found=f"{state[bool(have[p])]} (label {int(labels[p])})", **view.locate(start + p)))
        return want
    return True
