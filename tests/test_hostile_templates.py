"""Hostile chat templates end quickly with a named limit, under a memory ceiling each test sets on its own process.

Every bomb runs in a fresh Python process with `RLIMIT_AS` at 2 GiB and a 60 s timeout: if a bound were
missing the case would fail with MemoryError (or time out) instead of taking the machine down. Each case
must end with the named `TemplateLimits` field well inside that, with the default limits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import CHATML_TEMPLATE, PEAK_MIB, TOKENIZERS, requires_shared

CEILING = 2 * 2**30
ROOT = Path(__file__).resolve().parents[1]

BOMBS = {  # name -> (template code run before a ChatML template, the limit it must hit)
    "string_mul": ("{% set s = 'a' * 1000000000 %}", "max_string_chars"),
    "string_mul_reversed": ("{% set s = 1000000000 * 'ab' %}", "max_string_chars"),
    "string_doubling_loop": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}"
                             "{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "max_string_chars"),
    "plus_doubling_loop": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}"
                           "{% set ns.s = ns.s + ns.s %}{% endfor %}", "max_string_chars"),
    "doubling_sets": ("{% set s = 'ab' %}" + "{% set s = s + s %}" * 40, "max_string_chars"),
    "set_block_doubling": ("{% set s = 'ab' %}" + "{% set s %}{{ s }}{{ s }}{% endset %}" * 40, "max_output_chars"),
    "recursive_macro_doubling": ("{% macro f(s, n) %}{% if n > 0 %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}"
                                 "{% endif %}{% endmacro %}{% set x = f('a', 40) %}", "max_string_chars"),
    "recursive_loop_doubling": ("{% for x in ['ab'] recursive %}{{ loop([x ~ x]) }}{% endfor %}",
                                "max_string_chars"),
    "list_mul": ("{% set l = [0] * 1000000000 %}", "max_items"),
    "nested_list_mul": ("{% set l = [[0] * 100000] * 100000 %}", "max_items"),
    "list_doubling_loop": ("{% set ns = namespace(l=[0]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}"
                           "{% endfor %}", "max_items"),
    "shared_list_tower": ("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}"
                          "{% endfor %}{{ ns.l }}", "max_items"),
    "namespace_tower": ("{% set ns = namespace(n=1) %}{% for i in range(60) %}"
                        "{% set ns.n = namespace(a=ns.n, b=ns.n) %}{% endfor %}{{ ns.n }}", "max_items"),
    "range_bomb": ("{% for i in range(1000000000) %}{% endfor %}", "max_range"),
    "list_of_range": ("{% set l = range(100000)|list * 100 %}", "max_items"),
    "nested_loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                     "max_render_seconds"),
    "huge_join": ("{% set s = range(100000)|join('x' * 100000) %}", "max_string_chars"),
    "huge_str_join_method": ("{% set s = ('x' * 100000).join(['a'] * 100000) %}", "max_string_chars"),
    "replace_bomb": ("{% set s = ('a' * 100000)|replace('a', 'b' * 100000) %}", "max_string_chars"),
    "center_padding": ("{% set s = 'a'.center(1000000000) %}", "max_string_chars"),
    "filter_padding": ("{% set s = 'a\nb'|indent(1000000000) %}", "max_string_chars"),
    "percent_width": ("{% set s = '%1000000000d' % 1 %}", "max_string_chars"),
    "format_width": ("{% set s = '{:>1000000000}'.format('a') %}", "max_string_chars"),
    "batch_fill": ("{% set b = [1]|batch(1000000000, 0)|list %}", "max_items"),
    "int_power": ("{% set n = 10 ** 100000000 %}", "max_int_bits"),
    "int_squaring_loop": ("{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
                          "{% endfor %}", "max_int_bits"),
    "deep_recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{% set x = f(0) %}", "max_call_depth"),
    "exponential_macro": ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% else %}x{% endif %}"
                          "{% endmacro %}{% set x = f(60) %}", "max_render_seconds"),
    "lipsum": ("{% set s = lipsum(1000000000) %}", "max_string_chars"),
    "fromkeys_tower": ("{{ dict.fromkeys(range(100000), 'x' * 60000000) }}", "max_string_chars"),
    "batch_fill_tower": ("{{ [1]|batch(1000000, 'x' * 60000000)|list }}", "max_string_chars"),
    "nested_format_width": ("{% set s = '{0:{1}}'.format('a', 1000000000) %}", "max_string_chars"),
    "whitespace_split": ("{% set w = ('a ' * 30000000).split() %}", "max_items"),
    "slow_flat_loop": ("{% set s = 'ab' * 30000000 %}{% for i in range(100000) %}{% if 'zz' in s %}{% endif %}"
                       "{% endfor %}", "max_render_seconds"),
}

RUN_BOMB = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({ceiling}, {ceiling}))
    {peak}
    from sftdata.chat.jinja_env import TemplateLimitError, compile_template, render
    from sftdata.chat.limits import TemplateLimits
    start = time.perf_counter()
    limits = TemplateLimits(**json.loads(sys.argv[2]))
    template = compile_template(sys.argv[1], limits=limits)
    messages = [{{"role": "user", "content": "hi"}}, {{"role": "assistant", "content": "hello"}}]
    try:
        out = render(template, {{**template.globals, "messages": messages, "add_generation_prompt": False}})
        result = {{"rendered": len(out)}}
    except TemplateLimitError as err:
        result = {{"limit": err.limit, "message": str(err)}}
    result["seconds"] = time.perf_counter() - start
    result["peak_mib"] = peak_mib()
    print(json.dumps(result))
""").format(ceiling=CEILING, peak=PEAK_MIB)


