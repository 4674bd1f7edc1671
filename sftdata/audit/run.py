"""`audit_prepared`: the whole audit of a prepared folder, as one function over its files. It proves or fails.

Order (cheap and certain first): manifest, files and inputs (sha256) -> template probes -> the source
rows, read once (`sources`: the audit's own reader and row interpretation, under the manifest's recorded
read options): re-derivation of every document (`ID` and its `ID#K` turn documents) in forked workers,
with the shard-only invariants and statistics checked while the workers start, and conservation of every
text of every raw row -> rejects summary and samples for the report. Every step adds to one `Findings`;
the result is an `AuditReport` that the CLI prints, writes as JSON or renders as HTML.

Where the time goes, and why the work is laid out so: the main process first imports transformers and
torch and loads the tokenizer (about a quarter of the audit on the bench, on one core). Conservation
needs neither, so a process forked before that import checks it (`prelude`), and the main process checks
only the rows that process leaves to it; the collector is kept off the long-lived set-up (`steady_heap`).

Proves or fails: a missing or changed input (`input_available`), a mask the audit cannot re-derive
(`mask_unproven`) and a lost text (`conservation`) are failures. The weaker audits are asked for by
name (`shards_only`, `allow_unproven`), and the report lists every check that ran or was skipped.

Nothing here imports the writer's code: not the mask engine (`sftdata.chat`), not `sftdata.prepare`,
and not the readers, format adapters or validation (`sftdata.readers`, `sftdata.formats`,
`sftdata.validate`): an audit that reuses them cannot see their bugs (`tests/test_audit_planted.py`
checks it in a fresh interpreter).
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from sftdata.audit.bounds import DEFAULT_RENDER_SECONDS, bound_this_process, bounded_for_now
from sftdata.audit.compare import compare_document
from sftdata.audit.conserve import Conservation, DropPolicy
from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.integrity import check_files, check_metadata, check_shard_counts, check_totals
from sftdata.audit.invariants import TokenRules, check_view
from sftdata.audit.normal import RawRecord
from sftdata.audit.pairing import SPLIT_ID, Claims, DocIndex, Place, record_jobs, row_claims
from sftdata.audit.prelude import ConservationProcess
from sftdata.audit.probes import ProbeResult, run_probes
from sftdata.audit.rederive import Derived, DerivedBatch, MaskDeriver
from sftdata.audit.render import Renderer, RenderSettings
from sftdata.audit.sources import available_inputs, batches, rejected_positions, resolve_input, source_rows
from sftdata.audit.stats import StatsAccumulator, summarize
from sftdata.audit.tables import TokenView, shard_view
from sftdata.audit.tokens import special_ids, token_namer, token_pieces
from sftdata.errors import InputError, SftdataError
from sftdata.heap import steady_heap
from sftdata.manifest import FORMAT_VERSION, MANIFEST_NAME, REJECTS_NAME, Manifest
from sftdata.pool import CPUS_ENV, cpu_count, forked_map

BATCH = 1024
BATCH_CHARS = 4_000_000
"""Text characters per batch of re-derivation at most (about 1 M tokens, 80 MB of encodings in a worker)."""
WRONG_SHOWN = 3
"""Failing documents shown first in the report's samples, differing tokens marked."""
MAX_SHOWN, ZOOM_BEFORE, ZOOM_AFTER = 4096, 60, 30
"""Tokens shown per sampled document; around a failing document's differing tokens."""
REJECT_EXAMPLES = 3


@dataclass
class AuditReport:
    """Everything the audit found, ready for the terminal, `--json` and the HTML report."""

    target: str
    kind: str
    """`sftdata` (a prepared folder) or `dataset` (another tool's tokenized dataset)."""
    findings: Findings
    probes: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    rejects: dict[str, Any] = field(default_factory=dict)
    about: dict[str, Any] = field(default_factory=dict)
    """Tokenizer, template origin and options (for the report's header)."""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.findings.passed

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "kind": self.kind, "passed": self.passed, "errors": self.findings.errors,
            "checks": self.findings.checks_json(), "findings": [f.to_json() for f in self.findings.items],
            "template": [f.to_json() for f in self.probes], "stats": self.stats, "rejects": self.rejects,
            "about": self.about, "timings": self.timings,
        }


