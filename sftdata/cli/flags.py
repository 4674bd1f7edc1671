"""Command-line flags derived from the config models: names, types, defaults and help in one place.

Each leaf field of a Pydantic model becomes one option named after the field (`mask.masking` ->
`--masking`); nested models are walked. Should a nested leaf share its name with a shallower
field, it is named by its path instead (`--mask-template-limits-seed`), so adding a field never
renames an existing option. The help is the field's attribute docstring (`use_attribute_docstrings`),
an enum adds each member with its own docstring, and the default shown is the model's default, so
no help text repeats a default by hand. A field added to a model is a flag without touching the CLI.

Values reach the model as typed (strings): Pydantic converts and validates them together with the
YAML values, so `--masking nope --too-long chop` reports both problems at once with their key paths
(`mask.masking`, `too_long`), as a YAML file would. Hence choices are listed in the help but not
checked by click. How a type becomes a flag:

    bool                 --x / --no-x
    StrEnum, Literal     one value (the choices and their docstrings in the help)
    list, tuple          repeatable and comma-separated: --allow-drop tools,system
    dict[str, str]       OLD=NEW pairs, repeatable or comma-separated (`parse_column_map`, which refuses
                         two fields mapped onto one)
    other dict           a JSON object: --template-kwargs '{"enable_thinking": false}'
    anything else        one value (int, float, str, Path, unions such as `int | "auto"`)

A flag not given is absent from the overrides, so the YAML value (or the model default) stands.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from rich.markup import escape

from sftdata.errors import ConfigError

Kind = Literal["bool", "list", "pairs", "json", "value"]

MAX_METAVAR = 15
"""Longest choice list shown as the metavar (`local|ray`); longer ones show CHOICE and live in the help."""


@dataclass(frozen=True)
class Flag:
    """One leaf field of a config model as a command-line option."""

    path: tuple[str, ...]
    """Key path in the model, e.g. ("mask", "masking")."""
    name: str
    """The option's Python parameter name: the leaf field name, unless a shallower field has it."""
    annotation: Any
    """The field's type, `None` removed."""
    info: FieldInfo
    kind: Kind
    decls: tuple[str, ...]
    """Option names: `--masking`, plus short options and kept older names."""

    def parameter(self, panel: str | None = None) -> inspect.Parameter:
        """A keyword parameter that Typer turns into this option (default None: "not given")."""
        py_type: Any = list[str] | None if self.kind in ("list", "pairs") else (
            bool | None if self.kind == "bool" else str | None)
        default = self.default_text()
        text = self.help() + (f" [default: {default}]" if default is not None else "")
        option = typer.Option(*self.decls, help=escape(text), show_default=False,
                              metavar=None if self.kind == "bool" else self.metavar(), rich_help_panel=panel)
        return inspect.Parameter(self.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[py_type, option])

    def help(self) -> str:
        """The field docstring, then each choice with its own docstring."""
        text = _one_line(self.info.description or "")
        enum = _enum_of(self.annotation)
        if enum is not None:
            docs = _member_docs(enum)
            text += "".join(f" `{m.value}`: {_one_line(docs[m.name])}" if docs.get(m.name) else f" `{m.value}`."
                            for m in enum)
        return text

    def default_text(self) -> str | None:
        """The model's default as the user would type it; None when there is none to show."""
        if self.info.default_factory is not None:
            default = self.info.default_factory()  # type: ignore[call-arg]
        elif self.info.default is PydanticUndefined:
            return None
        else:
            default = self.info.default
        if default is None or default == {} or default == []:
            return None
        if self.kind == "bool":
            return self.option if default else "--no-" + self.option[2:]
        if isinstance(default, Enum):
            return str(default.value)
        if isinstance(default, (list, tuple)):
            return ",".join(str(getattr(v, "value", v)) for v in default)
        if isinstance(default, dict):
            return json.dumps(default)
        return str(default)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def metavar(self) -> str:
        if self.kind == "pairs":
            return "OLD=NEW"
        if self.kind == "json":
            return "JSON"
        if self.kind == "list":
            [item, *_] = typing.get_args(self.annotation) or (str,)
            return _type_name(item) + ",..."
        return _type_name(self.annotation)

    def value(self, raw: Any) -> Any:
        """The command-line value as the model takes it (lists split on commas, JSON parsed, pairs checked)."""
        if self.kind == "list":
            return [part.strip() for item in raw for part in item.split(",") if part.strip()]
        if self.kind == "pairs":
            from sftdata.formats.columns import parse_column_map

            return parse_column_map(raw)
        if self.kind == "json":
            try:
                return json.loads(raw)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{self.option} is not valid JSON ({err}); pass an object such as "
                                  "'{\"enable_thinking\": false}'") from None
        return raw


