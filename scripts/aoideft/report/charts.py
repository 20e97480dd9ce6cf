"""Inline SVG charts of the report: line charts and histograms, with linear, log or logit axes.

No matplotlib and no scripts: each chart is one ``<svg>`` element built here, every text placed in
it escaped, so data strings show as text. Real inspection data need more than linear axes: scores
crowd near 0 (a KPI threshold of 0.008 and the whole false-alarm tail fall into the first of 20
linear bins) and FAR spans decades (0.1% to 60%), so ``positive_scale`` switches to a log axis when
values span more than ``LOG_RATIO`` and score axes are logit (``LogitScale``: 0.001, 0.01, 0.5,
0.99 ... evenly spread).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from markupsafe import Markup, escape

PALETTE = {"pass": "#2f6fb0", "defect": "#c8433a", "deployable": "#8e5cc2", "kpi": "#2f6fb0",
           "held_out": "#1f2933", "validation": "#d08a1e", "target": "#1e8a4c", "threshold": "#333333",
           "grid": "#e3e6ea", "axis": "#5b6570"}
SERIES_COLORS = ("#2f6fb0", "#c8433a", "#8e5cc2", "#d08a1e", "#1e8a4c", "#5b6570", "#b0417a", "#3a8f8f")
MAX_CURVE_POINTS = 400  # a line chart thins longer series (first and last point kept)
LOG_RATIO = 20.0  # positive values spanning more than this get a log axis
SCORE_EPS = 1e-6  # logit axes stay inside (eps, 1 - eps)
LOGIT_TICKS = (1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999)
_CHAR_PX = 6.2  # legend text width per character at 11.5 px


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def fmt_tick(value: float) -> str:
    return f"{value:.4g}"


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


# ---- scales: data value -> 0..1 along an axis, and the axis's ticks -----------------------------
class Scale(Protocol):
    kind: str
    lo: float
    hi: float

    def fraction(self, value: float) -> float: ...

    def ticks(self) -> list[tuple[float, str]]: ...


@dataclass(frozen=True)
class LinearScale:
    lo: float
    hi: float
    kind: str = "linear"

    def fraction(self, value: float) -> float:
        return (value - self.lo) / ((self.hi - self.lo) or 1.0)

    def ticks(self) -> list[tuple[float, str]]:
        return [(tick, fmt_tick(tick)) for tick in nice_ticks(self.lo, self.hi)]


@dataclass(frozen=True)
class LogScale:
    """Log axis over [lo, hi], lo > 0; values at or below lo sit at lo ("floor": its tick reads <=lo)."""

    lo: float
    hi: float
    floor: bool = False
    kind: str = "log"

    def __post_init__(self):
        if not 0 < self.lo < self.hi:
            raise ValueError(f"a log scale needs 0 < lo < hi, got {self.lo}, {self.hi}")

    def fraction(self, value: float) -> float:
        low, high = math.log10(self.lo), math.log10(self.hi)
        return (math.log10(max(value, self.lo)) - low) / (high - low)

    def ticks(self) -> list[tuple[float, str]]:
        first, last = math.ceil(math.log10(self.lo) - 1e-9), math.floor(math.log10(self.hi) + 1e-9)
        multiples = (1,) if last - first >= 2 else (1, 2, 5)
        values = sorted({m * 10.0 ** k for k in range(first - 1, last + 1) for m in multiples
                         if self.lo * (1 - 1e-9) <= m * 10.0 ** k <= self.hi * (1 + 1e-9)})
        ticks = [(value, fmt_tick(value)) for value in values]
        if self.floor:
            ticks = [(self.lo, "\u2264" + fmt_tick(self.lo))] + [t for t in ticks if t[0] > self.lo * (1 + 1e-9)]
        return ticks


def logit(value: float) -> float:
    """log(p / (1 - p)), p clipped into (SCORE_EPS, 1 - SCORE_EPS)."""
    value = min(max(value, SCORE_EPS), 1 - SCORE_EPS)
    return math.log(value / (1 - value))


@dataclass(frozen=True)
class LogitScale:
    """Score axis in log-odds: 0.001, 0.01, 0.1, 0.5, 0.9, 0.99 ... equally spaced."""

    lo: float
    hi: float
    kind: str = "logit"

    def fraction(self, value: float) -> float:
        low, high = logit(self.lo), logit(self.hi)
        return (logit(min(max(value, self.lo), self.hi)) - low) / ((high - low) or 1.0)

    def ticks(self) -> list[tuple[float, str]]:
        values = [tick for tick in LOGIT_TICKS if self.lo <= tick <= self.hi]
        if len(values) < 3:  # a narrow range: round values inside it
            values = [tick for tick in nice_ticks(self.lo, self.hi) if self.lo <= tick <= self.hi]
        return [(value, score_tick(value)) for value in values]


def score_tick(value: float) -> str:
    """0.001, 0.5, 0.999, 0.99999: as many decimals as the nines need (4 significant digits would say 1)."""
    if value < 0.9:
        return fmt_tick(value)
    return f"{value:.{max(1, round(-math.log10(1 - value)))}f}" if value < 1 else "1"


def positive_scale(values: Iterable[Any], *, upper: float | None = None, lower: float | None = None,
                   ratio: float = LOG_RATIO) -> LinearScale | LogScale:
    """An axis for values >= 0 (FAR, shares): linear from 0, or log when the positive values span more
    than ``ratio`` (from the decade at or below the smallest, never below ``lower``; zeros sit at the
    floor). ``upper`` caps the axis (100 for a percentage)."""
    finite = _finite(values)
    positive = [v for v in finite if v > 0]
    top = max(finite, default=0.0)
    if not positive or top / min(positive) < ratio:
        high = top * 1.1 if top > 0 else 1.0
        return LinearScale(0.0, min(high, upper * 1.02) if upper else high)
    low = 10.0 ** math.floor(math.log10(min(positive)) + 1e-9)
    low = max(low, lower) if lower else low
    high = 10.0 ** math.ceil(math.log10(top) - 1e-9)
    high = min(high, upper) if upper else high
    if high <= low:
        high = low * 10
    return LogScale(low, high, floor=any(v <= low * (1 + 1e-9) for v in finite))


def score_scale(low: float, high: float) -> LogitScale:
    """A logit axis over the scores [low, high] (clipped into (0, 1))."""
    low, high = max(low, SCORE_EPS), min(high, 1 - SCORE_EPS)
    if not high > low:
        low, high = max(low - 0.01, SCORE_EPS), min(high + 0.01, 1 - SCORE_EPS)
    return LogitScale(low, high)


# ---- frame, legend, text ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    x: Any  # Scale
    y: Any  # Scale
    bottom: int
    left: int = 62
    right: int = 18
    top: int = 34

    # Values outside an axis's range are drawn at its edge, so no line leaves the plot area.
    def px(self, value: float) -> float:
        return self.left + _clamp(self.x.fraction(value)) * (self.width - self.left - self.right)

    def py(self, value: float) -> float:
        return self.height - self.bottom - _clamp(self.y.fraction(value)) * (self.height - self.top - self.bottom)


def _clamp(fraction: float) -> float:
    return min(max(fraction, 0.0), 1.0)


def _legend_rows(entries: Sequence[tuple[str, str, str]], width: int, left: int) -> list[list[tuple[float, tuple]]]:
    """(x, entry) placed left to right, wrapping to a new row when the chart's width is used up."""
    rows: list[list[tuple[float, tuple]]] = [[]]
    x = float(left)
    for entry in entries:
        room = 34 + _CHAR_PX * len(entry[0])
        if rows[-1] and x + room > width:
            rows.append([])
            x = float(left)
        rows[-1].append((x, entry))
        x += room
    return [row for row in rows if row]


