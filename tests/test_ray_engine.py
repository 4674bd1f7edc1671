"""`prepare --engine ray`: the same bytes as `--engine local`, even when a worker dies; no Ray by default.

The Ray tests start a local Ray (2 CPUs, no dashboard) once for the module and run the real chat
encoder with the tokenizer bundled in `sftdata/data/tokenizer`, on the bundled example plus extra bad
rows, over two inputs (JSONL and Parquet), with small windows, shards, batches and read ranges so that
every seam (read ranges, batches, windows, shard parts, rejects between them) is crossed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sftdata
from sftdata.config import PipelineConfig
from sftdata.pipeline import ray_read
from sftdata.pipeline.ray_read import plan_ranges, range_rows, to_raw_row
from sftdata.prepare import prepare
from sftdata.readers import read_rows

PACKAGE = Path(sftdata.__file__).resolve().parent
TOKENIZER = str(PACKAGE / "data" / "tokenizer")
EXAMPLE = PACKAGE / "data" / "example.jsonl"


# -- reading: the positions and rows of the local reader, whatever the ranges ------------------------
def _jsonl_with_seams(path: Path) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                      {"role": "assistant", "content": "a" * (i % 7 + 1)}]}).encode()
             for i in range(40)]
    lines[5] = b""  # blank line: not a row, but it still counts in the index
    lines[9] = b'{"messages": [broken'
    lines[13] = b'{"messages": "\xff\xfe"}'  # invalid UTF-8
    lines[20] = b"[1, 2]"
    path.write_bytes(b"\n".join(lines))  # no final newline
    return path


@pytest.mark.parametrize("range_bytes", [1, 37, 300, 10_000_000])
def test_jsonl_ranges_give_the_local_readers_rows(tmp_path: Path, range_bytes: int) -> None:
    path = _jsonl_with_seams(tmp_path / "seams.jsonl")
    ranges = plan_ranges([str(path)], range_bytes=range_bytes)
    got = [to_raw_row(str(path), index, kind, payload) for r in ranges for index, kind, payload in range_rows(r)]
    assert got == list(read_rows(str(path)))
    assert len(ranges) > 1 or range_bytes > 1000
    assert [r.lo for r in ranges[1:]] == [r.hi for r in ranges[:-1]]  # contiguous, nothing read twice


def test_parquet_and_whole_inputs_give_the_local_readers_rows(tmp_path: Path) -> None:
    table = pa.table({"instruction": [f"task {i}" for i in range(70)], "output": ["" if i == 3 else f"done {i}"
                                                                                 for i in range(70)]})
    parquet = tmp_path / "rows.parquet"
    pq.write_table(table, parquet, row_group_size=8)
    whole = tmp_path / "rows.json"
    whole.write_text(json.dumps(table.to_pylist()[:5]))
    ray_read_rows = ray_read.PARQUET_RANGE_ROWS
    try:
        ray_read.PARQUET_RANGE_ROWS = 20
        ranges = plan_ranges([str(parquet), str(whole)])
    finally:
        ray_read.PARQUET_RANGE_ROWS = ray_read_rows
    assert [r.kind for r in ranges] == ["parquet"] * 3 + ["whole"]
    got = [to_raw_row(r.source, index, kind, payload) for r in ranges for index, kind, payload in range_rows(r)]
    assert got == list(read_rows(str(parquet))) + list(read_rows(str(whole)))


def test_missing_input_fails_with_the_local_readers_message(tmp_path: Path) -> None:
    from sftdata.errors import InputError

    with pytest.raises(InputError, match="nope.jsonl: no such file"):
        plan_ranges([str(tmp_path / "nope.jsonl")])


# -- the default engine does not touch Ray ------------------------------------------------------------
def test_default_engine_imports_nothing_of_ray(tmp_path: Path) -> None:
    data = tmp_path / "few.jsonl"
    data.write_text("\n".join(EXAMPLE.read_text(encoding="utf-8").splitlines()[:12]) + "\n", encoding="utf-8")
    code = (
        "import sys\n"
        "import sftdata.prepare\n"
        "assert 'ray' not in sys.modules, 'import sftdata.prepare imported ray'\n"
        "from sftdata.config import PipelineConfig\n"
        f"r = sftdata.prepare.prepare([{str(data)!r}], {str(tmp_path / 'out')!r}, "
        f"PipelineConfig(tokenizer={TOKENIZER!r}, max_length=1024))\n"
        "assert r.manifest.counts.docs_written > 0\n"
        "leaked = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not leaked, leaked[:5]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]


# -- the Ray engine: identical bytes ------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("inputs")
    jsonl = folder / "chat.jsonl"
    extra = [b"", b'{"messages": [{"role": "user", "content": "cut"}', b'{"messages": "\xff"}',
             json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}).encode()]
    jsonl.write_bytes(EXAMPLE.read_bytes() + b"\n".join(extra) + b"\n" + EXAMPLE.read_bytes())
    parquet = folder / "alpaca.parquet"
    rows = [{"instruction": f"Say the number {i} in words.", "input": "", "output": "" if i == 4 else f"It is {i}."}
            for i in range(30)]
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=7)
    return [str(jsonl), str(parquet)]


CONFIG = {"tokenizer": TOKENIZER, "max_length": 128, "too_long": "truncate", "pack_window": 60,
          "rows_per_shard": 9, "chunk_size": 16, "max_reject_fraction": 0.5, "seed": 7}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def local_output(inputs: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("local") / "out"
    result = prepare(inputs, out, PipelineConfig(**CONFIG))
    counts = result.manifest.counts
    assert counts.rejected >= 6 and counts.truncated > 0 and len(result.manifest.shards) > 3  # every seam is used
    return _files(out)


@pytest.mark.slow
def test_ray_engine_writes_the_same_bytes_as_local(local_ray, inputs, local_output, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_read, "RANGE_BYTES", 20_000)  # several read tasks per JSONL input
    assert len(plan_ranges(inputs)) > 3
    out = tmp_path / "ray"
    result = prepare(inputs, out, PipelineConfig(**CONFIG, engine="ray"))
    assert result.exit_code == 0
    got = _files(out)
    assert sorted(got) == sorted(local_output)
    for name, data in local_output.items():
        assert got[name] == data, f"{name} differs between --engine local and --engine ray"


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_nothing_is_lost_or_doubled(local_ray, inputs, local_output, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sftdata.pipeline.ray_engine import CRASH_ENV

    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ENV, str(marker))
    out = tmp_path / "ray"
    prepare(inputs, out, PipelineConfig(**CONFIG, engine="ray"))
    assert marker.exists(), "the fault was not injected"
    assert _files(out) == local_output


# -- every read and mask option, non-default: Ray equals local, and the audit passes on each ---------
def _option_inputs(folder: Path) -> dict[str, list[str]]:
    """Inputs that make each non-default option matter (OASST tree, Dolly-like alpaca, a split dataset)."""
    from datasets import Dataset, DatasetDict

    def node(role: str, text: str, rank: int | None, replies: list) -> dict:
        return {"message_id": text[:8], "role": role, "text": text, "rank": rank, "replies": replies}

    trees = [{"message_tree_id": f"t{i}", "prompt": node("prompter", f"Question {i} about tea?", None, [
        node("assistant", f"Best answer {i}: heat the water.", 0, [node("prompter", "And then?", None, [
            node("assistant", f"Steep it {i} minutes.", 0, [])])]),
        node("assistant", f"Second answer {i}: boil it.", 1, [])])} for i in range(6)]
    oasst = folder / "trees.jsonl"
    oasst.write_text("".join(json.dumps(t) + "\n" for t in trees), encoding="utf-8")
    dolly = folder / "dolly.jsonl"
    dolly.write_text("".join(json.dumps({"instruction": f"Summarise text {i}.", "context": f"Context {i}: tea grows.",
                                         "response": f"Summary {i}.", "category": "summarization"}) + "\n"
                             for i in range(12)), encoding="utf-8")
    rows = [json.loads(line) for line in EXAMPLE.read_text(encoding="utf-8").splitlines()[:60] if line.startswith("{")
            and '"messages"' in line]
    rows = [r for r in rows if isinstance(r.get("messages"), list)]
    dataset = folder / "dataset"
    DatasetDict({"test": Dataset.from_list([{"prompt": r["messages"][0]["content"],
                                            "completion": r["messages"][-1]["content"]}
                                           for r in rows if len(r["messages"]) == 2][:20])}).save_to_disk(str(dataset))
    template = folder / "template.jinja"
    template.write_text((PACKAGE / "data" / "tokenizer" / "chat_template.jinja").read_text(encoding="utf-8"))
    return {"oasst": [str(oasst)], "dolly": [str(dolly)], "dataset": [str(dataset)], "example": [str(EXAMPLE)],
            "template": [str(template)]}


OPTION_SETS = {
    # read: format named, max_chars and max_row_bytes low; mask: masking last, no eot, control tokens rejected,
    # a date
    "format+max_chars+max_row_bytes+last+no_eot+reject_control": (
        "example", {"format": "messages", "max_chars": 300, "max_row_bytes": 900,
                    "mask": {"masking": "last", "train_eot": False, "control_tokens": "reject",
                             "date": "01 Jan 2025"}}),
    # read: OASST top paths; mask: masking all, reasoning not trained, reasoning field rejected, tighter
    # template limits (still far above what these templates use)
    "oasst_top+all+no_reasoning+limits": (
        "oasst", {"oasst_paths": "top", "mask": {"masking": "all", "train_reasoning": False,
                                                 "reasoning_field": "reject",
                                                 "template_limits": {"max_items": 100_000, "max_call_depth": 50}}}),
    # read: a column map; mask: template file, template kwargs, allowed drops, reasoning history last
    "column_map+template+kwargs+allow_drop": (
        "dolly", {"column_map": {"context": "input", "response": "output"},
                  "mask": {"template_kwargs": {"unused_flag": True}, "allow_drop": ["name", "system"],
                           "reasoning_history": "last", "chat_template": "{template}"}}),
    # read: a split of a dataset folder; mask: plain prompt format, control tokens allowed
    "split+prompt_format+allow_control": (
        "dataset", {"split": "test", "mask": {"prompt_format": "User: {prompt}\nAssistant: {response}<|im_end|>",
                                              "control_tokens": "allow"}}),
}


@pytest.mark.slow
def test_every_read_and_mask_option_ray_equals_local_and_the_audit_passes(local_ray, tmp_path: Path) -> None:
    from sftdata.audit import audit_prepared
    from sftdata.chat.options import MaskOptions
    from sftdata.config import ReadOptions, resolve_config

    given = _option_inputs(tmp_path)
    covered_read: set[str] = set()
    covered_mask: set[str] = set()
    problems: list = []
    for name, (data, options) in OPTION_SETS.items():
        options = json.loads(json.dumps(options).replace("{template}", given["template"][0]))
        config = resolve_config(None, {"tokenizer": TOKENIZER, "max_length": 256, "max_reject_fraction": 1.0,
                                       "rows_per_shard": 16, "chunk_size": 8, **options})
        covered_read |= {k for k, v in config.read if v != ReadOptions.model_fields[k].default}
        covered_mask |= {k for k, v in config.mask if v != MaskOptions.model_fields[k].get_default(
            call_default_factory=True)}
        local = prepare(given[data], tmp_path / name / "local", config)
        ray = prepare(given[data], tmp_path / name / "ray", config.model_copy(update={"engine": "ray"}))
        assert local.manifest.counts.docs_written > 0, name
        if _files(tmp_path / name / "ray") != _files(tmp_path / name / "local"):
            problems.append(f"{name}: Ray differs from local")
        report = audit_prepared(ray.out, sample=0)
        if not report.passed:
            problems.append((name, [f.to_json() for f in report.findings.items if f.severity == "error"][:3]))
        assert report.about["read"] == config.read.model_dump(mode="json"), name
    assert not problems, problems
    assert covered_read == set(ReadOptions.model_fields)
    assert covered_mask == set(MaskOptions.model_fields), set(MaskOptions.model_fields) - covered_mask
