"""Audit another tool's tokenized dataset: TRL, axolotl, LLaMA-Factory, or a hand-made one.

Accepted: a `datasets.save_to_disk` folder (its `state.json` names the Arrow stream files), a Parquet
or Arrow file, or a folder of them. Columns:
- `input_ids` (required);
- the mask, first found of: `labels` (-100 = no loss, unshifted as Hugging Face models expect),
  `assistant_masks` (TRL conversational), `completion_mask` (TRL prompt-completion); both masks
  present means a token must be in both;
- document boundaries in packed rows, first found of: `doc_lens`, `seq_lengths` (TRL BFD packing),
  `position_ids` (a document starts where the position resets to 0); otherwise one document per row;
- `messages` (TRL keeps it when not packing): then every row is also re-derived from its messages
  with the given template and compared, token by token, like a prepared folder.

Labels that look shifted by one (label[i] == input_ids[i+1] for most supervised tokens: the model
would learn to predict two tokens ahead) get a finding of their own, because that is the usual cause
of a flood of `label_not_id` failures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sftdata.audit.compare import compare_document
from sftdata.audit.findings import Finding, Findings, Severity
from sftdata.audit.intent import dataset_intent
from sftdata.audit.invariants import check_view
from sftdata.audit.probes import run_probes
from sftdata.audit.rederive import MaskDeriver
from sftdata.audit.render import Renderer, RenderSettings
from sftdata.audit.run import WRONG_SHOWN, AuditReport, load_tokenizer, make_rules, sample_documents
from sftdata.audit.stats import StatsAccumulator, summarize
from sftdata.audit.tables import TokenView, list_column, view_from_columns
from sftdata.errors import InputError
from sftdata.shards import read_shard

MASK_COLUMNS = ("assistant_masks", "completion_mask")
BOUNDARY_COLUMNS = ("doc_lens", "seq_lengths", "position_ids")


def dataset_files(path: Path) -> list[Path]:
    """The data files of a dataset path, in order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder; give a save_to_disk folder, a .parquet or an .arrow file")
    state = path / "state.json"
    if state.is_file():
        names = [f["filename"] for f in json.loads(state.read_text(encoding="utf-8")).get("_data_files", [])]
        return [path / n for n in names]
    files = sorted([*path.glob("*.arrow"), *path.glob("*.parquet")])
    if not files:
        raise InputError(f"{path}: no .arrow or .parquet files (and no state.json of a save_to_disk folder)")
    return files


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path) if path.suffix == ".parquet" else read_shard(path)


def foreign_view(name: str, table: pa.Table) -> tuple[TokenView, str]:
    """A view of one table and a description of the columns used."""
    columns = set(table.column_names)
    if "input_ids" not in columns:
        raise InputError(f"{name}: no `input_ids` column (found {sorted(columns)}); is this a tokenized dataset?")
    ids, offsets = list_column(table, "input_ids")
    used = ["input_ids"]
    if "labels" in columns:
        labels, label_offsets = list_column(table, "labels")
        used.append("labels")
    else:
        labels = ids.astype(np.int64)
    if not np.array_equal(label_offsets if "labels" in columns else offsets, offsets):
        raise InputError(f"{name}: `labels` rows differ in length from `input_ids`; they must be aligned")
    keep = np.ones(len(ids), dtype=bool)
    masks = [c for c in MASK_COLUMNS if c in columns]
    for column in masks:
        mask, _ = list_column(table, column)
        keep &= mask.astype(bool)
        used.append(column)
    if "labels" not in columns and not masks:
        raise InputError(f"{name}: no `labels`, `assistant_masks` or `completion_mask` column (found "
                         f"{sorted(columns)}); nothing says which tokens are trained")
    labels = np.where(keep, labels, -100)
    boundary = next((c for c in BOUNDARY_COLUMNS if c in columns), None)
    doc_lens = None
    if boundary in ("doc_lens", "seq_lengths"):
        doc_lens = list_column(table, boundary)
    elif boundary == "position_ids":
        pos, _ = list_column(table, "position_ids")
        starts = (pos == 0) | np.isin(np.arange(len(pos)), offsets[:-1])
        cuts = np.flatnonzero(starts)
        lens = np.diff(np.concatenate([cuts, [len(pos)]]))
        doc_offsets = np.searchsorted(cuts, offsets)
        doc_lens = (lens, doc_offsets.astype(np.int64))
    if boundary:
        used.append(boundary)
    n_docs = len(doc_lens[0]) if doc_lens is not None else len(offsets) - 1
    view = view_from_columns(name, table, ids="input_ids", labels=labels, doc_lens=doc_lens,
                             doc_ids=[f"{name}:{i}" for i in range(n_docs)])
    return view, ", ".join(used)