def _legend(frame: _Frame, rows: list[list[tuple[float, tuple]]]) -> list[str]:
    parts = []
    for index, row in enumerate(rows):
        y = frame.height - 8 - 16 * (len(rows) - 1 - index)
        for x, (text, colour, style) in row:
            if style == "box":
                parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="18" height="10" fill="{colour}" fill-opacity="0.55" '
                             f'stroke="{colour}"/>')
            else:
                dash = {"dashed": ' stroke-dasharray="5 3"', "dotted": ' stroke-dasharray="2 3"'}.get(style, "")
                parts.append(f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x + 18:.1f}" y2="{y - 4}" stroke="{colour}" '
                             f'stroke-width="3"{dash}/>')
            parts.append(f'<text x="{x + 23:.1f}" y="{y}" class="legend">{escape(text)}</text>')
    return parts


def _frame(width: int, height: int, x: Any, y: Any, legend: Sequence[tuple[str, str, str]]) -> tuple[_Frame, list]:
    rows = _legend_rows(legend, width, 62)
    bottom = 48 + 16 * len(rows)
    return _Frame(width, height + 16 * max(0, len(rows) - 1), x, y, bottom), rows


def _svg_open(frame: _Frame, title: str) -> list[str]:
    # No xmlns: inline <svg> in HTML5 gets the SVG namespace from the parser, and the page keeps no URL.
    return [f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" width="{frame.width}" '
            f'height="{frame.height}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<text x="{frame.left}" y="18" class="chart-title">{escape(title)}</text>']


