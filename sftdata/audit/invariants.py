"""Checks that need nothing but the token table: each one a few vectorised numpy operations.

These hold for any correct SFT dataset, whoever wrote it, so they also run on TRL / axolotl output:

- `label_not_id`: every label is -100 or the id at the same position (labels are unshifted).
- `doc_lens_sum`: a row's `doc_lens` add up to its length (and `doc_ids` has one id per document).
- `doc_first_label`: every document starts with label -100, so no position learns to predict the
  first token of the next document.
- `doc_unsupervised`: every document has at least one supervised token.
- `span_end_not_eot`: every supervised span ends on the template's end-of-turn token, so the model
  learns to stop (skipped when `train_eot` is off, for `masking: all`, and for truncated documents).
  With `train_eot` off the mirror check `eot_trained` runs: no end-of-turn token is in the loss.
- `doubled_bos`: no document holds two BOS tokens in a row (a template that writes BOS plus a
  tokenizer that adds one).

Cost on the 20k bench corpus (3.4 M tokens): reading every shard, these checks, the integrity checks
and the statistics took 2.7 s together (`shards_s`, on a machine loaded by other jobs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.tables import TokenView

IGNORE = -100


@dataclass(frozen=True)
class TokenRules:
    """What the shard-only checks need to know about the tokenizer, template and options."""

    eot_ids: frozenset[int] = frozenset()
    """Ids that may end a supervised span (found by the template probe). Empty: the check is skipped."""
    bos_id: int | None = None
    train_eot: bool = True
    masking: str = "assistant"
    truncated_docs: frozenset[str] = frozenset()
    token_text: Callable[[int], str] = field(default=lambda i: str(i), compare=False)
    """Renders an id for messages, e.g. `151645 '<|im_end|>'`."""


def _positions(mask: np.ndarray) -> tuple[int, np.ndarray]:
    hits = np.flatnonzero(mask)
    return len(hits), hits[:25]


def check_view(view: TokenView, rules: TokenRules, findings: Findings) -> None:
    """Run every shard-only invariant over one view, adding results to `findings`."""
    ids, labels, sup = view.ids, view.labels, view.supervised
    n_tokens = len(ids)
    show = rules.token_text

    # labels are -100 or the id itself
    findings.check("label_not_id", "every label is -100 or the input id at the same position", n_tokens)
    count, hits = _positions(sup & (labels != ids))
    for p in hits:
        findings.fail(Finding("label_not_id", Severity.error, "label is neither -100 nor the input id",
                              expected=f"-100 or {show(int(ids[p]))}", found=int(labels[p]), **view.locate(int(p))),
                      count=count if p == hits[0] else 0)

    # doc_lens add up; one doc id per document
    findings.check("doc_lens_sum", "each row's doc_lens add up to its length, one doc_id per document", view.n_rows)
    sums = np.zeros(view.n_rows, dtype=np.int64)
    np.add.at(sums, view.doc_rows, view.doc_lens)
    bad_rows = np.flatnonzero(~view.rows_consistent)
    for i, row in enumerate(bad_rows[:25]):
        findings.fail(Finding("doc_lens_sum", Severity.error,
                              "doc_lens do not add up to the row length (or a length is 0)",
                              shard=view.name, row=int(row), expected=int(view.row_lens[row]), found=int(sums[row])),
                      count=len(bad_rows) if i == 0 else 0)
    if len(view.doc_ids) != view.n_docs:
        findings.fail(Finding("doc_lens_sum", Severity.error, "number of doc_ids differs from number of doc_lens",
                              shard=view.name, expected=view.n_docs, found=len(view.doc_ids)))

    valid = view.doc_valid
    starts = view.doc_starts
    lens = view.doc_lens
    docs = np.flatnonzero(valid)
    doc_ids = view.doc_ids

    # every document starts unsupervised
    findings.check("doc_first_label", "every document's first label is -100", len(docs))
    first_sup = docs[sup[starts[docs]]] if len(docs) else docs
    for i, d in enumerate(first_sup[:25]):
        p = int(starts[d])
        findings.fail(Finding("doc_first_label", Severity.error,
                              "document starts with a supervised label (the previous position learns across documents)",
                              expected=IGNORE, found=int(labels[p]), **view.locate(p)),
                      count=len(first_sup) if i == 0 else 0)

    # every document has something to learn
    findings.check("doc_unsupervised", "every document has at least one supervised token", len(docs))
    csum = np.concatenate([[0], np.cumsum(sup, dtype=np.int64)])
    n_sup = csum[starts + lens] - csum[starts] if len(starts) else starts
    empty = docs[n_sup[docs] == 0] if len(docs) else docs
    for i, d in enumerate(empty[:25]):
        findings.fail(Finding("doc_unsupervised", Severity.error, "document has no supervised token",
                              shard=view.name, row=int(view.doc_rows[d]),
                              doc_id=doc_ids[d] if d < len(doc_ids) else None,
                              expected=">= 1 supervised token", found=0),
                      count=len(empty) if i == 0 else 0)

    _check_span_ends(view, rules, findings, docs)
    _check_bos(view, rules, findings, docs)


def _token_doc_mask(view: TokenView, docs: np.ndarray) -> np.ndarray:
    """Token mask of the given documents."""
    mask = np.zeros(len(view.ids) + 1, dtype=np.int64)
    np.add.at(mask, view.doc_starts[docs], 1)
    np.add.at(mask, view.doc_starts[docs] + view.doc_lens[docs], -1)
    return np.cumsum(mask[:-1]) > 0


def _check_span_ends(view: TokenView, rules: TokenRules, findings: Findings, docs: np.ndarray) -> None:
    name, desc = "span_end_not_eot", "every supervised span ends on the template's end-of-turn token"
    if rules.masking == "all":
        findings.skip(name, desc, "masking is `all` (spans run to the end of each document)")
        return
    if not rules.eot_ids:
        findings.skip(name, desc, "no end-of-turn token known for this template")
        return
    ids, sup = view.ids, view.supervised
    doc_ids = view.doc_ids
    truncated = np.array([d < len(doc_ids) and doc_ids[d] in rules.truncated_docs for d in docs], dtype=bool)
    checked_docs = docs[~truncated] if len(docs) else docs
    in_checked = _token_doc_mask(view, checked_docs)
    is_last = np.zeros(len(ids), dtype=bool)
    is_last[view.doc_starts[checked_docs] + view.doc_lens[checked_docs] - 1] = True
    next_sup = np.concatenate([sup[1:], [False]]) & ~is_last
    ends = sup & ~next_sup & in_checked
    is_eot = np.isin(ids, np.fromiter(rules.eot_ids, dtype=np.int64))
    eot_text = " or ".join(rules.token_text(i) for i in sorted(rules.eot_ids))
    if rules.train_eot:
        findings.check(name, desc, int(ends.sum()))
        count, hits = _positions(ends & ~is_eot)
        for p in hits:
            past = p > 0 and bool(is_eot[p - 1]) and bool(sup[p - 1])
            why = ("supervised span runs past the end-of-turn token (trains the template's text after it)" if past
                   else "supervised span does not end on the end-of-turn token")
            findings.fail(Finding(name, Severity.error, why, expected=eot_text, found=rules.token_text(int(ids[p])),
                                  **view.locate(int(p))),
                          count=count if p == hits[0] else 0)
        if len(truncated) and truncated.any():
            findings.note(Finding(name, Severity.info,
                                  f"{int(truncated.sum())} truncated document(s) not checked for a final end-of-turn",
                                  shard=view.name))
    else:
        findings.skip(name, desc, "train_eot is off")
        mirror = "eot_trained"
        findings.check(mirror, "with train_eot off, no end-of-turn token is supervised",
                       int((is_eot & in_checked).sum()))
        count, hits = _positions(is_eot & sup & in_checked)
        for p in hits:
            findings.fail(Finding(mirror, Severity.error, "end-of-turn token is supervised although train_eot is off",
                                  expected=IGNORE, found=int(view.labels[p]), **view.locate(int(p))),
                          count=count if p == hits[0] else 0)


def _check_bos(view: TokenView, rules: TokenRules, findings: Findings, docs: np.ndarray) -> None:
    name, desc = "doubled_bos", "no document holds two BOS tokens in a row"
    if rules.bos_id is None:
        findings.skip(name, desc, "the tokenizer has no BOS token")
        return
    ids = view.ids
    findings.check(name, desc, len(docs))
    in_docs = _token_doc_mask(view, docs)
    starts_next = np.zeros(len(ids), dtype=bool)
    starts_next[view.doc_starts[docs]] = True
    pair = (ids[:-1] == rules.bos_id) & (ids[1:] == rules.bos_id) & ~starts_next[1:] & in_docs[:-1]
    count, hits = _positions(pair)
    for p in hits:
        findings.fail(Finding(name, Severity.error, "two BOS tokens in a row",
                              expected="one " + rules.token_text(rules.bos_id),
                              found="two " + rules.token_text(rules.bos_id), **view.locate(int(p) + 1)),
                      count=count if p == hits[0] else 0)
