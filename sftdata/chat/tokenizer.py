"""A chat tokenizer without transformers: `tokenizer.json` in the Rust `tokenizers` library, configs read directly.

Why: importing transformers costs ~2.5 s of the ~8 s floor process (20k-row bench, Qwen2.5, 2 cores), and
every spawned worker pays it again; `tokenizers`, `jinja2`, `pyarrow` and `pydantic` import in 0.22 s
together. The engine needs only a few things from a tokenizer, and for a folder that holds a
`tokenizer.json` transformers 5 builds them from the files exactly as follows (mirrored here,
`TokenizersBackend._from_pretrained` / `__init__`):

- the backend is `Tokenizer.from_file("tokenizer.json")` unchanged (padding and truncation as saved),
  with `encode_special_tokens = split_special_tokens` from `tokenizer_config.json`, and a plain
  `$A` post-processor when the file has none (it only matters with `add_special_tokens=True`);
- named special tokens (`bos_token` ... `mask_token`) come from `tokenizer_config.json` (a string or a
  serialized `AddedToken`), plus model-specific `*_token` keys and a dict-valued `extra_special_tokens`;
  `special_tokens_map.json` is read only when the config has no `added_tokens_decoder` (the legacy path);
- the chat template is `chat_template.jinja` (plus `additional_chat_templates/*.jinja` as named ones),
  else the config's `chat_template`;
- `added_tokens_decoder`, `convert_tokens_to_ids` and `unk_token_id` are the backend's own.

A folder is loaded this way only when nothing outside that list could change the ids: its
`tokenizer_class` is `PreTrainedTokenizerFast` / `TokenizersBackend` (model-specific classes may rebuild
the backend from the vocabulary), it has no remote code (`auto_map`) or Mistral regex fix, and every
special token the config names is already an added token of `tokenizer.json` (otherwise transformers would
add it, shifting ids). Anything else - a hub id, a folder without `tokenizer.json`, one of those cases -
falls back to `AutoTokenizer` with a `TransformersFallback` warning that says why (once per process; the
worker pool silences it in workers, the main process has said it). `tests/test_chat_tokenizer.py` proves
special-token maps, added tokens, templates, backends and ids equal to `AutoTokenizer` on all 10 fixtures.

What the engine does not need (`apply_chat_template`, `decode`, ...) is transformers' own: the first such
attribute access loads `AutoTokenizer` for the same folder (`reference`). Tests, `inspect` and the audit's
comparisons use that; `prepare` never does. Measured in the 20k-row profile (Qwen2.5, busy 2-core machine,
thread CPU): loading takes 1.0-1.3 s here (nearly all of it `Tokenizer.from_file`, which holds the GIL) vs
5.3 s for importing transformers and `AutoTokenizer.from_pretrained`; the run's peak RSS drops 523 -> 316 MB.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, processors

SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                             "mask_token")
"""transformers 5's named special tokens, in its order."""

LIGHT_CLASSES = frozenset({"PreTrainedTokenizerFast", "TokenizersBackend"})
"""`tokenizer_class` values whose transformers class uses `tokenizer.json` as saved."""

CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"


class TransformersFallback(UserWarning):
    """A tokenizer folder needed transformers' `AutoTokenizer` (slower start; the ids are the same)."""


class NeedsTransformers(Exception):
    """Internal: this folder is not one the light loader can reproduce exactly (the message says why)."""