def load_tokenizer(path: str, folder: Path | None = None) -> Any:
    """A Hugging Face tokenizer from a folder (as given, or beside the audited folder) or a hub id."""
    from transformers import AutoTokenizer

    found = resolve_input(path, folder) if folder is not None else None
    try:
        return AutoTokenizer.from_pretrained(str(found or path))
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load tokenizer {path!r} ({err}); pass --tokenizer FOLDER_OR_HUB_ID") from None


def load_manifest(folder: Path) -> Manifest:
    if not (folder / MANIFEST_NAME).is_file():
        raise InputError(f"{folder}: no {MANIFEST_NAME}; not a finished `sftdata prepare` folder (for another "
                         "tool's dataset pass --tokenizer)")
    try:
        return Manifest.load(folder)
    except ValidationError as err:
        if any(e["loc"] == ("format_version",) for e in err.errors(include_url=False)):
            found = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("format_version")
            raise InputError(f"{folder / MANIFEST_NAME}: manifest format version {found!r} is not one this sftdata "
                             f"reads (1 to {FORMAT_VERSION}); upgrade sftdata") from None
        raise InputError(f"{folder / MANIFEST_NAME}: not a valid manifest ({err.error_count()} problem(s): "
                         f"{err.errors(include_url=False)[0]['msg']})") from None


def check_tokenizer_files(path: str, folder: Path, manifest: Manifest, findings: Findings) -> None:
    """Warn when the tokenizer's files differ from the ones prepare hashed (ids may then differ too)."""
    from sftdata.fingerprint import tokenizer_files

    found = resolve_input(path, folder)
    if found is None or not manifest.tokenizer.files:
        return
    name = ("tokenizer_files", "the tokenizer's files are the ones prepare used (sha256)")
    findings.check(*name, len(manifest.tokenizer.files), Severity.warning)
    now = tokenizer_files(str(found))
    for file, digest in sorted(manifest.tokenizer.files.items()):
        if now.get(file) != digest:
            findings.fail(Finding(name[0], Severity.warning, f"tokenizer file {file} differs from the one prepare "
                                  "used", expected=digest, found=now.get(file, "missing")))


def make_rules(tok: Any, settings: RenderSettings, probes: ProbeResult, truncated: set[str]) -> TokenRules:
    return TokenRules(eot_ids=probes.eot_ids, bos_id=probes.bos_id, train_eot=settings.train_eot,
                      masking=settings.masking, truncated_docs=frozenset(truncated), token_text=token_namer(tok))