def model_flags(model: type[BaseModel], *, short: Mapping[str, str] | None = None,
                aliases: Mapping[str, str] | None = None) -> list[Flag]:
    """Every leaf field of `model` (nested models walked) as a `Flag`.

    Args:
        model: the config model.
        short: leaf name -> short option (`{"tokenizer": "-t"}`).
        aliases: leaf name -> an older option name kept working (`{"model_from_config": "--model-config"}`).

    A leaf whose name a shallower field already has is named by its whole path instead
    (`mask.template_limits.seed` would be `--mask-template-limits-seed` beside a top-level `--seed`), so a
    field added anywhere never takes an existing option away.

    Raises:
        ValueError: two leaves would still get one option name (rename one field).
    """
    leaves = list(_walk(model, ()))
    depth: dict[str, list[int]] = {}
    for f in leaves:
        depth.setdefault(f.name, []).append(len(f.path))
    flags = []
    for f in leaves:
        others = sorted(depth[f.name])
        bare = len(others) == 1 or (len(f.path) == others[0] and others[0] < others[1])
        flags.append(f if bare else replace(f, name="_".join(f.path)))
    seen: dict[str, tuple[str, ...]] = {}
    for f in flags:
        if f.name in seen:
            raise ValueError(f"{model.__name__}: fields {'.'.join(seen[f.name])} and {'.'.join(f.path)} would both "
                             f"be {f.option}; rename one of them")
        seen[f.name] = f.path
    unknown = set(short or {}) | set(aliases or {})
    unknown -= set(seen)
    if unknown:
        raise ValueError(f"{model.__name__} has no fields {sorted(unknown)} (short options or aliases name a field)")
    out = []
    for f in flags:
        decls = (f.option if f.kind != "bool" else f"{f.option}/--no-{f.option[2:]}",)
        decls += tuple(x for x in ((short or {}).get(f.name), (aliases or {}).get(f.name)) if x)
        out.append(replace(f, decls=decls))
    return out


def overrides(flags: Iterable[Flag], values: Mapping[str, Any]) -> dict[str, Any]:
    """The flags that were given, as a nested dict for the model (`{"mask": {"masking": "last"}}`)."""
    out: dict[str, Any] = {}
    for f in flags:
        raw = values.get(f.name)
        if raw is None or raw == []:
            continue
        node = out
        for key in f.path[:-1]:
            node = node.setdefault(key, {})
        node[f.path[-1]] = f.value(raw)
    return out


def with_flags(flags: list[Flag], panels: Mapping[str, str] | None = None) -> Callable[[Callable], Callable]:
    """Give a command function (`def cmd(..., **values)`) one Typer option per flag.

    The function's own parameters come first (inputs, `--out`, `--config`...); the flags replace its
    `**values`, which receives them by leaf name. `panels` maps a nested model's key to the help panel
    its options are listed under (`{"mask": "Masking options"}`); a top-level field's own name places it.
    """
    def decorate(func: Callable) -> Callable:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        clash = {p.name for p in own} & {f.name for f in flags}
        if clash:
            raise ValueError(f"{func.__name__}: parameters {sorted(clash)} are also config fields")
        extra = [f.parameter((panels or {}).get(f.path[0])) for f in flags]
        func.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own), *extra])
        return func
    return decorate


def _walk(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterable[Flag]:
    for name, info in model.model_fields.items():
        annotation = _strip_none(info.annotation)
        path = (*prefix, name)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _walk(annotation, path)
        else:
            yield Flag(path, name, annotation, info, _kind(annotation), ())


def _strip_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return typing.Union[tuple(args)]  # noqa: UP007 - built from a runtime tuple
    return annotation


def _kind(annotation: Any) -> Kind:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "bool"
    if origin in (list, tuple, set, frozenset):
        return "list"
    if origin is dict or annotation is dict:
        args = typing.get_args(annotation)
        return "pairs" if args == (str, str) else "json"
    return "value"


def _enum_of(annotation: Any) -> type[Enum] | None:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        return _enum_of(args[0]) if args else None
    return None


def _type_name(annotation: Any) -> str:
    """INT, FLOAT, TEXT, PATH, or the choices when they are short (`all|top`); else CHOICE (the help lists them)."""
    choices = None
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = "|".join(str(m.value) for m in annotation)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = "|".join(str(a) for a in typing.get_args(annotation))
    if choices is not None:
        return choices if len(choices) <= MAX_METAVAR else "CHOICE"
    if origin in (typing.Union, types.UnionType):
        return "|".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    names = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}
    return names.get(annotation, "VALUE")


@cache
def _member_docs(enum: type[Enum]) -> dict[str, str]:
    """Member name -> the docstring written under it (the source is parsed, as Pydantic does for fields)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(enum)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.targets[0].id] = inspect.cleandoc(after.value.value)
    return docs


def _one_line(text: str) -> str:
    return " ".join(text.split())
