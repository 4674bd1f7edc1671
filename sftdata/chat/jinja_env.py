"""Compile and render chat templates exactly as transformers does, in a sandbox that also bounds what they build.

Chat templates come from downloaded tokenizer files: untrusted code. They are compiled once in an
`ImmutableSandboxedEnvironment` with the same settings, filters and globals as
`transformers.utils.chat_template_utils._cached_compile_jinja_template` (trim_blocks, lstrip_blocks,
loop controls, a `tojson` that does not escape HTML, `raise_exception`, `strftime_now`, `dict`, a
namespace that refuses dunder attributes), so that the rendered text - and therefore the ids - are
the ones `apply_chat_template` gives. Two deliberate differences:

- `strftime_now` returns a pinned date when one is configured (Llama 3.x prints "Today Date"), so a
  run is reproducible; `date_string` is passed with the same date, which is what Llama's templates read
  first. The equivalent `apply_chat_template` call passes `date_string=` (see `ChatEncoder.hf_kwargs`).
- Rendering is bounded by `TemplateLimits` (sftdata.chat.limits); a hit raises `TemplateLimitError`
  naming the limit, the construct and the template line.

How the bounds work. Jinja's sandbox stops attribute access to Python internals, but not a template
building a 1 GB string or looping 10**10 times. Growth needs either one expanding operation or a
feedback loop (a value built from itself), so both are checked, without a hook on every `+`:

- expanding operations are checked *before* they run, from their operands' sizes: `*` and `**`
  (`intercepted_binops`, which also stops Jinja folding `'a' * 10**9` at compile time), `%` formatting,
  `range` (`max_range`), the str methods that pad, replace, join or split (`call`), and the filters that
  build strings or lists (`join`, `replace`, `center`, `indent`, `wordwrap`, `format`, `batch`, `slice`,
  `sum`, `list`, `tojson`); `lipsum` is capped;
- every *stored* value is weighed (characters of its strings, items of its containers, nested items
  counted each time they are reached, so `[l, l]` towers count as what `str()` would print): `{% set %}`,
  `{% set %}...{% endset %}`, `{% with %}` (an AST pass wraps each value in a check filter before code
  generation), namespace attributes, and the arguments of macro, `caller()` and `loop()` calls. So a
  doubling loop or a recursive macro stops at `max_string_chars` / `max_items`, one step past the limit;
- `~` joins through a checked `str_join` and captured blocks through a checked `concat` (replacing
  Jinja's own, so no extra call); the output stream is counted (`max_output_chars`);
- every call checks the call depth (`max_call_depth`) and the clock (`max_render_seconds`); every
  `for` loop checks the clock on entry, and before each item of an iterable longer than 64. Python's own
  recursion limit, if reached first, is reported as `max_call_depth`.

Cost, measured with `benchmarks/bench_template_bounds.py` (4,000 bench conversations, the engine's full and
prefix renders, CPU medians of 5 alternating runs against the plain sandbox with the old output count):
1.015x the render time on Qwen2.5's template, within noise (0.97-1.10x) on Llama 3.1's. Renders are a
part of `prepare`, so the bounds cost it well under 1 %.

Calling the compiled template directly instead of `apply_chat_template` halves the render cost
(measured 1.5 s vs 2.8 s for 20k conversations on Qwen2.5): no per-call template lookup, message
normalisation or deep copy of plain JSON data that we already produce ourselves.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context

from sftdata.chat.limits import TemplateLimits

DEFAULT_LIMITS = TemplateLimits()

_STATE = "sftdata:render-state"
"""Key of the per-render state in the context's parent dict (not a Jinja identifier: templates cannot name it)."""

_KEEP, _LOOP = "sftdata_checked_store", "sftdata_checked_loop"
"""Filters the AST pass wraps around stored values and loop iterables."""

_LOOP_CHECK_EVERY = 64


class TemplateLimitError(RuntimeError):
    """A template tried to build or do more than a `TemplateLimits` field allows."""

    def __init__(self, limit: str, construct: str, detail: str, line: int | None = None) -> None:
        self.limit, self.construct, self.detail, self.line = limit, construct, detail, line
        super().__init__(self._text())

    def _text(self) -> str:
        where = f" at template line {self.line}" if self.line else ""
        return f"{self.construct}{where} {self.detail} (limit `{self.limit}`)"

    def at_line(self, line: int | None) -> TemplateLimitError:
        """The same error, located in the template source."""
        if line and not self.line:
            self.line = line
            self.args = (self._text(),)
        return self