def audit_prepared(folder: str | Path, *, tokenizer: str | None = None, sample: int = 8,
                   shards_only: bool = False, allow_unproven: bool = False, rederive: bool = True) -> AuditReport:
    """Audit a folder written by `sftdata prepare`: it proves every document or fails.

    Args:
        folder: the prepared folder (with `manifest.json`).
        tokenizer: override the tokenizer the manifest names (e.g. when it moved).
        sample: documents shown token by token in the report.
        shards_only: the weaker audit, asked for by name: shard invariants only, no source rows (no
            re-derivation, no conservation). The report lists the checks that were skipped and why.
        allow_unproven: a mask the audit cannot re-derive is a warning instead of a failure.
        rederive: False is the same as `shards_only=True` (kept for callers of earlier versions).

    Returns:
        The report; `report.passed` is False when any check failed. Missing or changed inputs and
        unproven masks fail unless the weaker audit was asked for.
    """
    t0 = time.perf_counter()
    shards_only = shards_only or not rederive
    folder = Path(folder)
    manifest = load_manifest(folder)
    findings = Findings()
    existing = check_files(folder, manifest, findings)
    inputs = None if shards_only else available_inputs(manifest, folder, findings)
    with start_conservation(manifest, folder, inputs, existing, tokenizer) as conserving, steady_heap():
        reader = ThreadPoolExecutor(max_workers=1)  # the shards map while transformers imports (Arrow frees the GIL)
        loading = [(info, reader.submit(shard_view, folder / info.file)) for info in existing]
        reader.shutdown(wait=False)
        tok = load_tokenizer(tokenizer or manifest.tokenizer.path, folder)
        gc.freeze()  # transformers and torch live as long as the audit too (`steady_heap` thaws them at the end)
        check_tokenizer_files(tokenizer or manifest.tokenizer.path, folder, manifest, findings)
        renderer, probes, rules, tripped = set_up_template(tok, manifest, findings)
        timings = {"setup_s": time.perf_counter() - t0}
        loaded = readable_shards(loading, findings)
        views = [view for _, view in loaded]
        summary: dict[str, Any] = {}

        def check_shards() -> None:  # with source rows to check: while the workers derive their first batches
            t = time.perf_counter()
            summary.update(shard_checks(loaded, manifest, rules, findings))
            timings["shards_s"] = time.perf_counter() - t

        wrong: list[tuple] = []
        allowed: dict[str, int] = {}
        skipped = ("--shards-only: the source rows were not read" if shards_only else
                   "the chat template went past the audit's bounds (see template_bounds)" if tripped else
                   "an input is missing or changed (see input_available)" if inputs is None else None)
        if skipped is not None:
            check_shards()
            for name, why in SOURCE_CHECKS:
                findings.skip(name, why, skipped)
        else:
            t = time.perf_counter()
            wrong, allowed = check_sources(views, manifest, inputs, folder, tok, renderer, probes, rules, findings,
                                           allow_unproven, conserving, check_shards)
            timings["sources_s"] = time.perf_counter() - t - timings["shards_s"]
        rejects = summarize_rejects(folder / REJECTS_NAME)
        samples = sample_documents(views, tok, sample, wrong)
    timings["total_s"] = time.perf_counter() - t0
    about = {"tokenizer": manifest.tokenizer.path, "inputs": [i.path for i in manifest.inputs],
             "options": manifest.options, "read": manifest.read_options(), "counts": manifest.counts.model_dump(),
             "packing": manifest.packing.model_dump(), "sftdata_version": manifest.sftdata_version,
             "manifest_version": manifest.format_version,
             "mode": {"shards_only": shards_only, "allow_unproven": allow_unproven}, "allowed_drops": allowed}
    return AuditReport(str(folder), "sftdata", findings, probes.findings, summary, samples, rejects, about,
                       {k: round(v, 3) for k, v in timings.items()})


def set_up_template(tok: Any, manifest: Manifest, findings: Findings
                    ) -> tuple[Renderer, ProbeResult, TokenRules, list[str]]:
    """The renderer as the manifest sets it up, the template probes (end-of-turn tokens, ...) and the token rules,
    in the main process under the audit's bounds; the last item lists the renders that went past them."""
    settings = RenderSettings.from_options(manifest.options, manifest.chat_template)
    renderer = Renderer(tok, settings)
    with bounded_for_now(render_seconds(manifest)) as tripped:  # the main process renders only here
        probes = run_probes(renderer)
        renderer.settle()
    findings.check("template_bounds", "the chat template renders its probe conversations within the audit's "
                   "memory and time bounds", 1)
    if tripped:  # as `prepare` refuses such a template before any record, the audit renders no record with it
        findings.fail(Finding("template_bounds", Severity.error, f"the chat template went past the audit's "
                              f"bounds on its probe conversations: {tripped[0]}", expected="a bounded render",
                              found=f"{len(tripped)} render(s) stopped"))
    return renderer, probes, make_rules(tok, settings, probes, set(manifest.truncated_docs)), list(tripped)


def readable_shards(loading: list[tuple[Any, Any]], findings: Findings) -> list[tuple[Any, TokenView]]:
    """(shard info, view) of every shard that reads as a complete Arrow IPC stream (the others are findings)."""
    loaded = []
    for info, view_of in loading:
        try:
            loaded.append((info, view_of.result()))
        except InputError as err:
            findings.fail(Finding("shard_readable", Severity.error, str(err), shard=info.file,
                                  expected="a complete Arrow IPC stream", found="unreadable"))
            continue
        findings.check("shard_readable", "every shard is a complete Arrow IPC stream", 1)
    return loaded


def shard_checks(loaded: list[tuple[Any, TokenView]], manifest: Manifest, rules: TokenRules,
                 findings: Findings) -> dict[str, Any]:
    """The shard-only invariants and counts of every readable shard; their statistics."""
    stats = StatsAccumulator()
    for info, view in loaded:
        check_metadata(view, manifest, findings)
        check_shard_counts(view, info, findings)
        check_view(view, rules, findings)
        stats.add(view)
    summary = summarize(stats, manifest.packing.capacity)
    check_totals(manifest, summary["totals"], findings, records_written([view for _, view in loaded]))
    return summary