def _axes(frame: _Frame, x_label: str, y_label: str, x_ticks: Iterable[tuple[float, str]]) -> list[str]:
    parts = []
    x0, x1 = frame.left, frame.width - frame.right
    y0, y1 = frame.height - frame.bottom, frame.top
    for value, text in frame.y.ticks():
        y = frame.py(value)
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{PALETTE["grid"]}"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(text)}</text>')
    for value, text in x_ticks:
        x = frame.px(value)
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="{PALETTE["axis"]}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle" class="tick">{escape(text)}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="{PALETTE["axis"]}"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="{PALETTE["axis"]}"/>')
    scale_note = {"log": " (log)", "logit": " (logit)"}
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 34}" text-anchor="middle" class="axis-label">'
                 f"{escape(x_label + scale_note.get(frame.x.kind, ''))}</text>")
    parts.append(f'<text transform="translate(14 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'class="axis-label">{escape(y_label + scale_note.get(frame.y.kind, ""))}</text>')
    return parts


def _vline(frame: _Frame, value: float, colour: str, label: str, row: int) -> list[str]:
    x = frame.px(value)
    anchor, dx = ("end", -4) if frame.x.fraction(value) > 0.6 else ("start", 4)
    return [f'<line x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{frame.height - frame.bottom}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="5 3"/>',
            f'<text x="{x + dx:.1f}" y="{frame.top + 12 + 13 * row}" text-anchor="{anchor}" class="legend" '
            f'fill="{colour}">{escape(label)}</text>']


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---- line chart ---------------------------------------------------------------------------------------
def _segments(xs: Sequence[Any], ys: Sequence[Any]) -> list[list[tuple[float, float, int]]]:
    """Runs of consecutive finite points (x, y, index); a None / NaN y ends a run (a gap in the line)."""
    segments: list[list[tuple[float, float, int]]] = [[]]
    for index, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y is None or not math.isfinite(float(y)):
            segments.append([])
        else:
            segments[-1].append((float(x), float(y), index))
    return [segment for segment in segments if segment]


def _thin(points: list, limit: int = MAX_CURVE_POINTS) -> list:
    if len(points) <= limit:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [points[i] for i in keep]


def svg_line_chart(series: Sequence[Mapping[str, Any]], *, title: str, x_label: str, y_label: str,
                   x_categories: Sequence[str] | None = None, x_scale: Any = None, y_scale: Any = None,
                   hlines: Sequence[Mapping[str, Any]] = (), markers: Sequence[Mapping[str, Any]] = (),
                   width: int = 640, height: int = 330) -> Markup:
    """Line chart as inline SVG markup (text escaped).

    ``series``: ``{"label", "y", "x" (omit with x_categories), "color"?, "style"? (solid | dashed |
    dotted), "low"/"high"? (error bars per point), "point_labels"? (text next to each point),
    "hollow"? (per point: drawn as an open circle)}``; a None y leaves a gap. ``x_categories``:
    category names, points then sit at 0..n-1. ``hlines``: ``{"y", "label", "color"?}`` reference
    lines. ``markers``: ``{"x", "y", "label", "color"?}`` labelled diamonds (operating points).
    Scales default to linear over the data.
    """
    lines = []
    for index, item in enumerate(series):
        xs = list(range(len(item["y"]))) if x_categories is not None else list(item["x"])
        colour = item.get("color", SERIES_COLORS[index % len(SERIES_COLORS)])
        lines.append((item, [_thin(segment) for segment in _segments(xs, item["y"])], colour))
    points = [point for _, segments, _ in lines for segment in segments for point in segment]
    if x_categories is not None:
        x_scale = LinearScale(-0.5, len(x_categories) - 0.5)
    elif x_scale is None:
        xs = [x for x, _, _ in points] or [0.0, 1.0]
        x_scale = LinearScale(min(xs), max(xs))
    if y_scale is None:
        ys = [y for _, y, _ in points] + [float(h["y"]) for h in hlines] + [float(v) for item, _, _ in lines
                                                                          for v in _finite(item.get("high") or [])]
        top = max(ys, default=1.0)
        y_scale = LinearScale(min([0.0, *ys]), top * 1.1 if top > 0 else 1.0)
    legend = [(str(item.get("label", "")), colour, item.get("style", "solid")) for item, _, colour in lines]
    frame, legend_rows = _frame(width, height, x_scale, y_scale, legend)
    if x_categories is not None:
        # Shorten names to the room each category has (about 6.5 px per character at 11 px).
        room = (width - frame.left - frame.right) / max(len(x_categories), 1)
        x_ticks = [(float(i), _shorten(name, max(4, int(room / 6.5)))) for i, name in enumerate(x_categories)]
    else:
        x_ticks = x_scale.ticks()
    parts = _svg_open(frame, title) + _axes(frame, x_label, y_label, x_ticks)
    for line in hlines:
        y = frame.py(float(line["y"]))
        colour = line.get("color", PALETTE["target"])
        parts.append(f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.width - frame.right}" y2="{y:.1f}" '
                     f'stroke="{colour}" stroke-width="2" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{frame.width - frame.right - 4}" y="{y - 5:.1f}" text-anchor="end" class="legend" '
                     f'fill="{colour}">{escape(line.get("label", ""))}</text>')
    for item, segments, colour in lines:
        dash = {"dashed": ' stroke-dasharray="5 3"', "dotted": ' stroke-dasharray="2 3"'}.get(item.get("style", ""), "")
        for segment in segments:
            path = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y, _ in segment)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"{dash}/>')
        drawn = [point for segment in segments for point in segment]
        if len(drawn) > 40:
            continue
        low, high = item.get("low"), item.get("high")
        labels, hollow = item.get("point_labels"), item.get("hollow")
        for x, y, index in drawn:
            cx, cy = frame.px(x), frame.py(y)
            bar = _finite([low[index], high[index]]) if low is not None and high is not None else []
            tip = f"{item.get('label', '')}: {fmt_tick(y)}"
            if len(bar) == 2:
                y_low, y_high = frame.py(bar[0]), frame.py(bar[1])
                parts.append(f'<path d="M{cx - 4:.1f},{y_low:.1f}H{cx + 4:.1f}M{cx:.1f},{y_low:.1f}V{y_high:.1f}'
                             f'M{cx - 4:.1f},{y_high:.1f}H{cx + 4:.1f}" stroke="{colour}" stroke-width="1.4" fill="none"/>')
                tip += f" [{fmt_tick(bar[0])}, {fmt_tick(bar[1])}]"
            fill = "#fff" if hollow and hollow[index] else colour
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.6" fill="{fill}" stroke="{colour}" '
                         f'stroke-width="1.6"><title>{escape(tip)}</title></circle>')
            if labels and labels[index]:
                parts.append(f'<text x="{cx + 6:.1f}" y="{cy - 6:.1f}" class="point-label" fill="{colour}">'
                             f"{escape(labels[index])}</text>")
    for marker in markers:
        cx, cy = frame.px(float(marker["x"])), frame.py(float(marker["y"]))
        colour = marker.get("color", PALETTE["threshold"])
        parts.append(f'<path d="M{cx:.1f},{cy - 6:.1f}L{cx + 6:.1f},{cy:.1f}L{cx:.1f},{cy + 6:.1f}L{cx - 6:.1f},{cy:.1f}Z" '
                     f'fill="{colour}" stroke="#fff"><title>{escape(marker.get("label", ""))}</title></path>')
        anchor, dx = ("end", -9) if frame.x.fraction(float(marker["x"])) > 0.6 else ("start", 9)
        parts.append(f'<text x="{cx + dx:.1f}" y="{cy + 14:.1f}" text-anchor="{anchor}" class="point-label" '
                     f'fill="{colour}">{escape(marker.get("label", ""))}</text>')
    parts += _legend(frame, legend_rows)
    parts.append("</svg>")
    return Markup("\n".join(parts))


