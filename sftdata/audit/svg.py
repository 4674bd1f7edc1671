"""Inline SVG bar charts for the HTML report (no JavaScript, no fonts or scripts from the network).

A histogram is a dict `{"edges": [...], "counts": [...]}` (see `stats.histogram`). Each bar carries
a `<title>` so hovering shows its range and count; axes show the first, middle and last edge and the
largest count. Numbers are formatted compactly (1.2k, 3.4M) so the charts stay legible at 360 px.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any


def compact(value: float) -> str:
    """12345 -> 12.3k; 0.25 -> 0.25."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.1f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}"


def bar_chart(hist: dict[str, Any], *, title: str, xlabel: str, color: str = "#4f7cff",
              fmt: Callable[[float], str] = compact, width: int = 380, height: int = 190,
              categorical: bool = False) -> str:
    """One histogram as an inline `<svg>` element (`categorical`: one label under each bar, e.g. 1, 2, 3)."""
    counts, edges = hist.get("counts", []), hist.get("edges", [])
    if not counts:
        return f'<div class="empty-chart">{escape(title)}: no data</div>'
    left, right, top, bottom = 44, 10, 26, 38
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(counts) or 1
    bar_w = plot_w / len(counts)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>']
    for frac in (0.0, 0.5, 1.0) if peak >= 4 else (0.0, 1.0):  # light grid lines with count labels
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                     f'{compact(round(peak * frac))}</text>')
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + i * bar_w
        lo, hi = edges[i], edges[i + 1] if i + 1 < len(edges) else edges[i]
        label = f"{fmt(lo)} – {fmt(hi)}: {count:,}"
        parts.append(f'<rect x="{x + 0.5:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                     f'height="{h:.1f}" fill="{color}" rx="1.5"><title>{escape(label)}</title></rect>')
    base = top + plot_h
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" class="axis"/>')
    if categorical:
        step = max(1, len(counts) // 12)
        for i in range(0, len(counts), step):
            parts.append(f'<text x="{left + (i + 0.5) * bar_w:.1f}" y="{base + 14}" class="tick" '
                         f'text-anchor="middle">{escape(fmt(edges[i]))}</text>')
    else:
        for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
            value = edges[0] + (edges[-1] - edges[0]) * frac
            parts.append(f'<text x="{left + plot_w * frac:.1f}" y="{base + 14}" class="tick" '
                         f'text-anchor="{anchor}">{escape(fmt(value))}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" class="xlabel" text-anchor="middle">'
                 f'{escape(xlabel)}</text></svg>')
    return "".join(parts)


def meter(value: float, bound: float | None = None, width: int = 220) -> str:
    """A horizontal fill meter (packing efficiency), with an optional tick for the lower bound."""
    fill = max(0.0, min(1.0, value)) * width
    tick = ""
    if bound is not None:
        x = max(0.0, min(1.0, bound)) * width
        tick = f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="14" class="bound"><title>bound {bound:.4f}</title></line>'
    return (f'<svg class="meter" viewBox="0 0 {width} 14" preserveAspectRatio="none" height="14">'
            f'<rect width="{width}" height="14" rx="7" class="meter-bg"/>'
            f'<rect width="{fill:.1f}" height="14" rx="7" class="meter-fill"/>{tick}</svg>')