def start_conservation(manifest: Manifest, folder: Path, inputs: list[tuple[Path, int]] | None, existing: list,
                       tokenizer: str | None) -> ConservationProcess | nullcontext[None]:
    """The conservation process (`audit.prelude`), started before transformers is imported, when the source
    rows are read and it pays and can be exact: a second core, and the tokenizer a local folder with a
    `tokenizer.json`. Otherwise (a context of None) the main process checks conservation itself."""
    found = resolve_input(tokenizer or manifest.tokenizer.path, folder)
    if inputs is None or cpu_count() < 2 or found is None or not (found / "tokenizer.json").is_file():
        return nullcontext()
    return ConservationProcess.start(manifest, folder, inputs, [folder / info.file for info in existing],
                                     found / "tokenizer.json", frozenset(manifest.truncated_docs),
                                     (BATCH, BATCH_CHARS))


SOURCE_CHECKS = (
    ("ids_match", "each document's ids equal the chat template's ids for its source record"),
    ("mask_match", "each document's supervised tokens are exactly what the model must generate (re-derived)"),
    ("conservation", "every text of each raw row is in its record's documents (normalised)"),
    ("records_accounted", "every valid source record is in the shards or in rejects.jsonl, once"),
    ("doc_has_source", "every stored document comes from a source record"),
)
"""The checks that need the source rows (skipped, and listed as skipped, by the weaker audits)."""

def records_written(views: list[TokenView]) -> int:
    """Records the shards hold: documents with a plain id, plus records written only as `ID#K` documents."""
    plain: list[str] = []
    split: set[str] = set()
    for view in views:
        for doc_id in view.doc_ids:
            m = SPLIT_ID.fullmatch(doc_id)
            if m:
                split.add(m.group(1))
            else:
                plain.append(doc_id)
    return len(plain) + len(split - set(plain))