RenderLimitError = TemplateLimitError
"""The earlier name (output size only)."""


class _GenerationBlocks(jinja2.ext.Extension):
    """Parse `{% generation %}...{% endgeneration %}` (Hugging Face's assistant markers) as a no-op block."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.CallBlock:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_passthrough"), [], [], body).set_lineno(lineno)

    def _passthrough(self, caller: Any) -> str:
        return caller()


class _TemplateDict:
    """`dict(...)` for templates without exposing the real type (as transformers does)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
    """Jinja namespace that refuses underscore attributes (no route to CPython internals) and oversized values."""

    limits: TemplateLimits = DEFAULT_LIMITS

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - same signature trick as Jinja's Namespace
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name, value in attrs.items():
            _TemplateNamespace._check_name(name)
            _check_value(value, type(self).limits, f"namespace attribute {name!r}")
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        _check_value(value, type(self).limits, f"namespace attribute {name!r}")
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"templates cannot store underscore attributes ({name!r})")


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


# -- sizes ---------------------------------------------------------------------------------------------------

def _kids(v: Any) -> tuple[Any, ...] | list[Any] | None:
    """The values a container prints (None for a leaf)."""
    t = type(v)
    if t is list or t is tuple:
        return v
    if t is dict:
        return [*v.keys(), *v.values()]
    if isinstance(v, (list, tuple, set, frozenset)):
        return list(v)
    if isinstance(v, dict):
        return [*v.keys(), *v.values()]
    if isinstance(v, jinja2.utils.Namespace):  # a namespace holding namespaces prints them all
        attrs = object.__getattribute__(v, "_Namespace__attrs")
        return [*attrs.keys(), *attrs.values()]
    if isinstance(v, _VIEWS):
        return list(v)
    return None


def _weigh(value: Any, limits: TemplateLimits, construct: str, times: int = 1) -> tuple[int, int]:
    """(characters, items) of a value as `str()` would spell it out, times `times`; raises past a limit.

    Nested containers are counted each time they are reached (a tower of shared lists `[l, l]` weighs what
    its text would), but each distinct container is walked once (memoised by id), so the walk costs the
    distinct objects, never the tower's expanded size.
    """
    max_chars, max_items, max_bits = limits.max_string_chars, limits.max_items, limits.max_int_bits
    memo: dict[int, tuple[int, int]] = {}
    seen: dict[int, Any] = {}  # id -> its kids, computed once (a dict view makes fresh item tuples each time)
    stack = [value]
    while stack:
        v = stack[-1]
        key = id(v)
        if key in memo:
            stack.pop()
            continue
        kids = seen.get(key)
        if kids is None:
            kids = seen[key] = _kids(v)
        if kids is None:
            stack.pop()
            continue
        types = set(map(type, kids))
        if types <= _LEAVES:  # flat (the common case, and the big one): C-level sums, no per-item Python
            stack.pop()
            chars = sum(map(len, kids)) if types == _STR else \
                sum(len(k) for k in kids if type(k) is str) if str in types else 0
            if int in types and (max(map(abs, kids)) if types <= _INTS else
                                 max(abs(k) for k in kids if type(k) is int)).bit_length() > max_bits:
                raise TemplateLimitError("max_int_bits", construct, f"would hold an integer of more than "
                                         f"{max_bits:,} bits")
            memo[key] = (min(chars, max_chars + 1), min(len(kids), max_items + 1))
            continue
        memo.setdefault(-key - 1, (0, 0))  # in progress: a cycle through a namespace counts once
        pending = [k for k in kids if type(k) is not str and _kids(k) is not None and id(k) not in memo
                   and -id(k) - 1 not in memo]
        if pending:
            stack.extend(pending)
            continue
        stack.pop()
        chars, items = 0, len(kids)
        for k in kids:
            tk = type(k)
            if tk is str:
                chars += len(k)
            elif tk is int or tk is bool or tk is float or k is None:
                if tk is int and k.bit_length() > max_bits:
                    raise TemplateLimitError("max_int_bits", construct, f"would hold an integer of more than "
                                             f"{max_bits:,} bits")
            elif isinstance(k, str):
                chars += len(k)
            else:
                kc, ki = memo.get(id(k)) or memo.get(-id(k) - 1) or (0, 0)
                chars, items = chars + kc, items + ki
        memo[key] = (min(chars, max_chars + 1), min(items, max_items + 1))
    if isinstance(value, str):
        chars, items = len(value), 0
    elif isinstance(value, int) and value.bit_length() > max_bits:
        raise TemplateLimitError("max_int_bits", construct, f"would hold an integer of more than {max_bits:,} bits")
    else:
        chars, items = memo.get(id(value), (0, 0))
    chars, items = chars * times, items * times
    if chars > max_chars:
        raise TemplateLimitError("max_string_chars", construct, f"would hold more than {max_chars:,} characters")
    if items > max_items:
        raise TemplateLimitError("max_items", construct, f"would hold more than {max_items:,} items")
    return chars, items


