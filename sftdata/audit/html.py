"""The audit as one self-contained HTML file: open it anywhere, nothing is fetched from the network.

Layout, top to bottom, in the order a reader asks: did it pass (a status banner), how big is it
(totals and packing), what failed and where (located failures), what the template does (probe
findings), what the data looks like (histograms as inline SVG), what was dropped and why (rejects by
reason with examples), and what the model actually trains on (sampled documents, every token
coloured by its label, control tokens boxed, document boundaries visible). Styling is one inline
stylesheet with system fonts; a 20k-document report is ~200 KB.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from sftdata.audit.run import AuditReport
from sftdata.audit.svg import bar_chart, compact, meter

SHOWN = 4
"""Located findings shown per check before the rest fold into a `<details>`."""

CSS = """
:root{--ink:#1d2433;--muted:#667085;--line:#e4e7ec;--bg:#f6f7fb;--card:#fff;--ok:#12b76a;--bad:#f04438;
--warn:#f79009;--sup:#d1fadf;--sup-ink:#05603a;--mask:#f2f4f7;--mask-ink:#98a2b3;--accent:#4f7cff}
*{box-sizing:border-box}body{margin:0;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:linear-gradient(120deg,#1d2433,#2e3a59);color:#fff;padding:28px 40px 24px}
header h1{margin:0;font-size:22px;font-weight:650;letter-spacing:.2px}header .target{opacity:.75;font-family:
ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;margin-top:4px;word-break:break-all}
.status{display:inline-flex;align-items:center;gap:8px;margin-top:14px;padding:6px 14px;border-radius:999px;
font-weight:650;font-size:14px}.status.ok{background:rgba(18,183,106,.18);color:#6ce9a6}
.status.bad{background:rgba(240,68,56,.2);color:#fda29b}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px 24px;margin:18px 0;
box-shadow:0 1px 2px rgba(16,24,40,.04)}h2{font-size:16px;margin:0 0 14px;font-weight:650}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:10px;padding:12px 14px;background:#fcfcfd}
.card .v{font-size:22px;font-weight:650}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.4px}.card .s{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);
vertical-align:top}th{font-size:12px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.3px}
td.num{text-align:right;font-variant-numeric:tabular-nums}code,.mono{font-family:ui-monospace,SFMono-Regular,
Menlo,monospace;font-size:12.5px}.pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;
font-weight:600}.pill.ok{background:#ecfdf3;color:#027a48}.pill.bad{background:#fef3f2;color:#b42318}
.pill.skip{background:#f2f4f7;color:#475467}.pill.warn{background:#fffaeb;color:#b54708}.pill.info{background:#eff4ff;
color:#3538cd}.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px}
.chart .chart-title{font-size:13px;font-weight:600;fill:var(--ink)}.chart .tick{font-size:10px;fill:var(--muted)}
.chart .xlabel{font-size:11px;fill:var(--muted)}.chart .grid{stroke:#eef0f3}.chart .axis{stroke:#cfd4dc}
.meter{width:100%;display:block;margin:4px 0}.meter-bg{fill:#eef0f3}.meter-fill{fill:var(--ok)}
.bound{stroke:var(--ink);stroke-width:2}
.finding{border-left:3px solid var(--bad);padding:8px 12px;margin:8px 0;background:#fffbfa;border-radius:0 8px 8px 0}
.finding.warning{border-color:var(--warn);background:#fffcf5}.finding.info{border-color:var(--accent);background:#f8faff}
.finding .where{font-family:ui-monospace,Menlo,monospace;font-size:12px;color:var(--muted)}
.finding .ef{font-size:12.5px;margin-top:2px}.finding .ef b{color:var(--muted);font-weight:600}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}pre.raw{white-space:pre-wrap;word-break:break-word;
background:#f9fafb;border:1px solid var(--line);border-radius:8px;padding:8px 10px;font-size:12px;margin:6px 0}
.doc{border:1px solid var(--line);border-radius:10px;margin:14px 0;overflow:hidden}
.doc .head{display:flex;flex-wrap:wrap;gap:14px;align-items:baseline;padding:9px 14px;background:#f9fafb;
border-bottom:1px solid var(--line);font-size:12.5px;color:var(--muted)}.doc .head b{color:var(--ink)}
.tokens{padding:12px 14px;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px;line-height:1.9;
white-space:pre-wrap;word-break:break-word;max-height:420px;overflow:auto}
.t{border-radius:3px;padding:1px 0;box-shadow:inset -1px 0 0 rgba(255,255,255,.9)}
.t.s{background:var(--sup);color:var(--sup-ink)}.t.m{background:var(--mask);color:var(--mask-ink)}
.t.c{outline:1px solid currentColor;outline-offset:-1px;padding:1px 3px;margin:0 1px;font-weight:600}
.t.s.c{background:#a6f4c5}.t.x{background:#fee4e2;color:#b42318;text-decoration:underline wavy #f04438}
.doc.failing{border-color:#fda29b}h3{font-size:14px;margin:16px 0 6px;font-weight:600}
.nl{opacity:.55}.legend{display:flex;gap:14px;font-size:12.5px;color:var(--muted);
margin-bottom:6px}.legend span.t{padding:1px 6px}.muted{color:var(--muted)}footer{color:var(--muted);
text-align:center;font-size:12px;padding:10px}
"""


def _e(value: Any) -> str:
    return escape(str(value))


def _cards(report: AuditReport) -> str:
    t = report.stats.get("totals", {})
    rejects = report.rejects.get("total")
    packing = report.about.get("packing") or {}
    bound = packing.get("lower_bound_efficiency")
    cards = [
        ("documents", f"{t.get('documents', 0):,}", f"in {t.get('rows', 0):,} rows"),
        ("tokens", compact(t.get("tokens", 0)), f"capacity {t.get('capacity', 0):,} per row"),
        ("supervised", f"{t.get('supervised_fraction', 0):.1%}",
         f"{compact(t.get('supervised', 0))} tokens in the loss"),
        ("packing efficiency", f"{t.get('packing_efficiency', 0):.2%}",
         meter(t.get("packing_efficiency", 0), bound) + (f"<br>lower bound {bound:.2%}" if bound else "")),
    ]
    if rejects is not None:
        rows_in = (report.about.get("counts") or {}).get("rows_in") or 0
        cards.append(("rejected", f"{rejects:,}", f"of {rows_in:,} records" if rows_in else ""))
    body = "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div><div class="s">{s}</div></div>'
                   for k, v, s in cards)
    return f'<section><h2>Totals</h2><div class="cards">{body}</div></section>'


def _checks(report: AuditReport) -> str:
    rows = []
    for c in report.findings.checks.values():
        if c.skipped:
            pill = '<span class="pill skip">skipped</span>'
            detail = _e(c.skipped)
        elif c.failed:
            pill = f'<span class="pill {"bad" if c.severity == "error" else "warn"}">{c.failed:,} failed</span>'
            detail = ""
        else:
            pill, detail = '<span class="pill ok">passed</span>', ""
        rows.append(f"<tr><td><code>{_e(c.name)}</code></td><td>{_e(c.description)}"
                    f"{'<br><span class=muted>' + detail + '</span>' if detail else ''}</td>"
                    f'<td class="num">{c.checked:,}</td><td>{pill}</td></tr>')
    return ("<section><h2>Checks</h2><table><tr><th>check</th><th>what it proves</th><th>checked</th><th>result</th>"
            f"</tr>{''.join(rows)}</table></section>")


def _finding(f: Any) -> str:
    ef = ""
    if f.expected is not None or f.found is not None:
        ef = (f'<div class="ef"><b>expected</b> <code>{_e(f.expected)}</code> &nbsp; <b>found</b> '
              f"<code>{_e(f.found)}</code></div>")
    where = f'<div class="where">{_e(f.where())}</div>' if f.where() else ""
    return (f'<div class="finding {_e(f.severity)}"><code>{_e(f.check)}</code> {_e(f.message)}{where}{ef}</div>')


def _failures(report: AuditReport) -> str:
    items = [f for f in report.findings.items if f.severity != "info"]
    if not items:
        return ('<section><h2>Failures</h2><p class="muted">None: every check passed on every token.</p></section>')
    blocks = []
    for check in report.findings.checks.values():
        mine = [f for f in items if f.check == check.name]
        if not mine:
            continue
        head, rest = mine[:SHOWN], mine[SHOWN:]
        more = f"<details><summary>{len(rest)} more located</summary>{''.join(map(_finding, rest))}</details>" \
            if rest else ""
        unlisted = check.failed - len(mine)
        tail = f'<p class="muted">…and {unlisted:,} more (counted, not located).</p>' if unlisted > 0 else ""
        kind = "bad" if check.severity == "error" else "warn"
        blocks.append(f'<h3><code>{_e(check.name)}</code> <span class="pill {kind}">{check.failed:,}</span> '
                      f'<span class="muted">{_e(check.description)}</span></h3>{"".join(map(_finding, head))}'
                      f"{more}{tail}")
    return f"<section><h2>Failures, located</h2>{''.join(blocks)}</section>"


def _template(report: AuditReport) -> str:
    if not report.probes:
        return ""
    rows = "".join(f'<tr><td><span class="pill {_e(f.severity)}">{_e(f.check.removeprefix("template:"))}</span></td>'
                   f"<td>{_e(f.message)}</td></tr>" for f in report.probes)
    return f"<section><h2>What the chat template does</h2><table>{rows}</table></section>"


def _charts(report: AuditReport) -> str:
    s = report.stats
    if not s:
        return ""
    charts = [
        bar_chart(s["doc_length"]["hist"], title="Document length", xlabel="tokens per document"),
        bar_chart(s["supervised_fraction"]["hist"], title="Supervised fraction", xlabel="share of a document's "
                  "tokens in the loss", color="#12b76a", fmt=lambda v: f"{v:.0%}"),
        bar_chart(s["docs_per_row"]["hist"], title="Documents per row", xlabel="documents packed in a row",
                  color="#7a5af8", fmt=lambda v: str(int(v)), categorical=True),
        bar_chart(s["row_fill"]["hist"], title="Row fill", xlabel="tokens / capacity", color="#f79009",
                  fmt=lambda v: f"{v:.0%}"),
    ]
    d = s["doc_length"]
    note = (f'<p class="muted">Document length: median {d.get("median")}, 95th percentile {d.get("p95")}, '
            f'longest {d.get("max")} tokens. Mean supervised fraction {s["supervised_fraction"]["mean"]:.1%}.</p>')
    return f'<section><h2>Shape of the data</h2><div class="charts">{"".join(charts)}</div>{note}</section>'


def _rejects(report: AuditReport) -> str:
    r = report.rejects
    if not r:
        return ""
    if not r.get("by_reason"):
        return '<section><h2>Rejects</h2><p class="muted">No record was rejected.</p></section>'
    blocks = []
    for item in r["by_reason"]:
        examples = "".join(
            f'<div class="finding warning"><div class="where">{_e(x["where"])}'
            f'{" · id " + _e(x["id"]) if x.get("id") else ""}{" · " + _e(x["path"]) if x.get("path") else ""}</div>'
            f'{_e(x["message"])}<pre class="raw">{_e(x["raw"])}</pre></div>' for x in item["examples"])
        blocks.append(f'<details><summary><code>{_e(item["code"])}</code> — {item["count"]:,}</summary>{examples}'
                      "</details>")
    return f"<section><h2>Rejects by reason ({r['total']:,} records)</h2>{''.join(blocks)}</section>"


def _token(piece: str, supervised: bool, control: bool, wrong: bool = False) -> str:
    cls = "t " + ("s" if supervised else "m") + (" c" if control else "") + (" x" if wrong else "")
    text = _e(piece).replace("\n", '<span class="nl">↵</span>\n')
    tip = f' title="the audit says: {"not " if supervised else ""}trained"' if wrong else ""
    return f'<span class="{cls}"{tip}>{text}</span>'


def _samples(report: AuditReport) -> str:
    if not report.samples:
        return ""
    docs = []
    for s in report.samples:
        body = "".join(_token(*piece) for piece in s["pieces"])
        first = s.get("first", 0)
        cut = (f' · tokens {first:,}–{first + s["shown"]:,} shown' if s["shown"] < s["tokens"] else "")
        if first:
            body = f'<span class="muted">… {first:,} tokens before …</span>\n' + body
        flag = '<span class="pill bad">fails the audit</span>' if s.get("failing") else ""
        docs.append(f'<div class="doc{" failing" if s.get("failing") else ""}"><div class="head">{flag}'
                    f'<b>{_e(s["doc_id"])}</b><span>{_e(s["shard"])} row '
                    f'{s["row"]}</span><span>{s["tokens"]:,} tokens · {s["supervised"]:,} supervised{cut}</span>'
                    f'</div><div class="tokens">{body}</div></div>')
    legend = ('<div class="legend"><span class="t s">trained</span><span class="t m">not trained (-100)</span>'
              '<span class="t m c">control token</span><span class="t m x">mask differs from the audit</span>'
              '<span>↵ newline</span></div>')
    return f"<section><h2>Sampled documents, token by token</h2>{legend}{''.join(docs)}</section>"


def render_html(report: AuditReport) -> str:
    """The report as one HTML string."""
    status = ('<div class="status ok">✓ passed — every check holds</div>' if report.passed else
              f'<div class="status bad">✗ failed — {report.findings.errors:,} problem(s)</div>')
    about = report.about
    meta = " · ".join(x for x in (f"tokenizer {about.get('tokenizer')}" if about.get("tokenizer") else "",
                                  f"inputs {', '.join(about.get('inputs', []))}" if about.get("inputs") else "",
                                  f"{report.timings.get('total_s', 0):.1f} s") if x)
    kind = "prepared shards" if report.kind == "sftdata" else "tokenized dataset"
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width,initial-scale=1"><title>sftdata audit — {_e(Path(report.target).name)}'
            f"</title><style>{CSS}</style></head><body><header><h1>sftdata audit of {kind}</h1>"
            f'<div class="target">{_e(report.target)}</div><div class="target">{_e(meta)}</div>{status}</header><main>'
            + _cards(report) + _failures(report) + _checks(report) + _template(report) + _charts(report)
            + _rejects(report) + _samples(report)
            + "</main><footer>Generated by sftdata audit · self-contained, no network</footer></body></html>")


def write_html(report: AuditReport, path: str | Path) -> Path:
    """Write the report to `path` (UTF-8) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