def check_sources(views: list[TokenView], manifest: Manifest, inputs: list, folder: Path, tok: Any,
                  renderer: Renderer, probes: ProbeResult, rules: TokenRules, findings: Findings,
                  allow_unproven: bool, conserving: ConservationProcess | None = None,
                  meanwhile: Callable[[], None] = lambda: None) -> tuple[list[tuple], dict[str, int]]:
    """Read every source row once; re-derive each of its documents and check conservation.

    With a conservation process whose tokenizer decodes as `tok`, this process checks conservation only
    for the rows that process leaves to it (`pairing.row_claims`) and adds its findings at the end.
    `meanwhile` runs once every worker has a batch (before any result is read).
    Returns up to `WRONG_SHOWN` failing documents as (view, doc, expected mask or None) for the report,
    and the allowed drops by kind.
    """
    wrong: list[tuple] = []
    index = DocIndex.build(views)
    deriver = MaskDeriver(renderer, probes.eot_ids, probes.eot_texts)
    conservation = Conservation(tok.backend_tokenizer, views, DropPolicy.from_options(manifest.options), findings,
                                rules.truncated_docs)
    claims: Claims | None = None

    def settle_then_meanwhile() -> None:
        nonlocal conserving, claims
        if conserving is not None and conserving.decodes_as(tok.backend_tokenizer):
            claims = Claims()  # the conservation process checks every row it can pair
        elif conserving is not None:
            conserving.close()
            conserving = None
        meanwhile()

    derived_findings = Findings()  # reported after every conservation finding: what was lost names the text
    seen: set[tuple[int, int]] = set()
    missing: list[Any] = []
    rejected = rejected_positions(folder / REJECTS_NAME)
    planned: deque[tuple[list, list]] = deque()  # (chunk, jobs) of each batch in the workers, in order
    workers = cpu_count()

    def planned_batches() -> Iterator[list[tuple]]:
        submitted = 0
        for chunk in _chunks(source_rows(manifest, inputs, findings)):
            jobs, todo = _plan(chunk, index, renderer, rejected, missing)
            planned.append((chunk, jobs))
            yield todo
            submitted += 1
            if submitted == workers:  # every worker has a batch: none waits while this process checks the rest
                settle_then_meanwhile()
        if submitted < workers:
            settle_then_meanwhile()

    bounds = (deriver, render_seconds(manifest))
    for derived in _derived(forked_map(_derive, planned_batches(), workers, _start_worker, bounds)):
        chunk, jobs = planned.popleft()
        row_docs: list[list[tuple[int, int]]] = [[] for _ in chunk]
        paired = []
        for (r, record, places, doc_id), result in zip(jobs, derived, strict=True):
            truncated = doc_id in rules.truncated_docs
            places = [p for p in places if p not in seen]
            if not places:
                if (record.source, record.index) not in rejected:
                    missing.append(record)
                continue
            if len(places) > 1:  # a duplicated doc_id: pair the record with the copy that matches it, if any
                places.sort(key=lambda p: compare_document(views[p[0]], p[1], result, truncated, Findings(),
                                                           rules.token_text) is not True)
            seen.add(places[0])
            row_docs[r].append(places[0])
            paired.append((places[0], result, truncated))
        # every row is claimed, rejected or not, as the conservation process claims it, so both stay alike
        ours = [claims is None or row_claims(row, index, claims) is None for row in chunk]
        conservation.check([(row, docs) for row, docs, mine in zip(chunk, row_docs, ours, strict=True)
                            if mine and (row.source, row.index) not in rejected])
        for (v, d), result, truncated in paired:
            outcome = compare_document(views[v], d, result, truncated, derived_findings, rules.token_text,
                                       allow_unproven)
            if outcome is not True and len(wrong) < WRONG_SHOWN:
                wrong.append((v, d, outcome if isinstance(outcome, np.ndarray) else None))
    if conserving is not None:
        theirs, allowed = conserving.result()
        findings.merge(theirs)
        conservation.allowed.update(allowed)
    findings.merge(derived_findings)
    name = ("records_accounted", "every valid source record is in the shards or in rejects.jsonl, once")
    findings.check(*name, len(seen) + len(missing))
    for record in missing[:25]:
        findings.fail(Finding(name[0], Severity.error, "a valid source record is neither in the shards nor in "
                              "rejects.jsonl", doc_id=record.doc_id, expected="written or rejected", found="absent"),
                      count=len(missing) if record is missing[0] else 0)
    extra = [(v, d) for locs in index.full.values() for (v, d) in locs if (v, d) not in seen]
    findings.check("doc_has_source", "every stored document comes from a source record", len(seen) + len(extra))
    for i, (v, d) in enumerate(extra[:25]):
        view = views[v]
        findings.fail(Finding("doc_has_source", Severity.error, "stored document matches no source record "
                              "(unknown or duplicated doc_id, or a record the read options leave out)",
                              **view.locate(int(view.doc_starts[d])), expected="a doc_id of a source record",
                              found=view.doc_ids[d]),
                      count=len(extra) if i == 0 else 0)
    return wrong, dict(conservation.allowed)


def render_seconds(manifest: Manifest) -> float:
    """The clock on each of the audit's renders: the writer's own `template_limits.max_render_seconds`."""
    mask = manifest.options.get("mask")
    limits = (mask.get("template_limits") if isinstance(mask, dict) else None) or {}
    return float(limits.get("max_render_seconds", DEFAULT_RENDER_SECONDS))


def _chunks(rows: Iterator[RawRecord]) -> Iterator[list[RawRecord]]:
    """Rows in batches of at most `BATCH` rows and about `BATCH_CHARS` characters of text, so that a worker's
    renders and encodings (~80 bytes a token) stay far below its memory ceiling even for long documents."""
    return batches(rows, BATCH, BATCH_CHARS)


def _plan(chunk: list, index: DocIndex, renderer: Renderer, rejected: set, missing: list[Any]
          ) -> tuple[list[tuple[int, Any, list[Place], str]], list[tuple]]:
    """The documents to re-derive for a batch of raw rows: (row in chunk, record, places, doc id) and the
    deriver's input for each. A record with no stored document and no reject is added to `missing`."""
    jobs: list[tuple[int, Any, list[Place], str]] = []
    todo: list[tuple] = []
    for r, row in enumerate(chunk):
        for record in row.records:
            stored = record_jobs(record, index)
            if not stored and (record.source, record.index) not in rejected:
                missing.append(record)
            split_turns = {k for _, _, k in stored if k is not None}
            for doc_id, places, k in stored:
                todo.append(renderer.document_input(record.messages, record.tools, record.train, split_turns)
                            if k is None else renderer.turn_input(record.messages, record.tools, k))
                jobs.append((r, record, places, doc_id))
    return jobs, todo