# ---- histogram -------------------------------------------------------------------------------------------
def svg_histogram(edges: Sequence[float], counts: Mapping[str, Sequence[int]], *, title: str,
                  x_label: str = "score (defect probability)", x_scale: Any = None, y_log: bool | None = None,
                  thresholds: Sequence[Mapping[str, Any]] = (), normalize: bool = True,
                  colors: Mapping[str, str] | None = None, width: int = 640, height: int = 330) -> Markup:
    """Overlaid per-class histogram as inline SVG. ``normalize`` shows % of each class per bin, so a rare
    defect class stays visible next to ~90% PASS rows. ``y_log`` (None: when the non-empty bins span
    more than ``LOG_RATIO``) makes a thin tail visible. ``thresholds``: ``{"value", "label", "color"?}``
    dashed vertical lines. ``x_scale`` defaults to linear over the edges."""
    edges = [float(e) for e in edges]
    if len(edges) < 2:
        raise ValueError("a histogram needs at least two bin edges")
    colors = {"PASS": PALETTE["pass"], "defect": PALETTE["defect"], **(colors or {})}
    heights: dict[str, list[float]] = {}
    for name, values in counts.items():
        values = [float(v) for v in values]
        if len(values) != len(edges) - 1:
            raise ValueError(f"{name}: {len(values)} counts for {len(edges) - 1} bins")
        total = sum(values)
        heights[name] = [100.0 * v / total if total else 0.0 for v in values] if normalize else values
    bars = [v for h in heights.values() for v in h]
    positive = [v for v in bars if v > 0]
    if y_log is None:
        y_log = bool(positive) and max(positive) / min(positive) > LOG_RATIO
    top = max(positive, default=1.0)
    y_scale: Any = LinearScale(0.0, top * 1.1)
    if y_log and positive:  # the axis starts below the smallest bar, so that bar stays visible
        low = 10.0 ** math.floor(math.log10(min(positive) / 2))
        high = 10.0 ** math.ceil(math.log10(top) - 1e-9)
        y_scale = LogScale(low, max(min(high, 100.0) if normalize else high, low * 10))
    x_scale = x_scale or LinearScale(edges[0], edges[-1])
    colour_of = {name: colors.get(name, SERIES_COLORS[i % len(SERIES_COLORS)]) for i, name in enumerate(heights)}
    legend = [(f"{name} ({int(sum(counts[name])):,} rows)", colour_of[name], "box") for name in heights]
    frame, legend_rows = _frame(width, height, x_scale, y_scale, legend)
    parts = _svg_open(frame, title) + _axes(frame, x_label, "% of class rows" if normalize else "rows", x_scale.ticks())
    base = frame.height - frame.bottom
    for name, values in heights.items():
        colour = colour_of[name]
        for left, right, value in zip(edges[:-1], edges[1:], values):
            if value <= 0:
                continue
            x, y = frame.px(left), frame.py(value)
            parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(frame.px(right) - x - 1, 0.8):.1f}" '
                         f'height="{max(base - y, 0.8):.1f}" fill="{colour}" fill-opacity="0.55" stroke="{colour}">'
                         f"<title>{escape(name)} {escape(fmt_tick(left))}-{escape(fmt_tick(right))}: "
                         f"{escape(fmt_tick(value))}{'%' if normalize else ''}</title></rect>")
    for row, line in enumerate(thresholds):
        value = float(line["value"])
        if math.isfinite(value):
            parts += _vline(frame, min(max(value, x_scale.lo), x_scale.hi), line.get("color", PALETTE["threshold"]),
                            f"{line.get('label', 'threshold')} {fmt_tick(value)}", row)
    parts += _legend(frame, legend_rows)
    parts.append("</svg>")
    return Markup("\n".join(parts))