def _token_text(value: Any) -> str | None:
    """A special-token value of a config: a string, a serialized AddedToken, or None; else not ours."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise NeedsTransformers(f"special token value {value!r} is neither a string nor an AddedToken")


class ChatTokenizer:
    """The subset of a transformers tokenizer that `ChatEncoder` and `sftdata.chat.control` use.

    Build it with `load_chat_tokenizer`. Attributes not defined here are looked up on `reference`
    (transformers' own tokenizer for the same folder, imported on first use).
    """

    def __init__(self, path: str, backend: Tokenizer, special_tokens: dict[str, str], extra_special_tokens: list[str],
                 chat_template: str | dict[str, str] | None, chat_control_tokens: list[str] | None) -> None:
        self.name_or_path = path
        self.backend_tokenizer = backend
        self.special_tokens_map = special_tokens
        self.extra_special_tokens = extra_special_tokens
        self.chat_template = chat_template
        self.chat_control_tokens = chat_control_tokens
        self.added_tokens_decoder: dict[int, AddedToken] = backend.get_added_tokens_decoder()
        self.added_tokens_encoder: dict[str, int] = {
            t.content: i for i, t in sorted(self.added_tokens_decoder.items())}
        unk = special_tokens.get("unk_token")
        self.unk_token_id: int | None = backend.token_to_id(unk) if unk is not None else None

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        """Token text -> id (the unknown token's id, or None, when the vocabulary lacks it), as transformers."""
        if isinstance(tokens, str):
            found = self.backend_tokenizer.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]  # type: ignore[misc]

    def _get_control_tokens(self, chat_template: str) -> tuple[str, ...]:
        """transformers' rule: special tokens, plus added tokens in the template's literal text (or the config's
        `chat_control_tokens` when set); whitespace tokens such as Gemma's "\\n" are ordinary text."""
        added = self.added_tokens_decoder.values()
        if self.chat_control_tokens is not None:
            listed = set(self.chat_control_tokens)
            return tuple(t.content for t in added if t.special or t.content in listed)
        literal = template_literal_text(chat_template)
        return tuple(t.content for t in added if t.special or (t.content in literal and not t.content.isspace()))

    @functools.cached_property
    def reference(self) -> Any:
        """transformers' `AutoTokenizer` for the same folder (imports transformers: not for the hot path)."""
        return load_tokenizer(self.name_or_path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "reference":  # copy/pickle protocol probes must not load transformers
            raise AttributeError(name)
        return getattr(self.reference, name)

    def __repr__(self) -> str:
        return f"ChatTokenizer({self.name_or_path!r}, {len(self.added_tokens_decoder)} added tokens)"


def template_literal_text(chat_template: str) -> str:
    """The template's literal strings (raw text and string constants) joined by NUL, as transformers'
    `_get_template_literal_text` (parsed with the same Jinja settings, see `sftdata.chat.jinja_env`)."""
    import jinja2.nodes

    from sftdata.chat.jinja_env import compile_template

    env = compile_template("").environment
    ast = env.parse(chat_template)
    literals = {node.data for node in ast.find_all(jinja2.nodes.TemplateData)}
    literals |= {node.value for node in ast.find_all(jinja2.nodes.Const) if isinstance(node.value, str)}
    return "\0".join(literals)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NeedsTransformers(f"{path.name} cannot be read as JSON ({err})") from None
    if not isinstance(data, dict):
        raise NeedsTransformers(f"{path.name} is not a JSON object")
    return data


def _chat_template(folder: Path, config: dict[str, Any]) -> str | dict[str, str] | None:
    templates: dict[str, str] = {}
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        templates["default"] = (folder / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    if (folder / CHAT_TEMPLATE_DIR).is_dir():
        for f in (folder / CHAT_TEMPLATE_DIR).glob("*.jinja"):
            templates[f.name.removesuffix(".jinja")] = f.read_text(encoding="utf-8")
    if len(templates) == 1 and "default" in templates:
        return templates["default"]
    if templates:
        return templates
    value = config.get("chat_template")
    if isinstance(value, list):  # saved as [{"name": ..., "template": ...}]
        return {t["name"]: t["template"] for t in value}
    return value


def _special_tokens(folder: Path, config: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Named special tokens (model-specific ones included) and extra special tokens, as transformers 5 sets them."""
    kwargs = dict(config)
    if "additional_special_tokens" in kwargs and not kwargs.get("extra_special_tokens"):
        kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
    if "added_tokens_decoder" not in config and (folder / "special_tokens_map.json").is_file():
        for key, value in _read_json(folder / "special_tokens_map.json").items():  # the legacy path
            if key == "extra_special_tokens" and isinstance(value, list):
                existing = list(kwargs.get("extra_special_tokens") or [])
                kwargs[key] = existing + [v for v in value if v not in existing]
            else:
                kwargs[key] = value
        if "additional_special_tokens" in kwargs and "extra_special_tokens" not in kwargs:
            kwargs["extra_special_tokens"] = kwargs.pop("additional_special_tokens")
    named: dict[str, str] = {}
    for key in SPECIAL_TOKENS_ATTRIBUTES:
        text = _token_text(kwargs.get(key))
        if text is not None:
            named[key] = text
    specific: dict[str, str] = {}
    for key, value in kwargs.items():
        if key not in SPECIAL_TOKENS_ATTRIBUTES and key.endswith("_token") and (
                isinstance(value, str) or (isinstance(value, dict) and value.get("__type") == "AddedToken")):
            specific[key] = _token_text(value)  # type: ignore[assignment]
    extra = kwargs.get("extra_special_tokens")
    extra_list: list[str] = []
    if isinstance(extra, dict):
        specific.update({k: _token_text(v) for k, v in extra.items()})  # type: ignore[misc]
    elif isinstance(extra, (list, tuple)):
        extra_list = [t for t in (_token_text(v) for v in extra) if t is not None]
    named.update({k: v for k, v in specific.items() if v is not None})
    return named, extra_list


def _light(path: str) -> ChatTokenizer:
    """Build the light tokenizer, or raise NeedsTransformers naming what this loader does not reproduce."""
    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        what = "a hub id or missing folder" if not folder.is_dir() else "a folder without tokenizer.json"
        raise NeedsTransformers(what)
    config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    cls = config.get("tokenizer_class")
    if cls not in LIGHT_CLASSES:
        raise NeedsTransformers(f"tokenizer_class {cls!r} (a model-specific class may rebuild the backend)")
    for key in ("auto_map", "fix_mistral_regex"):
        if key in config:
            raise NeedsTransformers(f"tokenizer_config.json sets {key!r}")
    named, extra = _special_tokens(folder, config)
    backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
    added = backend.get_added_tokens_decoder()
    present = {t.content for t in added.values()}
    for idx, token in (config.get("added_tokens_decoder") or {}).items():
        have = added.get(int(idx))
        if have is None or have.content != token.get("content") or bool(have.special) != bool(token.get("special")):
            raise NeedsTransformers(f"added token {idx} {token.get('content')!r} of tokenizer_config.json differs "
                                    "from tokenizer.json")
    missing = [t for t in (*named.values(), *extra) if t not in present]
    if missing:
        raise NeedsTransformers(f"special tokens {missing[:3]} are not added tokens of tokenizer.json")
    backend.encode_special_tokens = bool(config.get("split_special_tokens", False))
    if backend.post_processor is None:  # what transformers installs (add_bos/add_eos are ignored with a tokenizer.json)
        backend.post_processor = processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])
    if backend.truncation is None:
        backend.no_truncation()
    control = config.get("chat_control_tokens")
    return ChatTokenizer(path, backend, named, extra, _chat_template(folder, config), control)


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str) -> Any:
    """transformers' `AutoTokenizer.from_pretrained`, once per process: the reference (TRL, comparisons, fallback).

    `ChatEncoder.load` uses `load_chat_tokenizer` instead, which needs no transformers for a folder with
    `tokenizer.json` (the import alone is ~2.5 s of the floor's ~8 s). Lives here, not in `chat.engine`,
    so that this module never imports the engine (no import cycle).
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@functools.lru_cache(maxsize=8)
def load_chat_tokenizer(path: str) -> Any:
    """The light `ChatTokenizer` for a local folder with `tokenizer.json`, else transformers' `AutoTokenizer`.

    Once per process and path. The fallback warns (`TransformersFallback`) with the reason.

    Raises:
        OSError, ValueError: from `AutoTokenizer.from_pretrained` when the fallback cannot load it either.
    """
    try:
        return _light(path)
    except NeedsTransformers as why:
        warnings.warn(f"tokenizer {path}: loading it with transformers ({why}); the ids are the same, the start "
                      "is a few seconds slower", TransformersFallback, stacklevel=2)
    return load_tokenizer(path)