def _derived(results: Iterator[DerivedBatch]) -> Iterator[list[Derived]]:
    """The workers' results; a worker killed from outside ends the audit with a clear error, not a traceback."""
    try:
        for batch in results:
            yield batch.unpack()
    except BrokenProcessPool as err:
        raise SftdataError("an audit worker process died while re-deriving the records (killed from outside: "
                           "the kernel's out-of-memory killer or a signal), so the audit did not finish. Give it "
                           f"more memory, or fewer workers ({CPUS_ENV}=1 runs one)") from err


_deriver: MaskDeriver | None = None  # in a worker: inherited from the parent by fork


def _start_worker(deriver: MaskDeriver, render_seconds: float) -> None:
    """In each forked worker, before its first batch: the deriver, and the bounds on its renders."""
    global _deriver
    _deriver = deriver
    bound_this_process(render_seconds)


def _derive(todo: list[tuple]) -> DerivedBatch:
    """Re-derive one batch in a worker (the parent pairs, compares and checks conservation meanwhile)."""
    assert _deriver is not None
    return DerivedBatch.of(_deriver.derive_batch(todo) if todo else [])


def summarize_rejects(path: Path) -> dict[str, Any]:
    """Counts by reason code and a few examples of each, from `rejects.jsonl`."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    total = 0
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                total += 1
                for reason in item.get("reasons", []):
                    code = reason.get("code", "?")
                    counts[code] += 1
                    if len(examples[code]) < REJECT_EXAMPLES:
                        raw = json.dumps(item.get("raw"), ensure_ascii=False)
                        examples[code].append({"where": f"{item.get('source')}:{item.get('index')}",
                                               "id": item.get("id"), "message": reason.get("message"),
                                               "path": reason.get("path"),
                                               "raw": raw[:400] + ("…" if len(raw) > 400 else "")})
    return {"total": total, "by_reason": [{"code": c, "count": n, "examples": examples[c]}
                                          for c, n in counts.most_common()]}


def sample_documents(views: list[TokenView], tok: Any, n: int, wrong: list[tuple] = ()) -> list[dict[str, Any]]:
    """Failing documents first (differing tokens marked), then `n` documents spread evenly over all shards."""
    docs = [(v, d) for v, view in enumerate(views) for d in np.flatnonzero(view.doc_valid).tolist()]
    if not docs or n <= 0:
        return []
    picks = [(v, d, want) for v, d, want in wrong]
    shown = {(v, d) for v, d, _ in picks}
    for i in sorted({int(i) for i in np.linspace(0, len(docs) - 1, num=min(n, len(docs)))}):
        if docs[i] not in shown:
            picks.append((*docs[i], None))
    specials = special_ids(tok)
    out = []
    for k, (v, d, want) in enumerate(picks):
        view = views[v]
        ids, labels = view.doc_tokens(d)
        start = int(view.doc_starts[d])
        sup = labels != -100
        lo, hi = 0, min(len(ids), MAX_SHOWN)
        differs = np.zeros(len(ids), dtype=bool)
        if want is not None:  # zoom on the tokens whose mask differs
            differs = want[: len(ids)] != sup
            bad = np.flatnonzero(differs)
            lo, hi = max(0, int(bad[0]) - ZOOM_BEFORE), min(len(ids), int(bad[-1]) + ZOOM_AFTER)
        ids_list = [int(x) for x in ids[lo:hi]]
        pieces = token_pieces(tok, ids_list)
        have = sup[lo:hi].tolist()
        differs = differs[lo:hi].tolist()
        out.append({
            "shard": view.name, "row": int(view.token_rows[start]), "doc_id": view.doc_ids[d], "first": lo,
            "tokens": len(ids), "supervised": int(sup.sum()), "shown": len(ids_list), "failing": k < len(wrong),
            "pieces": [[p, sup, tid in specials, bad] for p, sup, tid, bad in zip(pieces, have, ids_list, differs,
                                                                                    strict=False)],
        })
    return out
