"""The command line is derived from the config models: every field is a flag, every flag a field or listed.

The field list here is walked independently of `sftdata.cli.flags` (plain `model_fields` recursion), so a
field that the derivation missed, or a flag declared by hand, fails the first tests. The others check
what a user sees: values land at the right key, YAML values stand unless a flag is given, every problem
is reported at once, and errors are printed once by the app with exit code 2.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from sftdata.audit.intent import DatasetIntent
from sftdata.chat.options import DropKind, Masking, MaskOptions
from sftdata.cli import app
from sftdata.cli.flags import model_flags, overrides, with_flags
from sftdata.config import PipelineConfig, ReadOptions
from sftdata.errors import ConfigError
from sftdata.train.config import TrainConfig

NON_CONFIG = {
    "prepare": {"inputs", "out", "config", "resume", "overwrite", "as_json"},
    "train": {"config"},
    "validate": {"inputs", "rejects", "max_reject_fraction", "as_json"},
    "inspect": {"input", "tokenizer", "row"},
    "audit": {"path", "tokenizer", "chat_template", "report", "sample", "shards_only", "allow_unproven", "as_json"},
}
"""Parameters of each command that are not config fields (named here, on purpose, one by one)."""

COMMAND_MODELS = {
    "prepare": (PipelineConfig, None),
    "train": (TrainConfig, None),
    "validate": (ReadOptions, None),
    "inspect": (PipelineConfig, ("read", "mask")),
    "audit": (DatasetIntent, None),
}
"""The model each command's options come from (inspect: only the read and mask options; audit: what another
tool's dataset was meant to train)."""

KEPT_NAMES = {"prepare": {"-t", "-f", "-w", "-o", "-c", "--masking", "--train-eot", "--no-train-eot", "--column-map",
                          "--template-kwargs", "--max-length", "--too-long", "--pack-window", "--rows-per-shard",
                          "--max-reject-fraction", "--ray-address", "--oasst-paths", "--chat-template",
                          "--prompt-format", "--control-tokens", "--no-pack", "--no-shuffle", "--json", "--resume"},
              "train": {"-c", "--model-config", "--max-steps", "--micro-batch-size", "--grad-accum", "--log-every",
                        "--no-progress", "--activation-checkpointing", "--compile", "--eval-shards"},
              "inspect": {"-t", "-n", "-f", "--masking", "--chat-template", "--prompt-format"},
              "validate": {"-f", "--column-map", "--rejects", "--max-reject-fraction", "--oasst-paths", "--max-chars"},
              "audit": {"-t", "--masking", "--no-train-eot", "--date", "--chat-template", "--shards-only",
                        "--allow-unproven", "--json", "--report", "--sample"}}
"""Option names that existed before the derivation and must keep working."""


def leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Expected flag name -> key path, nested models walked (independently of the code under test).

    The name is the leaf field's, unless a shallower field has it: then the whole path, joined by `_`.
    """
    paths: list[tuple[str, ...]] = []
    stack = [(model, prefix)]
    while stack:
        m, pre = stack.pop()
        for name, info in m.model_fields.items():
            ann = info.annotation
            if typing.get_origin(ann) in (typing.Union, types.UnionType):
                ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                stack.append((ann, (*pre, name)))
            else:
                paths.append((*pre, name))
    out = {}
    for path in paths:
        rivals = [len(p) for p in paths if p[-1] == path[-1] and p != path]
        out[path[-1] if all(len(path) < r for r in rivals) else "_".join(path)] = path
    assert len(out) == len(paths)
    return out


def params(command: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


@pytest.mark.parametrize("command", sorted(COMMAND_MODELS))
def test_every_field_is_a_flag_and_every_flag_a_field(command):
    model, only = COMMAND_MODELS[command]
    fields = {k: v for k, v in leaves(model).items() if only is None or v[0] in only}
    flags = set(params(command)) - NON_CONFIG[command]
    assert sorted(set(fields) - flags) == [], "config fields without a flag"
    assert sorted(flags - set(fields)) == [], "flags that are no config field (list them in NON_CONFIG if meant)"
    assert NON_CONFIG[command] <= set(params(command))


@pytest.mark.parametrize("command", sorted(KEPT_NAMES))
def test_existing_option_names_still_exist(command):
    names = {n for p in params(command).values() for n in (*p.opts, *p.secondary_opts)}
    assert sorted(KEPT_NAMES[command] - names) == []


@pytest.mark.parametrize("command", sorted(COMMAND_MODELS))
def test_help_is_the_field_docstring_and_the_default_is_the_models(command):
    model, only = COMMAND_MODELS[command]
    paths = leaves(model)
    for name, param in params(command).items():
        if name in NON_CONFIG[command]:
            continue
        m = model
        for key in paths[name][:-1]:
            m = m.model_fields[key].annotation
        info = m.model_fields[paths[name][-1]]
        doc = " ".join((info.description or "").split())
        assert doc, f"{model.__name__}.{name} has no docstring: write one, it is the --help text"
        help_text = param.help.replace("\\[", "[")
        assert help_text.startswith(doc)
        default = info.get_default(call_default_factory=True)
        if isinstance(default, bool):
            assert help_text.endswith(f"[default: {'--' if default else '--no-'}{name.replace('_', '-')}]")
        elif isinstance(default, tuple):
            assert help_text.endswith(f"[default: {','.join(map(str, default))}]"), name
        elif isinstance(default, (int, float, str)) and default != "":
            assert help_text.endswith(f"[default: {getattr(default, 'value', default)}]"), name
        else:
            assert "[default:" not in help_text, name


def test_choices_are_listed_with_each_members_docstring():
    help_text = params("prepare")["masking"].help
    assert "`last`: Only the last assistant turn; earlier replies are context." in help_text
    assert all(f"`{m.value}`" in help_text for m in Masking)
    assert all(f"`{m.value}`" in params("prepare")["allow_drop"].help for m in DropKind)


class Captured(Exception):
    """Raised by the stand-in for the library call once the command has built its config."""


@pytest.fixture
def capture_prepare(monkeypatch):
    seen = {}

    def fake(inputs, out, cfg, **kwargs):
        seen["cfg"] = cfg
        raise Captured

    monkeypatch.setattr(importlib.import_module("sftdata.prepare"), "prepare", fake)
    return seen


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_prepare_flags_land_at_their_keys(capture_prepare, tmp_path):
    result = run("prepare", "in.jsonl", "-o", str(tmp_path / "o"), "-t", "tok", "--masking", "last", "--no-train-eot",
                 "--allow-drop", "tools,system", "--allow-drop", "name", "--column-map", "context=input,q=instruction",
                 "--template-kwargs", '{"enable_thinking": false}', "--max-length", "512", "-w", "2", "-f", "alpaca",
                 "--no-pack", "--max-chars", "99")
    assert isinstance(result.exception, Captured), result.output
    cfg = capture_prepare["cfg"]
    assert (cfg.tokenizer, cfg.max_length, cfg.workers, cfg.pack) == ("tok", 512, 2, False)
    assert (cfg.mask.masking, cfg.mask.train_eot, cfg.mask.train_reasoning) == (Masking.last, False, True)
    assert cfg.mask.allow_drop == [DropKind.tools, DropKind.system, DropKind.name]
    assert cfg.mask.template_kwargs == {"enable_thinking": False}
    assert (cfg.read.format, cfg.read.column_map, cfg.read.max_chars) == (
        "alpaca", {"context": "input", "q": "instruction"}, 99)


def test_yaml_values_stand_unless_a_flag_is_given(capture_prepare, tmp_path):
    yaml = tmp_path / "p.yaml"
    yaml.write_text("max_length: 1024\nseed: 7\nmask:\n  masking: last\n  train_eot: false\nread:\n  format: alpaca\n")
    result = run("prepare", "in.jsonl", "-o", str(tmp_path / "o"), "-c", str(yaml), "--max-length", "256",
                 "--train-eot")
    assert isinstance(result.exception, Captured), result.output
    cfg = capture_prepare["cfg"]
    assert (cfg.max_length, cfg.seed, cfg.mask.masking, cfg.mask.train_eot, cfg.read.format) == (
        256, 7, Masking.last, True, "alpaca")


@pytest.mark.parametrize(("args", "messages"), [
    (["--masking", "nope", "--too-long", "chop"], ["mask.masking", "too_long", "2 problem(s)"]),
    (["--max-length", "many"], ["max_length", "valid integer"]),
    (["--column-map", "a=x,b=x"], ["sends two fields to 'x'; each target may appear once"]),
    (["--column-map", "broken"], ["column map item 'broken' is not OLD=NEW"]),
    (["--template-kwargs", "{nope"], ["--template-kwargs is not valid JSON"]),
    (["--allow-drop", "tools,everything"], ["mask.allow_drop.1"]),
])
def test_bad_values_exit_2_with_every_problem_named(capture_prepare, tmp_path, args, messages):
    result = run("prepare", "in.jsonl", "-o", str(tmp_path / "o"), *args)
    assert result.exit_code == 2 and "cfg" not in capture_prepare
    assert result.stderr.startswith("error: ")
    for message in messages:
        assert message in result.stderr.replace("\n", " ")


def test_train_flags_including_new_ones_and_the_kept_alias(monkeypatch, tmp_path):
    from sftdata.train import config as train_config

    seen = {}
    real = train_config.load_config

    def capture(path=None, **over):
        seen["cfg"] = real(path, **over)
        raise ConfigError("captured")

    monkeypatch.setattr(train_config, "load_config", capture)
    result = run("train", "--shards", "s", "--out", "o", "--model-config", "tiny-llama", "--betas", "0.8,0.9",
                 "--no-shuffle", "--max-steps", "3", "--precision", "fp32", "--keep-checkpoints", "5")
    assert result.exit_code == 2 and "captured" in result.stderr
    cfg = seen["cfg"]
    assert (cfg.model_from_config, cfg.betas, cfg.shuffle, cfg.max_steps, cfg.keep_checkpoints) == (
        "tiny-llama", (0.8, 0.9), False, 3, 5)
    assert cfg.precision == "fp32" and cfg.shards == Path("s")


def test_a_new_field_is_a_flag_without_touching_the_cli():
    class Limits(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)
        max_loops: int = 100
        """Most loop iterations a template may run."""

    class Options(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)
        limits: Limits = Field(default_factory=Limits)
        """Bounds."""
        names: list[str] = Field(default_factory=list)
        """Names to keep."""
        fast: bool = False
        """Go fast."""

    flags = model_flags(Options)
    tiny = typer.Typer()

    @tiny.command()
    @with_flags(flags)
    def show(**values):
        typer.echo(json.dumps(overrides(flags, values)))

    result = CliRunner().invoke(tiny, ["--max-loops", "7", "--names", "a,b", "--names", "c", "--fast"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"limits": {"max_loops": "7"}, "names": ["a", "b", "c"], "fast": True}
    assert Options.model_validate(json.loads(result.stdout)).limits.max_loops == 7
    assert json.loads(CliRunner().invoke(tiny, []).stdout) == {}  # nothing given: the YAML/defaults stand
    [loops] = [p for p in typer.main.get_command(tiny).params if p.name == "max_loops"]
    assert loops.help.replace("\\[", "[") == "Most loop iterations a template may run. [default: 100]"


def test_a_nested_field_never_takes_the_name_of_a_shallower_one():
    class A(BaseModel):
        seed: int = 0
        depth: int = 1

    class B(BaseModel):
        a: A = Field(default_factory=A)
        c: A = Field(default_factory=A)
        seed: int = 1

    names = {f.path: f.decls[0] for f in model_flags(B)}
    assert names == {("seed",): "--seed", ("a", "seed"): "--a-seed", ("c", "seed"): "--c-seed",
                     ("a", "depth"): "--a-depth", ("c", "depth"): "--c-depth"}
    assert overrides(model_flags(B), {"a_seed": "3", "seed": "4"}) == {"a": {"seed": "3"}, "seed": "4"}

    class C(BaseModel):
        seed: int = 0
        a_seed: int = 0
        a: A = Field(default_factory=A)

    with pytest.raises(ValueError, match=r"fields a_seed and a\.seed would both be --a-seed; rename one"):
        model_flags(C)


def test_errors_are_handled_once_by_the_app():
    cli = Path(__file__).resolve().parents[1] / "sftdata" / "cli"
    catching = sorted(p.name for p in cli.glob("*.py") if "except SftdataError" in p.read_text(encoding="utf-8"))
    assert catching == ["__init__.py"]


def test_core_modules_never_import_rich_typer_or_the_cli():
    code = ("import sys, sftdata.chat.view, sftdata.config, sftdata.shards, sftdata.train.data, sftdata.audit; "
            "print([m for m in ('rich', 'typer', 'sftdata.cli', 'torch', 'ray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mask_options_alone_give_the_same_flags_as_inside_the_pipeline():
    alone = {f.name: f.decls for f in model_flags(MaskOptions)}
    nested = {f.name: f.decls for f in model_flags(PipelineConfig) if f.path[0] == "mask"}
    assert alone == nested


def test_the_cli_reads_the_audit_flags_without_loading_the_audit():
    """Every command starts by building the CLI; the audit's flags come from `audit.intent`, and must not bring
    the audit itself (numpy views, pyarrow, the renderer) into `prepare`'s start-up."""
    code = "import sys, sftdata.cli; print(sorted(m for m in sys.modules if m.startswith('sftdata.audit')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['sftdata.audit', 'sftdata.audit.intent']"
