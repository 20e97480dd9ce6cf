"""``DEFT_Loop_Report.html``: one self-contained HTML page rendered from one context dict.

Self-contained means no network at view time: CSS is inline, charts are inline SVG built here (no
matplotlib), images are ``data:`` URIs. The template is rendered with jinja2 autoescaping on, and the
SVG builders escape every text they place, so any string from data (labels, notes, paths) is shown
as text, never interpreted as markup.

The context (``ReportContext`` below) is plain data, built by the workflow from the state file. Every
section except ``header`` and ``rows`` is optional: an absent or empty section renders as a short
"not available" line, so interim reports (mid-loop) render too. The KPI status is computed here from
``header.final_far_pct`` and ``header.kpi_target`` (MET when far_pct <= target, the loop's rule).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence, TypedDict

import jinja2
import numpy as np
from markupsafe import Markup, escape
from PIL import Image

from aoideft import fsutil

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "deft_report.html.j2"
PALETTE = {"pass": "#2f6fb0", "defect": "#c8433a", "deployable": "#8e5cc2", "kpi": "#2f6fb0",
           "target": "#1e8a4c", "threshold": "#333333", "grid": "#e3e6ea", "axis": "#5b6570"}
SERIES_COLORS = ("#2f6fb0", "#c8433a", "#8e5cc2", "#d08a1e", "#1e8a4c", "#5b6570")
SAMPLE_KINDS = ("real", "synthetic", "mined")
MAX_CURVE_POINTS = 400  # a line chart thins longer series (first and last point kept)
_B64_RE = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_PNG_URI_PREFIX = "data:image/png;base64,"


# ---- the context ------------------------------------------------------------------------------
class Header(TypedDict, total=False):
    title: str  # page title, e.g. "DEFT loop report - demo run"
    run_dir: str
    generated_at: str  # ISO time, shown as given
    kpi_target: float  # target FAR@100% recall, percent (e.g. 5.0)
    iterations_run: int
    max_iterations: int
    stop_reason: str  # e.g. "kpi_met", "max_iterations", "hard stop: ..."; "" while running
    final_far_pct: float | None  # FAR of the delivered model; decides MET / NOT MET (None: not evaluated yet)
    final_label: str  # which row that FAR belongs to, e.g. "final_automl" or "iter2"
    in_progress: bool  # interim report: an unmet KPI shows amber "in progress", not red


class PhaseRow(TypedDict, total=False):
    label: str  # "Phase 1 AutoML best", "baseline", "iter1".., "final_automl"
    phase: str  # "Phase 1" | "Phase 2" | "Phase 3"
    far_pct: float | None  # FAR@100% recall, threshold chosen on the KPI set (as TAO)
    deployable_far_pct: float | None  # threshold calibrated on validation, applied to KPI set
    deployable_recall: float | None  # recall that threshold really reaches on the KPI set (0-1)
    val_far_pct: float | None  # FAR@100% recall on validation
    delta_vs_baseline: float | None  # far_pct - baseline far_pct, percentage points
    threshold: float | None
    training_rows: int | None
    synthetic_rows: int | None
    mined_rows: int | None
    synthetic_ratio: float | None  # synthetic rows / training rows (0-1)
    best_ckpt_kind: str | None  # best_val | latest
    note: str


class AugmentationRow(TypedDict, total=False):
    iteration: str
    sdg_generated: int
    mined: int
    total_added: int


class ScoreDistribution(TypedDict, total=False):
    label: str  # whose scores, e.g. "iter2 (best)"
    edges: list[float]  # bins + 1 edges (kpi.score_histogram's "edges")
    pass_counts: list[int]  # or "pass", as in kpi.score_histogram
    defect_counts: list[int]  # or "defect"
    threshold: float | None  # drawn as a vertical line


class Curve(TypedDict, total=False):
    label: str
    far_pct: list[float]  # x
    recall: list[float]  # y, 0-1


class DefectType(TypedDict, total=False):
    label: str
    count: int
    score_min: float | None
    score_median: float | None
    score_max: float | None
    detectable: bool | None  # all rows of the label score above the KPI threshold


class SampleImage(TypedDict, total=False):
    caption: str
    golden_png_b64: str  # base64 PNG (a full "data:image/png;base64," URI is accepted too)
    test_png_b64: str
    kind: Literal["real", "synthetic", "mined"]


class IterationCard(TypedDict, total=False):
    title: str
    facts: list[tuple[str, Any]]  # (key, value) pairs, shown in order
    warnings: list[str]


class FailureModeRow(TypedDict, total=False):
    id: str
    description: str
    size: int  # weak rows in the mode
    share: float  # of its side's weak rows (0-1)
    lift: float | None  # metadata modes: over-representation among weak rows
    p_value: float | None
    labels: str
    sdg_rows: int | None  # what the next iteration's routing gave the mode
    mining_rows: int | None
    examples: list[SampleImage]  # golden_png_b64 / test_png_b64 / caption


class FailureModeTable(TypedDict, total=False):
    iteration: str  # the model whose failures these are
    routed_in: str | None  # the iteration whose routing used them
    routing: str
    summary: str
    modes: list[FailureModeRow]


class RegressionRow(TypedDict, total=False):
    iteration: str
    incumbent: str  # the model it was compared with
    accepted: bool
    p_better: float | None  # share of paired bootstrap resamples where it was better on validation
    candidate_expected_far_pct: float | None
    incumbent_expected_far_pct: float | None
    note: str  # the iteration's stop/continue message


class RegressionGate(TypedDict, total=False):
    enabled: bool  # False: deft.kpi_holdout 0 (TAO's behaviour), every iteration accepted
    confidence: float
    resamples: int
    rows: list[RegressionRow]


class Phase3(TypedDict, total=False):
    ran: bool
    message: str
    improved_over_deft: bool | None  # Phase 3's winner passed the validation gate against the DEFT incumbent


class ReportContext(TypedDict, total=False):
    header: Header  # required
    rows: list[PhaseRow]  # required (may be empty): Phase 1 best, baseline, iter1..N, final_automl
    augmentation: list[AugmentationRow]
    score_distribution: ScoreDistribution | None
    recall_far_curves: list[Curve]
    defect_types: list[DefectType]
    samples: list[SampleImage]
    iteration_cards: list[IterationCard]
    failure_modes: list[FailureModeTable]
    regression_gate: RegressionGate | None
    phase3: Phase3 | None
    recommendations: list[str]


@dataclass(frozen=True)
class KpiStatus:
    """The banner: ``met`` None means not evaluated yet."""

    met: bool | None
    headline: str  # "MET" | "NOT MET" | "IN PROGRESS" | "NOT EVALUATED"
    detail: str  # e.g. "FAR@100% recall 8.20% vs target 5% \u2014 3.2pp from target"
    tone: Literal["good", "bad", "warn"]


def kpi_status(final_far_pct: float | None, kpi_target: float, *, in_progress: bool = False) -> KpiStatus:
    """MET when far_pct <= target (the loop's stop rule); otherwise how many pp it is short."""
    if final_far_pct is None or not math.isfinite(final_far_pct):
        return KpiStatus(None, "NOT EVALUATED", f"no FAR@100% recall yet (target {kpi_target:g}%)", "warn")
    reached = f"FAR@100% recall {final_far_pct:.2f}% vs target {kpi_target:g}%"
    if final_far_pct <= kpi_target:
        return KpiStatus(True, "MET", reached, "good")
    gap = final_far_pct - kpi_target
    gap_text = f"{gap:.1f}pp from target" if gap >= 0.05 else "<0.1pp from target"
    return KpiStatus(False, "IN PROGRESS" if in_progress else "NOT MET", f"{reached} \u2014 {gap_text}",
                     "warn" if in_progress else "bad")


# ---- images ---------------------------------------------------------------------------------------
def png_base64(image: np.ndarray) -> str:
    """Encode an HxW or HxWxC (C = 1, 3, 4) uint8 array as base64 PNG, in memory."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected a uint8 HxW or HxWxC (C in 1, 3, 4) array, got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(image: np.ndarray) -> str:
    return _PNG_URI_PREFIX + png_base64(image)


def _checked_png_uri(value: str, what: str) -> str:
    """A data URI for a base64 PNG; anything else is refused so no foreign reference reaches the page."""
    payload = value[len(_PNG_URI_PREFIX):] if value.startswith(_PNG_URI_PREFIX) else value
    if not payload or not _B64_RE.match(payload):
        raise ValueError(f"{what}: not a base64 PNG")
    try:
        head = base64.b64decode(payload[:24] + "=" * (-len(payload[:24]) % 4), validate=True)
    except binascii.Error as error:
        raise ValueError(f"{what}: not a base64 PNG ({error})") from None
    if not head.startswith(b"\x89PNG"):
        raise ValueError(f"{what}: base64 data is not a PNG")
    return _PNG_URI_PREFIX + payload


# ---- SVG charts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plot:
    """Maps data coordinates into the plot area of a chart."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    left: int = 58
    right: int = 16
    top: int = 34
    bottom: int = 62

    def x(self, value: float) -> float:
        lo, hi = self.x_range
        return self.left + (value - lo) / ((hi - lo) or 1.0) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        lo, hi = self.y_range
        return self.height - self.bottom - (value - lo) / ((hi - lo) or 1.0) * (self.height - self.top - self.bottom)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt_tick(value: float) -> str:
    return f"{value:.4g}"


def _svg_open(plot: _Plot, title: str) -> list[str]:
    # No xmlns: inline <svg> in HTML5 gets the SVG namespace from the parser, and the page keeps no URL.
    return [f'<svg class="chart" viewBox="0 0 {plot.width} {plot.height}" '
            f'width="{plot.width}" height="{plot.height}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<text x="{plot.left}" y="18" class="chart-title">{escape(title)}</text>']


def _axes(plot: _Plot, x_label: str, y_label: str, x_ticks: Iterable[tuple[float, str]],
          y_ticks: Iterable[float]) -> list[str]:
    parts = []
    x0, x1 = plot.left, plot.width - plot.right
    y0, y1 = plot.height - plot.bottom, plot.top
    for tick in y_ticks:
        y = plot.y(tick)
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{PALETTE["grid"]}"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(_fmt_tick(tick))}</text>')
    for value, text in x_ticks:
        x = plot.x(value)
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}" stroke="{PALETTE["axis"]}"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle" class="tick">{escape(text)}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="{PALETTE["axis"]}"/>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="{PALETTE["axis"]}"/>')
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{plot.height - 26}" text-anchor="middle" class="axis-label">'
                 f"{escape(x_label)}</text>")
    parts.append(f'<text transform="translate(14 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'class="axis-label">{escape(y_label)}</text>')
    return parts


def _legend(plot: _Plot, entries: Sequence[tuple[str, str, bool]]) -> list[str]:
    """(text, colour, dashed) entries in one row under the x-axis label."""
    parts, x = [], float(plot.left)
    for text, colour, dashed in entries:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<line x1="{x:.1f}" y1="{plot.height - 8}" x2="{x + 18:.1f}" y2="{plot.height - 8}" '
                     f'stroke="{colour}" stroke-width="3"{dash}/>')
        parts.append(f'<text x="{x + 23:.1f}" y="{plot.height - 4}" class="legend">{escape(text)}</text>')
        x += 34 + 6.2 * len(text)
    return parts