def _check_value(value: Any, limits: TemplateLimits, construct: str) -> Any:
    t = type(value)
    if t is str:  # the common case, kept cheap
        if len(value) > limits.max_string_chars:
            raise TemplateLimitError("max_string_chars", construct, f"would hold {len(value):,} characters, more "
                                     f"than {limits.max_string_chars:,}")
    elif t is not bool and t is not type(None) and t is not float:
        _weigh(value, limits, construct)
    return value


def _check_chars(n: int, limits: TemplateLimits, construct: str) -> None:
    if n > limits.max_string_chars:
        raise TemplateLimitError("max_string_chars", construct, f"would build {n:,} characters, more than "
                                 f"{limits.max_string_chars:,}")


def _check_items(n: int, limits: TemplateLimits, construct: str) -> None:
    if n > limits.max_items:
        raise TemplateLimitError("max_items", construct, f"would build {n:,} items, more than {limits.max_items:,}")


def _as_int(x: Any) -> int:
    return x if isinstance(x, int) else 0


_LEAVES = frozenset({str, int, float, bool, type(None)})
_STR = {str}
_INTS = frozenset({int, bool})
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_VIEW_TYPES = frozenset(_VIEWS)

_FORMAT_NUMBER = re.compile(r"\d+")
_NESTED_FIELD = re.compile(r"\{[^{}]*\{")


def _format_size(fmt: str, args: Any, limits: TemplateLimits, construct: str) -> None:
    """Upper bound of a `%` or `str.format` result: the format, every number in it (widths), the arguments."""
    numbers = sum(int(n) for n in _FORMAT_NUMBER.findall(fmt)) if any(c.isdigit() for c in fmt) else 0
    if "*" in fmt or _NESTED_FIELD.search(fmt):  # `%*d`, `{0:{1}}`: the width comes from the arguments
        values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else (args,)
        numbers += sum(abs(a) for a in values if isinstance(a, int))
    _check_chars(len(fmt) + numbers, limits, construct)
    chars, _ = _weigh(args, limits, construct)
    _check_chars(len(fmt) + numbers + chars, limits, construct)


# -- per-render state ----------------------------------------------------------------------------------------

class _RenderState:
    __slots__ = ("deadline", "depth")

    def __init__(self, limits: TemplateLimits) -> None:
        self.deadline = time.monotonic() + limits.max_render_seconds
        self.depth = 0


def _state(context: Any, limits: TemplateLimits) -> _RenderState:
    parent = context.parent
    state = parent.get(_STATE)
    if state is None:  # rendered with `Template.render` rather than `render`: a fresh parent dict per render
        state = parent[_STATE] = _RenderState(limits)
    return state


def _late(limits: TemplateLimits, construct: str) -> TemplateLimitError:
    return TemplateLimitError("max_render_seconds", construct, f"is still running after "
                              f"{limits.max_render_seconds:g} s")


# -- the environment -----------------------------------------------------------------------------------------