def run_capped(code: str, *args: str, timeout: float = 60) -> dict:
    """Run `code` in a fresh interpreter under the memory ceiling; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if BOMBS[n][1] == "max_render_seconds"
                                  else n for n in sorted(BOMBS)])  # the clock cases take the default 10 s
def test_each_bomb_stops_at_its_named_limit_quickly_and_small(name):
    bomb, limit = BOMBS[name]
    started = time.perf_counter()
    result = run_capped(RUN_BOMB, bomb + CHATML_TEMPLATE, "{}")
    assert result.get("limit") == limit, result
    assert f"(limit `{limit}`)" in result["message"] and "template line 1" in result["message"]
    budget = 15 if limit == "max_render_seconds" else 5  # the clock limit is 10 s by default
    assert result["seconds"] < budget and time.perf_counter() - started < 30
    assert result["peak_mib"] < 1024, result


def test_limits_are_configurable_both_ways():
    small = run_capped(RUN_BOMB, "{% set s = 'a' * 1000 %}" + CHATML_TEMPLATE, json.dumps({"max_string_chars": 999}))
    assert small["limit"] == "max_string_chars" and "1,000 characters, more than 999" in small["message"]
    fine = run_capped(RUN_BOMB, "{% set s = 'a' * 1000 %}" + CHATML_TEMPLATE, json.dumps({"max_string_chars": 1000}))
    assert fine["rendered"] > 0
    quick = run_capped(RUN_BOMB, BOMBS["nested_loops"][0] + CHATML_TEMPLATE, json.dumps({"max_render_seconds": 0.2}))
    assert quick["limit"] == "max_render_seconds" and quick["seconds"] < 3
    # past Python's own recursion limit, the depth limit is still what is reported
    deep = run_capped(RUN_BOMB, BOMBS["deep_recursion"][0] + CHATML_TEMPLATE, json.dumps({"max_call_depth": 100000}))
    assert deep["limit"] == "max_call_depth" and "recursion limit" in deep["message"]


def test_containers_returned_by_calls_are_weighed_once_each():
    """`.items()` makes fresh tuples on every iteration: the weigher must still end (it once looped forever)."""
    from sftdata.chat.jinja_env import compile_template, render

    template = compile_template("{% set it = tools[0].items() %}{{ it|list }}{% for k, v in tools[0].items() %}"
                                "{{ k }}={{ v }};{% endfor %}{{ dict(a=tools).items()|list|length }}")
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}]
    out = render(template, {**template.globals, "tools": tools})
    assert out.startswith("[('name', 'f'), ('parameters',") and "name=f;" in out and out.endswith("1")


def test_the_construct_and_line_are_named():
    from sftdata.chat.jinja_env import TemplateLimitError, compile_template, render

    template = compile_template("line one\n{% set x = 'ok' %}\n{% set s = 'a' * 1000000000 %}\n")
    with pytest.raises(TemplateLimitError, match=r"`\*` on a string at template line 3 would build 1,000,000,000 "
                                                 r"characters, more than 67,108,864 \(limit `max_string_chars`\)"):
        render(template, dict(template.globals))


def test_ordinary_templates_render_as_the_plain_sandbox_does():
    """The bounds change nothing for a template within them (same text as transformers' environment)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from sftdata.chat.jinja_env import compile_template, render

    source = ("{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
              "{% set ns.s = ns.s ~ m.role[0] %}{{ '%d:' % loop.index }}{{ (m.content * 2)|replace('a', 'A') }}"
              "{{ ['x', 'y']|join('-') }}{{ (m.content ~ '!')|center(9) }}{{ range(3)|list }}{% endfor %}"
              "{% macro r(n) %}{% if n %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(5) }}{{ ns.n }}{{ ns.s }}"
              "{% set b %}{{ 'block' }}{% endset %}{{ b|upper }}{{ 2 ** 10 }}{{ 7 % 3 }}{{ 'a{}b'.format(1) }}")
    messages = [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "xa"}]
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    ours = compile_template(source)
    assert render(ours, {**ours.globals, "messages": messages}) == plain.render(messages=messages)


