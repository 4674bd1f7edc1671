"""The transformers-free chat tokenizer, and workers that pay: same tokenizer as `AutoTokenizer`, no
transformers in `prepare` or its workers, no process left behind, the same bytes with a pool as inline.

`ChatTokenizer` must be indistinguishable from `AutoTokenizer.from_pretrained` for everything the engine
reads (special-token map, added tokens, chat template, control tokens, the Rust backend and its ids) on
the ten real tokenizers; the engine's ids against `apply_chat_template` are proven by
`test_engine_fixtures.py` / `test_prepare_real.py`, which now run on it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, TOKENIZER_NAMES, TOKENIZERS, requires_shared

from sftdata.chat.tokenizer import ChatTokenizer, TransformersFallback, load_chat_tokenizer
from sftdata.config import PipelineConfig
from sftdata.errors import ConfigError
from sftdata.pool import CPUS_ENV, cpu_count, ordered_map, resolve_workers, tokenizer_threads

DEMO = ROOT / "sftdata" / "data" / "tokenizer"
EXAMPLE = ROOT / "sftdata" / "data" / "example.jsonl"

TEXTS = [
    "Hello, world! How are you today?",
    "  leading spaces and\ttabs\n\nnewlines  ",
    "你好，世界 🙂 — naïve café, Zürich",
    "def f(x):\n    return x ** 2  # code",
    "",
]


def _added(tok) -> dict[int, tuple]:
    return {i: (t.content, t.special, t.lstrip, t.rstrip, t.normalized, t.single_word)
            for i, t in tok.added_tokens_decoder.items()}


def _assert_same(light, ref) -> None:
    assert isinstance(light, ChatTokenizer)
    assert light.special_tokens_map == ref.special_tokens_map
    assert _added(light) == _added(ref)
    assert light.added_tokens_encoder == ref.added_tokens_encoder
    assert light.chat_template == ref.chat_template
    assert light.unk_token_id == ref.unk_token_id
    assert light.chat_control_tokens == ref.chat_control_tokens
    template = ref.chat_template if isinstance(ref.chat_template, str) else ref.chat_template["default"]
    assert light._get_control_tokens(template) == ref._get_control_tokens(template)
    assert light.backend_tokenizer.encode_special_tokens == ref.backend_tokenizer.encode_special_tokens
    assert json.loads(light.backend_tokenizer.to_str()) == json.loads(ref.backend_tokenizer.to_str())
    specials = list(ref.added_tokens_encoder)[:40]
    texts = [*TEXTS, "".join(specials[:6]) + " between " + " ".join(specials[6:12]),
             ref.apply_chat_template([{"role": "user", "content": TEXTS[2]},
                                      {"role": "assistant", "content": TEXTS[3]}], tokenize=False)]
    for special in (False, True):
        got = [e.ids for e in light.backend_tokenizer.encode_batch(texts, add_special_tokens=special)]
        assert got == [ref(t, add_special_tokens=special)["input_ids"] for t in texts]
    names = [*specials, "certainly-not-a-token-\u2603", "a"]
    assert [light.convert_tokens_to_ids(t) for t in names] == ref.convert_tokens_to_ids(names)


@requires_shared
@pytest.mark.parametrize("name", TOKENIZER_NAMES)
def test_light_tokenizer_equals_autotokenizer_on_the_fixtures(name: str) -> None:
    from transformers import AutoTokenizer

    path = str(TOKENIZERS / name)
    _assert_same(load_chat_tokenizer(path), AutoTokenizer.from_pretrained(path))


def test_light_tokenizer_equals_autotokenizer_on_the_embedded_tokenizer() -> None:
    from transformers import AutoTokenizer

    _assert_same(load_chat_tokenizer(str(DEMO)), AutoTokenizer.from_pretrained(str(DEMO)))


def test_reference_methods_come_from_transformers_on_first_use() -> None:
    tok = load_chat_tokenizer(str(DEMO))
    ids = tok.backend_tokenizer.encode("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False).ids
    assert tok.decode(ids) == "<|im_start|>user\nHi<|im_end|>"  # delegated to AutoTokenizer
    assert type(tok.reference).__name__ == "TokenizersBackend"
    with pytest.raises(AttributeError):
        tok.__deepcopy_helper__  # noqa: B018 - dunder probes never load transformers


def _copy_demo(tmp_path: Path, **config_changes: object) -> Path:
    folder = tmp_path / "tok"
    shutil.copytree(DEMO, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.update(config_changes)
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("change", "why"), [
    ({"tokenizer_class": "Qwen2Tokenizer"}, "tokenizer_class 'Qwen2Tokenizer'"),
    ({"auto_map": {"AutoTokenizer": ["x.Tok", None]}}, "sets 'auto_map'"),
    ({"bos_token": "<|not-in-the-vocab|>"}, "not added tokens of tokenizer.json"),
])
def test_other_folders_fall_back_to_transformers_and_say_why(tmp_path: Path, change: dict, why: str) -> None:
    folder = _copy_demo(tmp_path, **change)
    with pytest.warns(TransformersFallback, match=why):
        tok = load_chat_tokenizer(str(folder))
    assert not isinstance(tok, ChatTokenizer)
    assert tok.special_tokens_map["eos_token"] == "<|im_end|>"


def test_a_folder_without_tokenizer_json_falls_back(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.warns(TransformersFallback, match="a folder without tokenizer.json"), \
            pytest.raises((OSError, ValueError)):
        load_chat_tokenizer(str(tmp_path / "empty"))


# -- workers ------------------------------------------------------------------------------------------
def test_auto_workers_leave_a_core_to_the_main_process_and_counts_are_capped() -> None:
    assert resolve_workers("auto", cores=2) == 1  # inline: the Rust pool already uses both cores
    assert resolve_workers("auto", cores=16) == 15
    assert resolve_workers("auto", cores=1) == 1
    assert resolve_workers(2, cores=16) == 2
    assert resolve_workers(2, cores=2) == 1  # 1 -> 2 workers on 2 cores is never slower: it is the same run
    assert resolve_workers(8, cores=4) == 3  # processes never outnumber cores
    assert tokenizer_threads(15, cores=16) == 1
    assert tokenizer_threads(2, cores=8) == 4
    assert tokenizer_threads(4, cores=2) == 1


def test_sftdata_cpus_overrides_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPUS_ENV, "5")
    assert cpu_count() == 5
    assert resolve_workers("auto") == 4
    monkeypatch.setenv(CPUS_ENV, "zero")  # not a count: the affinity mask (or a lower cgroup quota) decides
    assert 1 <= cpu_count() <= len(os.sched_getaffinity(0))


def test_a_single_batch_never_starts_a_pool() -> None:
    before = set(multiprocessing.active_children())
    assert list(ordered_map(abs, [-3], workers=4)) == [3]
    assert set(multiprocessing.active_children()) == before


def test_workers_default_to_auto_and_reject_nonsense() -> None:
    assert PipelineConfig().workers == "auto"
    assert PipelineConfig(workers=3).workers == 3
    assert "workers" not in PipelineConfig().output_options()
    from sftdata.config import resolve_config

    with pytest.raises(ConfigError, match="workers"):
        resolve_config(overrides={"workers": 0})
    with pytest.raises(ConfigError, match="workers"):
        resolve_config(overrides={"workers": "many"})


CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from sftdata.config import PipelineConfig
    from sftdata.prepare import prepare

    def children():
        me = str(os.getpid())
        out = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me:
                    out.append(int(entry.name))
            except (OSError, IndexError):
                continue
        return out

    seen = []
    config = PipelineConfig(tokenizer=sys.argv[3], max_length=1024, workers=2, chunk_size=4, rows_per_shard=8)
    result = prepare([sys.argv[1]], sys.argv[2], config, on_progress=lambda p: seen.append(len(children())))
    assert result.manifest.counts.docs_written > 0
    assert max(seen) >= 2, f"no pool ran: children seen {seen}"
    time.sleep(0.5)
    left = children()
    assert not left, f"processes still alive 0.5 s after prepare returned: {left}"
    leaked = sorted(m for m in sys.modules if m == "transformers" or m.startswith("transformers."))
    assert not leaked, leaked[:5]
    inline = prepare([sys.argv[1]], sys.argv[2] + "-inline", config.model_copy(update={"workers": 1}))
    for name in sorted(os.listdir(sys.argv[2])):
        same = Path(sys.argv[2], name).read_bytes() == Path(inline.out, name).read_bytes()
        assert same, f"{name} differs between 2 workers and inline"
    print("ok", max(seen))
""")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list child processes")
def test_prepare_and_its_workers_never_import_transformers_and_leave_no_process(tmp_path: Path) -> None:
    data = tmp_path / "few.jsonl"
    data.write_text("\n".join(EXAMPLE.read_text(encoding="utf-8").splitlines()[:24]) + "\n", encoding="utf-8")
    poison = tmp_path / "poison"  # any `import transformers`, in the main process or a worker, fails the run
    (poison / "transformers").mkdir(parents=True)
    (poison / "transformers" / "__init__.py").write_text("raise ImportError('transformers was imported')\n")
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{poison}{os.pathsep}{ROOT}",
           CPUS_ENV: "3"}  # a pool of 2 even on a 2-core machine (counts are capped at cores - 1)
    done = subprocess.run([sys.executable, "-c", CHILD, str(data), str(tmp_path / "out"), str(DEMO)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok"), done.stdout