def check_shifted(view: TokenView, findings: Findings) -> None:
    """Flag labels that equal the *next* id far more often than the same id."""
    sup = view.supervised
    if not sup.any():
        return
    same = float((view.labels[sup] == view.ids[sup]).mean())
    nxt_ids = np.concatenate([view.ids[1:], [-1]])
    nxt = float((view.labels[sup] == nxt_ids[sup]).mean())
    if nxt > 0.9 and same < 0.5:
        findings.fail(Finding("labels_shifted", Severity.error, f"labels look pre-shifted by one ({nxt:.0%} equal the "
                              "next id): a model that shifts again learns to predict two tokens ahead",
                              shard=view.name, expected="labels aligned with input_ids", found="shifted by one"))


def audit_dataset(path: str | Path, tokenizer: str, *, chat_template: str | None = None, sample: int = 8,
                  masking: str = "assistant", train_eot: bool = True, sanitize: bool = False,
                  date: str | None = None, allow_unproven: bool = False) -> AuditReport:
    """Audit any tokenized dataset with the shard invariants, template probes and (with `messages`) re-derivation.

    Args:
        path: a `save_to_disk` folder, a `.parquet` / `.arrow` file, or a folder of them.
        tokenizer: the tokenizer the dataset was made with (folder or hub id).
        chat_template: a Jinja file overriding the tokenizer's template.
        masking, train_eot: what the dataset is meant to train (for the end-of-turn check and re-derivation).
        sanitize: whether control-token text in messages was encoded as plain text (HF default: no).
        date: the date the template printed (Llama 3.x), if pinned.
        allow_unproven: a mask that cannot be re-derived from `messages` is a warning, not a failure.

    Raises:
        ConfigError: an option outside its choices (`audit.intent.DatasetIntent`), before anything is read.
    """
    t0 = time.perf_counter()
    intent = dataset_intent(masking=masking, train_eot=train_eot, sanitize=sanitize, date=date)
    path = Path(path)
    tok = load_tokenizer(tokenizer)
    template = Path(chat_template).read_text(encoding="utf-8") if chat_template else None
    settings = RenderSettings(chat_template=template, masking=str(intent.masking), train_eot=intent.train_eot,
                              sanitize=intent.sanitize, date=intent.date)
    renderer = Renderer(tok, settings)
    probes = run_probes(renderer)
    rules = make_rules(tok, settings, probes, set())
    findings = Findings()
    stats = StatsAccumulator()
    views: list[TokenView] = []
    wrong: list[tuple] = []
    described: dict[str, str] = {}
    for file in dataset_files(path):
        table = read_table(file)
        view, described[file.name] = foreign_view(file.name, table)
        check_view(view, rules, findings)
        check_shifted(view, findings)
        stats.add(view)
        views.append(view)
        if "messages" in table.column_names and view.n_docs == view.n_rows:
            deriver = MaskDeriver(renderer, probes.eot_ids, probes.eot_texts)
            for d, want in _rederive_rows(view, table, deriver, findings, rules, allow_unproven):
                if len(wrong) < WRONG_SHOWN:
                    wrong.append((len(views) - 1, d, want))
    summary = summarize(stats, None)
    about: dict[str, Any] = {"tokenizer": tokenizer, "columns": described,
                             "options": intent.model_dump(mode="json", exclude={"date"}),
                             "mode": {"shards_only": False, "allow_unproven": allow_unproven}}
    samples = sample_documents(views, tok, sample, wrong)
    return AuditReport(str(path), "dataset", findings, probes.findings, summary, samples, {}, about,
                       {"total_s": round(time.perf_counter() - t0, 3)})


def _rederive_rows(view: TokenView, table: pa.Table, deriver: MaskDeriver, findings: Findings,
                   rules: Any, allow_unproven: bool = False) -> list[tuple[int, Any]]:
    """Re-derive every row from its `messages`; returns (row, expected mask or None) of failing rows."""
    messages = table.column("messages").to_pylist()
    wrong = []
    for lo in range(0, len(messages), 1024):
        batch = [[{k: v for k, v in m.items() if v is not None} for m in conv] for conv in messages[lo:lo + 1024]]
        derived = deriver.derive_batch([(m, None, [None] * len(m)) for m in batch])
        for k, result in enumerate(derived):
            outcome = compare_document(view, lo + k, result, False, findings, rules.token_text, allow_unproven)
            if outcome is not True:
                wrong.append((lo + k, outcome if isinstance(outcome, np.ndarray) else None))
    return wrong