def _segments(xs: Sequence[Any], ys: Sequence[Any]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive finite points; a None / NaN y ends a run, so the chart shows a gap there."""
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if y is None or not math.isfinite(float(y)):
            segments.append([])
        else:
            segments[-1].append((float(x), float(y)))
    return [segment for segment in segments if segment]


def _thin(points: list[tuple[float, float]], limit: int = MAX_CURVE_POINTS) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, limit).round().astype(int))
    return [points[i] for i in keep]


def svg_line_chart(series: Sequence[Mapping[str, Any]], *, title: str, x_label: str, y_label: str,
                   x_categories: Sequence[str] | None = None, hlines: Sequence[Mapping[str, Any]] = (),
                   x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                   width: int = 640, height: int = 330) -> Markup:
    """Line chart as inline SVG markup (text escaped).

    ``series``: ``{"label", "y", "x" (omit with x_categories), "color"?, "dashed"?}``; a None y leaves a
    gap. ``x_categories``: category names, series points then sit at 0..n-1. ``hlines``:
    ``{"y", "label", "color"?}`` horizontal reference lines (e.g. the KPI target).
    """
    lines = []
    for index, item in enumerate(series):
        xs = list(range(len(item["y"]))) if x_categories is not None else list(item["x"])
        lines.append((item, [_thin(segment) for segment in _segments(xs, item["y"])],
                      item.get("color", SERIES_COLORS[index % len(SERIES_COLORS)])))
    all_points = [point for _, segments, _ in lines for segment in segments for point in segment]
    all_x = [x for x, _ in all_points]
    all_y = [y for _, y in all_points] + [float(h["y"]) for h in hlines]
    if x_categories is not None:
        x_range = x_range or (-0.5, len(x_categories) - 0.5)
    x_range = x_range or ((min(all_x), max(all_x)) if all_x else (0.0, 1.0))
    if y_range is None:
        top = max(all_y) if all_y else 1.0
        y_range = (min(0.0, min(all_y)) if all_y else 0.0, top * 1.1 if top > 0 else 1.0)
    plot = _Plot(width, height, x_range, y_range)
    if x_categories is not None:
        # Shorten names to the room each category has (about 6.5 px per character at 11 px).
        room = (width - plot.left - plot.right) / max(len(x_categories), 1)
        x_ticks = [(float(i), _shorten(name, max(4, int(room / 6.5)))) for i, name in enumerate(x_categories)]
    else:
        x_ticks = [(tick, _fmt_tick(tick)) for tick in nice_ticks(*x_range)]
    parts = _svg_open(plot, title) + _axes(plot, x_label, y_label, x_ticks, nice_ticks(*y_range))
    for line in hlines:
        y = plot.y(float(line["y"]))
        colour = line.get("color", PALETTE["target"])
        parts.append(f'<line x1="{plot.left}" y1="{y:.1f}" x2="{plot.width - plot.right}" y2="{y:.1f}" '
                     f'stroke="{colour}" stroke-width="2" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{plot.left + 6}" y="{y - 5:.1f}" class="legend" '
                     f'fill="{colour}">{escape(line.get("label", ""))}</text>')
    for item, segments, colour in lines:
        dash = ' stroke-dasharray="5 3"' if item.get("dashed") else ""
        for segment in segments:
            path = " ".join(f"{plot.x(x):.1f},{plot.y(y):.1f}" for x, y in segment)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"{dash}/>')
        points = [point for segment in segments for point in segment]
        if len(points) <= 40:
            parts.extend(f'<circle cx="{plot.x(x):.1f}" cy="{plot.y(y):.1f}" r="3.2" fill="{colour}">'
                         f"<title>{escape(item.get('label', ''))}: {escape(_fmt_tick(y))}</title></circle>"
                         for x, y in points)
    parts += _legend(plot, [(str(item.get("label", "")), colour, bool(item.get("dashed"))) for item, _, colour in lines])
    parts.append("</svg>")
    return Markup("\n".join(parts))


def svg_histogram(edges: Sequence[float], counts: Mapping[str, Sequence[int]], *, title: str,
                  x_label: str = "score (defect probability)", threshold: float | None = None,
                  threshold_label: str = "threshold", normalize: bool = True,
                  colors: Mapping[str, str] | None = None, width: int = 640, height: int = 330) -> Markup:
    """Overlaid per-class histogram as inline SVG; ``normalize`` shows % of each class per bin, so a
    rare defect class stays visible next to ~90% PASS rows. A dashed vertical line marks ``threshold``."""
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
    top = max((max(h) for h in heights.values() if h), default=1.0) or 1.0
    plot = _Plot(width, height, (edges[0], edges[-1]), (0.0, top * 1.1))
    x_ticks = [(tick, _fmt_tick(tick)) for tick in nice_ticks(edges[0], edges[-1])]
    parts = _svg_open(plot, title) + _axes(plot, x_label, "% of class rows" if normalize else "rows",
                                           x_ticks, nice_ticks(0.0, top * 1.1))
    colour_of = {name: colors.get(name, SERIES_COLORS[i % len(SERIES_COLORS)]) for i, name in enumerate(heights)}
    for name, values in heights.items():
        colour = colour_of[name]
        for left, right, value in zip(edges[:-1], edges[1:], values):
            if value <= 0:
                continue
            x, y = plot.x(left), plot.y(value)
            parts.append(f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(plot.x(right) - x - 1, 0.5):.1f}" '
                         f'height="{plot.y(0) - y:.1f}" fill="{colour}" fill-opacity="0.55" stroke="{colour}">'
                         f"<title>{escape(name)} {escape(_fmt_tick(left))}-{escape(_fmt_tick(right))}: "
                         f"{escape(_fmt_tick(value))}</title></rect>")
    legend = [(f"{name} ({int(sum(counts[name]))} rows)", colour_of[name], False) for name in heights]
    if threshold is not None and math.isfinite(threshold):
        x = plot.x(min(max(threshold, edges[0]), edges[-1]))
        parts.append(f'<line x1="{x:.1f}" y1="{plot.top}" x2="{x:.1f}" y2="{plot.y(0):.1f}" '
                     f'stroke="{PALETTE["threshold"]}" stroke-width="2" stroke-dasharray="5 3"/>')
        legend.append((f"{threshold_label} {threshold:.4g}", PALETTE["threshold"], True))
    parts += _legend(plot, legend)
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


# ---- formatting filters -------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


def fmt_pct(value: Any, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}%" if _is_number(value) else "\u2014"


def fmt_pp(value: Any) -> str:
    return f"{float(value):+.2f}pp" if _is_number(value) else "\u2014"


def fmt_ratio(value: Any) -> str:
    """A 0-1 share as a percentage."""
    return f"{100 * float(value):.1f}%" if _is_number(value) else "\u2014"


def fmt_num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if _is_number(value):
        return f"{float(value):.{digits}g}"
    if value is None or isinstance(value, (float, np.floating)):  # None, NaN, inf
        return "\u2014"
    return str(value)


# ---- rendering ----------------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=fmt_pct, pp=fmt_pp, ratio=fmt_ratio, num=fmt_num)
    return env


def _charts(context: Mapping[str, Any], target: float) -> dict[str, Markup | None]:
    rows = context["rows"]
    trend = None
    if rows:
        trend = svg_line_chart(
            [{"label": "FAR@100% recall (KPI-set threshold)", "y": [r.get("far_pct") for r in rows],
              "color": PALETTE["kpi"]},
             {"label": "deployable FAR (validation threshold)", "y": [r.get("deployable_far_pct") for r in rows],
              "color": PALETTE["deployable"], "dashed": True}],
            title="FAR@100% recall by phase", x_label="phase / iteration", y_label="FAR (%)",
            x_categories=[str(r.get("label", "")) for r in rows],
            hlines=[{"y": target, "label": f"KPI target {target:g}%"}])
    distribution = context.get("score_distribution")
    histogram = None
    if distribution:
        unscored = int(distribution.get("unscored_pass", 0)) + int(distribution.get("unscored_defect", 0))
        histogram = svg_histogram(
            distribution["edges"],
            {"PASS": distribution.get("pass_counts", distribution.get("pass", [])),
             "defect": distribution.get("defect_counts", distribution.get("defect", []))},
            title=(f"Score distribution - {distribution.get('label', '')}".rstrip(" -")
                   + (f" ({unscored} unscored rows not shown)" if unscored else "")),
            threshold=distribution.get("threshold"), threshold_label="KPI threshold")
    curves = context.get("recall_far_curves") or []
    recall_chart = None
    if curves:
        recall_chart = svg_line_chart(
            [{"label": c.get("label", ""), "x": c["far_pct"], "y": c["recall"]} for c in curves],
            title="Recall vs FAR", x_label="FAR (% of PASS rows flagged)", y_label="recall",
            x_range=(0.0, 100.0), y_range=(0.0, 1.05))
    return {"trend": trend, "histogram": histogram, "recall_far": recall_chart}


def normalise_context(context: ReportContext | Mapping[str, Any]) -> dict[str, Any]:
    """Defaults for optional sections, the KPI status, checked image URIs and the SVG charts."""
    ctx: dict[str, Any] = dict(context)
    if "header" not in ctx or "rows" not in ctx:
        raise ValueError("report context needs 'header' and 'rows'")
    header = {"title": "DEFT loop report", "run_dir": "", "generated_at": "", "iterations_run": 0,
              "max_iterations": 0, "stop_reason": "", "final_far_pct": None, "final_label": "",
              "in_progress": False, **ctx["header"]}
    if "kpi_target" not in header:
        raise ValueError("report context header needs 'kpi_target' (FAR percent)")
    target = float(header["kpi_target"])
    rows = [dict(row) for row in ctx["rows"]]
    samples = []
    for index, sample in enumerate(ctx.get("samples") or []):
        what = f"samples[{index}] ({sample.get('caption', '')!r})"
        if sample.get("kind", "real") not in SAMPLE_KINDS:
            raise ValueError(f"{what}: kind must be one of {SAMPLE_KINDS}, got {sample.get('kind')!r}")
        samples.append({"caption": sample.get("caption", ""), "kind": sample.get("kind", "real"),
                        "golden_uri": _checked_png_uri(sample["golden_png_b64"], what + " golden"),
                        "test_uri": _checked_png_uri(sample["test_png_b64"], what + " test")})
    failure_modes = []
    for table in ctx.get("failure_modes") or []:
        modes = []
        for mode in table.get("modes", []):
            what = f"failure mode {mode.get('id', '')!r} of {table.get('iteration', '')}"
            examples = [{"caption": example.get("caption", ""),
                         "golden_uri": _checked_png_uri(example["golden_png_b64"], what + " golden"),
                         "test_uri": _checked_png_uri(example["test_png_b64"], what + " test")}
                        for example in mode.get("examples", [])]
            modes.append({**mode, "examples": examples})
        failure_modes.append({"routed_in": None, "routing": "", "summary": "", **table, "modes": modes})
    out = {
        "header": header,
        "status": kpi_status(header["final_far_pct"], target, in_progress=bool(header["in_progress"])),
        "rows": rows,
        "augmentation": list(ctx.get("augmentation") or []),
        "score_distribution": ctx.get("score_distribution"),
        "defect_types": list(ctx.get("defect_types") or []),
        "samples": samples,
        "iteration_cards": [{"title": "", "facts": [], "warnings": [], **card}
                            for card in ctx.get("iteration_cards") or []],
        "phase3": ({"ran": False, "message": "", "improved_over_deft": None, **ctx["phase3"]}
                   if ctx.get("phase3") else None),
        "recommendations": list(ctx.get("recommendations") or []),
        "failure_modes": failure_modes,
        "regression_gate": ctx.get("regression_gate"),
    }
    out["charts"] = _charts({**ctx, "rows": rows}, target)
    return out


def render_html(context: ReportContext | Mapping[str, Any]) -> str:
    return _environment().get_template(TEMPLATE_NAME).render(**normalise_context(context))


def render_report(context: ReportContext | Mapping[str, Any], out_path: str | os.PathLike) -> Path:
    """Render the report and write it atomically; returns the path."""
    path = Path(out_path)
    fsutil.write_text(path, render_html(context))
    return path