_DICT_NAMES = frozenset(dir(dict))


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus `TemplateLimits` (see the module docstring for where each is checked)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, limits: TemplateLimits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        max_out = limits.max_output_chars

        def concat(parts: list[str]) -> str:  # captured blocks: `{% set %}..{% endset %}`, macro bodies, filters
            if type(parts) is list and len(parts) > 1 and sum(map(len, parts)) > max_out:
                raise TemplateLimitError("max_output_chars", "a captured block (macro, `set` block, `filter` "
                                         "block)", f"would build more than {max_out:,} characters")
            return "".join(parts)

        max_chars = limits.max_string_chars

        def str_join(seq: Any) -> str:  # `a ~ b ~ c`
            s = "".join(map(str, seq))
            if len(s) > max_chars:
                raise TemplateLimitError("max_string_chars", "`~` concatenation", f"built {len(s):,} characters, "
                                         f"more than {max_chars:,}")
            return s

        self.concat = concat  # type: ignore[assignment]
        self.sftdata_str_join = str_join
        self.binop_table["*"] = self._mul
        self.binop_table["**"] = self._pow
        self.binop_table["%"] = self._mod
        self.filters[_KEEP] = lambda value: _check_value(value, limits, "`set`/`with` value")
        self.filters[_LOOP] = self._loop
        for name, check in _FILTER_CHECKS.items():
            self.filters[name] = _checked_filter(self.filters[name], check, limits, name)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`message.role` on a plain dict without the sandbox's attribute lookup (the most frequent operation of a
        chat template, ~12% of the render time): a key that names no dict attribute resolves to the item, as
        Jinja resolves it after `getattr` fails; everything else takes the sandbox's path."""
        if type(obj) is dict and type(attribute) is str and attribute not in _DICT_NAMES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    # AST pass: stored values and loop iterables go through the check filters
    def _generate(self, source: jinja2.nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        for node in source.find_all((jinja2.nodes.For, jinja2.nodes.Assign, jinja2.nodes.AssignBlock,
                                     jinja2.nodes.With)):
            if isinstance(node, jinja2.nodes.For):
                node.iter = self._wrap(node.iter, _LOOP, node.lineno)
            elif isinstance(node, jinja2.nodes.Assign):
                if isinstance(node.target, jinja2.nodes.NSRef):
                    continue  # `{% set ns.x = ... %}`: the namespace checks what it stores
                node.node = self._wrap(node.node, _KEEP, node.lineno)
            elif isinstance(node, jinja2.nodes.AssignBlock):
                node.filter = self._wrap(node.filter, _KEEP, node.lineno)
            else:
                node.values = [self._wrap(v, _KEEP, node.lineno) for v in node.values]
        code = super()._generate(source, name, filename, defer_init=defer_init)
        # `~` compiles to the module-level `str_join` imported from jinja2.runtime: use the checked one
        head, _, rest = code.partition("\n")
        return f"{head}\nstr_join = environment.sftdata_str_join\n{rest}"

    def _wrap(self, node: Any, name: str, lineno: int) -> jinja2.nodes.Filter:
        return jinja2.nodes.Filter(node, name, [], [], None, None, lineno=lineno, environment=self)

    @pass_context
    def _loop(self, context: Any, iterable: Any) -> Any:  # noqa: D401 - `self` is bound: a plain filter
        limits = self.limits
        state = _state(context, limits)
        if time.monotonic() > state.deadline:
            raise _late(limits, "a `for` loop")
        try:
            if len(iterable) <= _LOOP_CHECK_EVERY:
                return iterable
        except TypeError:
            pass
        return _clocked(iterable, state, limits)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's naming
        """Every call of a template: the sandbox check, the clock, the depth, and size checks on expanding calls."""
        if not __self.is_safe_callable(__obj):
            raise jinja2.exceptions.SecurityError(f"{__obj!r} is not safely callable")
        limits = __self.limits
        state = _state(__context, limits)
        if time.monotonic() > state.deadline:
            raise _late(limits, f"a call of {getattr(__obj, '__name__', type(__obj).__name__)!r}")
        if isinstance(__obj, (Macro, LoopContext)) or type(__obj).__name__ == "BlockReference":
            what = "recursive `loop()`" if isinstance(__obj, LoopContext) else f"macro {getattr(__obj, 'name', '')!r}"
            for a in args:
                _check_value(a, limits, f"an argument of {what}")
            for a in kwargs.values():
                _check_value(a, limits, f"an argument of {what}")
        else:
            check = _METHOD_CHECKS.get(getattr(__obj, "__name__", ""))
            if check is not None:
                # str.format comes wrapped by the sandbox (`wrap_str_format`): its str is on `__wrapped__`
                owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
                if isinstance(owner, str):
                    check(owner, limits, *args, **kwargs)
        state.depth += 1
        try:
            if state.depth > limits.max_call_depth:
                raise TemplateLimitError("max_call_depth", "recursion", f"went deeper than {limits.max_call_depth} "
                                         "nested macro/loop calls")
            result = __context.call(__obj, *args, **kwargs)
        finally:
            state.depth -= 1
        t = type(result)
        if t is list or t is dict or t is tuple or t in _VIEW_TYPES:  # `dict.fromkeys(keys, big)`, `str.split`
            _weigh(result, limits, f"the result of {getattr(__obj, '__name__', type(__obj).__name__)!r}")
        return result

    def _mul(self, a: Any, b: Any) -> Any:
        if type(a) is int and type(b) is int:
            if a.bit_length() + b.bit_length() > self.limits.max_int_bits:
                raise TemplateLimitError("max_int_bits", "`*` on integers", f"would exceed "
                                         f"{self.limits.max_int_bits:,} bits")
            return a * b
        seq, n = (b, a) if isinstance(a, int) and not isinstance(a, bool) else (a, b)
        if isinstance(n, int) and n > 1:
            if isinstance(seq, str):
                _check_chars(len(seq) * n, self.limits, "`*` on a string")
            elif isinstance(seq, (list, tuple)):
                _weigh(seq, self.limits, f"`*` on a {type(seq).__name__}", times=n)
        return a * b

    def _pow(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1 and \
                b * abs(a).bit_length() > self.limits.max_int_bits:
            raise TemplateLimitError("max_int_bits", "`**`", f"would compute an integer of about "
                                     f"{b * abs(a).bit_length():,} bits, more than {self.limits.max_int_bits:,}")
        return a**b

    def _mod(self, a: Any, b: Any) -> Any:
        if isinstance(a, str):
            _format_size(a, b, self.limits, "`%` formatting")
        return a % b

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return self.binop_table[operator](left, right)


def _clocked(iterable: Any, state: _RenderState, limits: TemplateLimits) -> Iterator[Any]:
    """A long iterable with the clock read before each item (~50 ns: loops that long are not in real templates)."""
    deadline, clock = state.deadline, time.monotonic
    for item in iterable:
        if clock() > deadline:
            raise _late(limits, "a `for` loop")
        yield item


# -- expanding str methods (through `call`) and filters ------------------------------------------------------

def _pad(s: str, limits: TemplateLimits, width: Any = 0, *args: Any, **kwargs: Any) -> None:
    _check_chars(_as_int(width), limits, "string padding (`center`/`ljust`/`rjust`/`zfill`)")


def _replace(s: str, limits: TemplateLimits, old: Any = "", new: Any = "", count: Any = -1, **kwargs: Any) -> None:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        hits = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _check_chars(len(s) + hits * (len(new) - len(old)), limits, "`replace`")


def _join(sep: str, limits: TemplateLimits, iterable: Any = (), *args: Any, **kwargs: Any) -> None:
    if isinstance(iterable, (list, tuple)):
        chars, _ = _weigh(iterable, limits, "`join`")
        _check_chars(chars + len(sep) * max(len(iterable) - 1, 0), limits, "`join`")


def _expandtabs(s: str, limits: TemplateLimits, tabsize: Any = 8, **kwargs: Any) -> None:
    _check_chars(len(s) + s.count("\t") * _as_int(tabsize), limits, "`expandtabs`")


def _split(s: str, limits: TemplateLimits, sep: Any = None, maxsplit: Any = -1, **kwargs: Any) -> None:
    if len(s) > limits.max_items:
        if isinstance(sep, str) and sep:
            n = s.count(sep) + 1
        else:  # words need a separator: at most one per whitespace character (+1), or half the length
            n = sum(s.count(c) for c in " \t\n\r\x0b\x0c") + 1 if s.isascii() else len(s) // 2 + 1
        _check_items(n, limits, "`split`")


def _splitlines(s: str, limits: TemplateLimits, *args: Any, **kwargs: Any) -> None:
    if len(s) > limits.max_items:
        _check_items(s.count("\n") + s.count("\r") + 1, limits, "`splitlines`")


def _format(s: str, limits: TemplateLimits, *args: Any, **kwargs: Any) -> None:
    _format_size(s, (*args, *kwargs.values()), limits, "`format`")


def _translate(s: str, limits: TemplateLimits, table: Any = None, *args: Any) -> None:
    if isinstance(table, dict):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _check_chars(len(s) * max(longest, 1), limits, "`translate`")


_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": _pad, "ljust": _pad, "rjust": _pad, "zfill": _pad, "replace": _replace, "join": _join,
    "expandtabs": _expandtabs, "split": _split, "rsplit": _split, "splitlines": _splitlines, "format": _format,
    "format_map": lambda s, limits, mapping=None: _format_size(s, mapping, limits, "`format_map`"),
    "translate": _translate,
}
"""str methods that can build much more than they are given, with a check of their result's size."""


def _f_join(limits: TemplateLimits, value: Any, d: Any = "", attribute: Any = None) -> None:
    if isinstance(value, str) and isinstance(d, str):
        _check_chars(len(value) + len(d) * max(len(value) - 1, 0), limits, "filter `join`")
    elif isinstance(value, (list, tuple)) and isinstance(d, str):
        chars, _ = _weigh(value, limits, "filter `join`")
        _check_chars(chars + len(d) * max(len(value) - 1, 0), limits, "filter `join`")
    elif isinstance(value, range):
        _check_chars(len(value) * (len(str(value[-1] if value else 0)) + 1 + (len(d) if isinstance(d, str) else 0)),
                     limits, "filter `join`")


def _f_replace(limits: TemplateLimits, s: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
    if isinstance(s, str):
        _replace(s, limits, old, new, -1 if count is None else count)


def _f_center(limits: TemplateLimits, value: Any, width: Any = 80) -> None:
    _check_chars(_as_int(width), limits, "filter `center`")


def _f_indent(limits: TemplateLimits, s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    if isinstance(s, str):
        pad = len(width) if isinstance(width, str) else _as_int(width)
        _check_chars(len(s) + (s.count("\n") + 1) * pad, limits, "filter `indent`")


def _f_wordwrap(limits: TemplateLimits, s: Any, width: Any = 79, break_long_words: Any = True,
                wrapstring: Any = None, break_on_hyphens: Any = True) -> None:
    if isinstance(s, str) and isinstance(wrapstring, str):
        _check_chars(len(s) * (1 + len(wrapstring)), limits, "filter `wordwrap`")


def _f_format(limits: TemplateLimits, value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        _format_size(value, (*args, *kwargs.values()), limits, "filter `format`")


def _f_batch(limits: TemplateLimits, value: Any, linecount: Any = 1, fill_with: Any = None) -> None:
    _check_items(_as_int(linecount), limits, "filter `batch`")
    if fill_with is not None:  # the last batch is padded with up to `linecount - 1` copies
        _weigh(fill_with, limits, "filter `batch`", times=max(_as_int(linecount), 1))


def _f_slice(limits: TemplateLimits, value: Any, slices: Any = 1, fill_with: Any = None) -> None:
    _check_items(_as_int(slices), limits, "filter `slice`")
    if fill_with is not None:
        _weigh(fill_with, limits, "filter `slice`", times=max(_as_int(slices), 1))


def _f_sum(limits: TemplateLimits, iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, (int, float)) and isinstance(iterable, (list, tuple)):
        _weigh([start, *iterable], limits, "filter `sum`")
        # summing n lists copies the growing prefix n times: bound the items copied
        _check_items(len(iterable) * _weigh(list(iterable) + [start], limits, "filter `sum`")[1], limits,
                     "filter `sum`")


def _f_list(limits: TemplateLimits, value: Any) -> None:
    if isinstance(value, str):
        _check_items(len(value), limits, "filter `list`")


def _f_tojson(limits: TemplateLimits, value: Any, indent: Any = None) -> None:
    if isinstance(indent, int) and indent > 16:
        chars, items = _weigh(value, limits, "filter `tojson`")
        _check_chars(chars + items * indent, limits, "filter `tojson`")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "join": _f_join, "replace": _f_replace, "center": _f_center, "indent": _f_indent, "wordwrap": _f_wordwrap,
    "format": _f_format, "batch": _f_batch, "slice": _f_slice, "sum": _f_sum, "list": _f_list, "tojson": _f_tojson,
}
"""Filters that can build much more than they are given, with a check run before them."""


def _checked_filter(func: Callable[..., Any], check: Callable[..., None], limits: TemplateLimits,
                    name: str) -> Callable[..., Any]:
    pass_arg = jinja2.utils._PassArg.from_obj(func)
    if pass_arg is None:
        def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
            check(limits, value, *args, **kwargs)
            return func(value, *args, **kwargs)
    else:
        def checked(first: Any, value: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            check(limits, value, *args, **kwargs)
            return func(first, value, *args, **kwargs)
        checked.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    checked.__name__ = f"checked_{name}"
    return checked


def _bounded_range(limits: TemplateLimits) -> Callable[..., range]:
    def range_(*args: int) -> range:
        rng = range(*args)
        if len(rng) > limits.max_range:
            raise TemplateLimitError("max_range", "`range()`", f"would yield {len(rng):,} numbers, more than "
                                     f"{limits.max_range:,}")
        return rng
    return range_


def _bounded_lipsum(limits: TemplateLimits, lipsum: Callable[..., str]) -> Callable[..., str]:
    def lipsum_(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002 - Jinja's names
        _check_chars(_as_int(n) * _as_int(max) * 16, limits, "`lipsum()`")
        return lipsum(n, html, min, max)
    return lipsum_


# -- public --------------------------------------------------------------------------------------------------

def parse_date(date: str | None) -> datetime | None:
    """Parse the pinned date ("26 Jul 2024" or ISO "2024-07-26"); None keeps the real clock."""
    if date is None:
        return None
    for fmt in ("%d %b %Y", "%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(date, fmt)
        except ValueError:
            continue
    raise ValueError(f"date {date!r} is not understood; write it like '26 Jul 2024' or '2024-07-26'")


def compile_template(source: str, date: str | None = None, limits: TemplateLimits | None = None) -> jinja2.Template:
    """Compile a chat template in the bounded sandbox with transformers' globals and a pinned `strftime_now`.

    Raises:
        jinja2.TemplateSyntaxError: the template does not parse (callers turn it into `TemplateError`).
    """
    limits = limits or DEFAULT_LIMITS
    pinned = parse_date(date)

    def strftime_now(fmt: str) -> str:
        return (pinned or datetime.now()).strftime(fmt)

    env = BoundedEnvironment(limits, trim_blocks=True, lstrip_blocks=True,
                             extensions=[_GenerationBlocks, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _checked_filter(_tojson, _f_tojson, limits, "tojson")
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = type("namespace", (_TemplateNamespace,), {"limits": limits})
    env.globals["range"] = _bounded_range(limits)
    env.globals["lipsum"] = _bounded_lipsum(limits, env.globals["lipsum"])
    return env.from_string(source)


def _template_line(template: jinja2.Template, tb: Any) -> int | None:
    """The template line of the innermost frame of generated template code in a traceback."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


def render(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """Render under the limits the template was compiled with: the text, or `TemplateLimitError` naming the limit.

    `variables` must be a fresh dict per call: it becomes the render's context (no copy) and carries the
    render's clock and call depth.
    """
    limits = getattr(template.environment, "limits", DEFAULT_LIMITS)
    max_out = limits.max_output_chars
    variables[_STATE] = _RenderState(limits)
    out: list[str] = []
    total = 0
    try:
        # `variables` already holds the template globals (see ChatEncoder): a shared context skips one dict copy
        for chunk in template.root_render_func(template.new_context(variables, shared=True)):
            total += len(chunk)
            if total > max_out:
                raise TemplateLimitError("max_output_chars", "the rendered text", f"grew past {max_out:,} characters")
            out.append(chunk)
    except TemplateLimitError as err:
        raise err.at_line(_template_line(template, sys.exc_info()[2])) from None
    except RecursionError:
        raise TemplateLimitError("max_call_depth", "recursion", "hit Python's recursion limit",
                                 _template_line(template, sys.exc_info()[2])) from None
    return "".join(out)