def test_attribute_syntax_on_messages_resolves_as_jinja_resolves_it():
    """`m.name` on a message dict takes a fast path: a key, unless a dict attribute of that name exists (then the
    attribute, as Jinja resolves it); a missing key is undefined; attributes of other objects are sandboxed."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from sftdata.chat.jinja_env import compile_template, render

    source = ("{% for m in messages %}{{ m.role }}|{{ m.content }}|{{ m.missing is defined }}|{{ m.items is string }}|"
              "{{ m['items'] }}|{{ m.get('role') }}|{{ m.keys()|list|length }}|{{ m.content.upper() }}|"
              "{{ m[1] is defined }}|{{ m.__class__ is defined }}\n{% endfor %}")
    messages = [{"role": "user", "content": "abc", "items": "a key named like a dict method"},
                {"role": "assistant", "content": "x", 1: "int key"}]
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    ours = compile_template(source)
    assert render(ours, {**ours.globals, "messages": messages}) == plain.render(messages=messages)


def test_sandbox_escape_is_refused_and_runs_nothing(tmp_path, test_tokenizer):
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.template import TemplateSource
    from sftdata.errors import TemplateError

    marker = tmp_path / "pwned"
    escapes = [
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        f"{{{{ namespace.__init__.__globals__['os'].system('touch {marker}') }}}}",
        f"{{{{ raise_exception.__globals__['__builtins__']['open']('{marker}', 'w') }}}}",
        "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    ]
    for escape in escapes:
        with pytest.raises(TemplateError, match="sandbox|underscore"):
            ChatEncoder(test_tokenizer, MaskOptions(), TemplateSource(escape + CHATML_TEMPLATE, "escape.jinja"))
    assert not marker.exists()


def test_probe_limit_is_a_template_error_naming_limit_and_construct(test_tokenizer):
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.template import TemplateSource
    from sftdata.errors import TemplateError

    source = TemplateSource("{% set s = 'a' * 1000000000 %}" + CHATML_TEMPLATE, "bomb.jinja")
    with pytest.raises(TemplateError, match=r"hit a limit on a two-message probe conversation: `\*` on a string at "
                                            r"template line 1 .*\(limit `max_string_chars`\)"):
        ChatEncoder(test_tokenizer, MaskOptions(), source)


def test_a_record_that_trips_a_limit_is_a_template_limit_reject(test_tokenizer):
    from sftdata.chat.engine import ChatEncoder
    from sftdata.chat.options import MaskOptions
    from sftdata.chat.template import TemplateSource
    from sftdata.reasons import Reason
    from sftdata.records import parse_conversation
    from sftdata.tokens import Example

    trigger = ("{% if messages[0]['content'] == 'BOMB' %}{% set ns = namespace(s='a') %}{% for i in range(40) %}"
               "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{% endif %}")
    enc = ChatEncoder(test_tokenizer, MaskOptions(), TemplateSource(trigger + CHATML_TEMPLATE, "trigger.jinja"))
    convs = [parse_conversation({"id": i, "messages": [{"role": "user", "content": text},
                                                       {"role": "assistant", "content": "Paris."}]})
             for i, text in (("a", "Capital of France?"), ("b", "BOMB"), ("c", "And of Italy?"))]
    good, bad, after = enc.encode_batch(convs)
    assert isinstance(good, Example) and isinstance(after, Example)
    (problem,) = bad
    assert problem.code is Reason.template_limit
    assert "record 'b'" in problem.message and "(limit `max_string_chars`)" in problem.message
    assert "template_limits.max_string_chars" in problem.message


@requires_shared
def test_prepare_exits_2_naming_the_limit_under_a_memory_ceiling(tmp_path):
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]}) + "\n")
    template = tmp_path / "bomb.jinja"
    template.write_text(BOMBS["string_doubling_loop"][0] + CHATML_TEMPLATE)
    code = textwrap.dedent(f"""
        import resource, subprocess, sys, json, time
        resource.setrlimit(resource.RLIMIT_AS, ({CEILING}, {CEILING}))
        start = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "sftdata", "prepare", {str(data)!r}, "-t",
                            {str(TOKENIZERS / "qwen2.5-instruct")!r}, "--chat-template", {str(template)!r},
                            "-o", {str(tmp_path / "out")!r}, "--workers", "1"], capture_output=True, text=True)
        print(json.dumps({{"rc": p.returncode, "err": p.stderr[-600:], "s": time.perf_counter() - start}}))
    """)
    result = run_capped(code, timeout=120)
    assert result["rc"] == 2, result
    assert "max_string_chars" in result["err"] and "concatenation" in result["err"]
    assert "is it a chat template" not in result["err"]
