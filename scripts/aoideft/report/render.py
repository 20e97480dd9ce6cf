"""Render ``DEFT_Loop_Report.html`` from its context (``report.types``): verdicts, charts, HTML.

Self-contained means no network at view time: CSS is inline (a print stylesheet included), charts
are inline SVG (``report.charts``), images are checked ``data:`` URIs, thumbnails enlarge with CSS
alone (``:focus``). The template is rendered with jinja2 autoescaping on, so any string from data
(labels, notes, paths) is shown as text, never interpreted as markup.

The verdicts are decided here, each on the basis it states: KPI met on the basis rows (the held-out
KPI half, or the whole KPI set with ``deft.kpi_holdout: 0``), whether the loop helped (the paired
interval of the FAR difference on those rows), and the colour of every delta (only when its
interval excludes 0).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from .. import fsutil
from ..progress import fmt_duration
from . import charts
from .images import checked_png_uri
from .types import ReportContext, Verdict

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE_NAME = "deft_report.html.j2"
SAMPLE_KINDS = ("real", "synthetic", "mined")
DASH = "\u2014"


# ---- verdicts -------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def kpi_verdict(far_pct: float | None, ci95: list[float] | None, target: float, basis: str, *,
                in_progress: bool = False) -> Verdict:
    """MET when FAR@100% recall on the basis rows <= target (the loop's rule), else how far short."""
    if not _is_number(far_pct):
        return {"tone": "warn", "headline": "KPI NOT EVALUATED", "basis": basis,
                "detail": f"no FAR@100% recall yet (target {target:g}%)"}
    interval = f" (95% interval {ci95[0]:.1f}-{ci95[1]:.1f}%)" if ci95 else ""
    reached = f"FAR@100% recall {far_pct:.2f}%{interval} vs target {target:g}%"
    if far_pct <= target:
        caution = (f"; the interval reaches {ci95[1]:.1f}%, above the target" if ci95 and ci95[1] > target else "")
        return {"tone": "good", "headline": "KPI MET", "basis": basis, "detail": reached + caution}
    gap = far_pct - target
    gap_text = f"{gap:.1f}pp from target" if gap >= 0.05 else "<0.1pp from target"
    return {"tone": "warn" if in_progress else "bad", "headline": "KPI IN PROGRESS" if in_progress else "KPI NOT MET",
            "basis": basis, "detail": f"{reached} \u2014 {gap_text}"}


def difference_tone(difference: Mapping[str, Any] | None) -> str:
    """good / bad only when the paired 95% interval of the FAR difference excludes 0."""
    if not difference or not _is_number(difference.get("low")) or not _is_number(difference.get("high")):
        return "neutral"
    if difference["high"] < 0:
        return "good"
    return "bad" if difference["low"] > 0 else "neutral"


def loop_verdict(effect: Mapping[str, Any], basis: str) -> Verdict:
    """Did the loop help: the delivered model against the baseline, on the basis rows."""
    model, reference = effect["model"], effect["reference"]
    differences = effect.get("differences") or []
    if model == reference or not differences:
        return {"tone": "warn", "headline": "No: the loop's models were not better",
                "basis": "the accept-or-keep gate",
                "detail": f"the model to deploy is still {reference}: no later model passed the gate against it"}
    first = differences[0]
    span = (f"FAR@{first['recall']} recall {first['reference_far_pct']:.2f}% \u2192 {first['model_far_pct']:.2f}% "
            f"({first['difference_pp']:+.2f}pp, paired 95% interval {first['low']:+.2f} to {first['high']:+.2f}pp; "
            f"{model} lower in {first['p_lower']:.0%} of resamples)")
    tone = difference_tone(first)
    headline = {"good": f"Yes: {model} has fewer false alarms than {reference}",
                "bad": f"No: {model} has more false alarms than {reference}",
                "neutral": f"Not measurably: {model} vs {reference} is within the noise"}[tone]
    return {"tone": tone if tone != "neutral" else "warn", "headline": headline, "basis": basis, "detail": span}


# ---- formatting filters -------------------------------------------------------------------------------
def fmt_pct(value: Any, digits: int = 2) -> str:
    return f"{float(value):.{digits}f}%" if _is_number(value) else DASH


def fmt_pp(value: Any) -> str:
    return f"{float(value):+.2f}pp" if _is_number(value) else DASH


def fmt_ratio(value: Any, digits: int = 1) -> str:
    """A 0-1 share as a percentage."""
    return f"{100 * float(value):.{digits}f}%" if _is_number(value) else DASH


def fmt_ci(interval: Any, scale: float = 1.0, digits: int = 1, unit: str = "%") -> str:
    """[low, high] as "low-high%"; ``scale`` 100 for 0-1 shares."""
    if not interval or len(interval) != 2 or not all(_is_number(v) for v in interval):
        return ""
    low, high = (scale * float(v) for v in interval)
    return f"{low:.{digits}f}\u2013{high:.{digits}f}{unit}"


def fmt_num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if _is_number(value):
        return f"{float(value):.{digits}g}"
    if value is None or isinstance(value, float):  # None, NaN, inf
        return DASH
    return str(value)


def fmt_seconds(value: Any) -> str:
    return fmt_duration(float(value)) if _is_number(value) else DASH


# ---- charts -------------------------------------------------------------------------------------------------
def trend_chart(models: list[dict[str, Any]], target: float, basis: str) -> Markup | None:
    """FAR of every model: the basis rows with their interval (hollow: rejected by the gate), TAO's
    whole-KPI-set figure, the deployable FAR with the recall it reaches, and validation."""
    if not models:
        return None
    def column(key: str) -> list[Any]:
        return [row.get(key) for row in models]

    lows = [(row.get("basis_far_ci95") or [None, None])[0] for row in models]
    highs = [(row.get("basis_far_ci95") or [None, None])[1] for row in models]
    recall_labels = [f"recall {100 * r:.1f}%" if _is_number(r) and r < 1 else None for r in column("deployable_recall")]
    series = [
        {"label": f"FAR@100% recall, {basis} (95% interval)", "y": column("basis_far_pct"), "low": lows, "high": highs,
         "color": charts.PALETTE["held_out"], "hollow": [row.get("accepted") is False for row in models]},
        {"label": "FAR@100% recall, whole KPI set (TAO)", "y": column("kpi_far_pct"), "color": charts.PALETTE["kpi"],
         "style": "dotted"},
        {"label": f"deployable FAR, {basis} (validation threshold; its recall)", "y": column("deployable_far_pct"),
         "color": charts.PALETTE["deployable"], "style": "dashed", "point_labels": recall_labels},
        {"label": "validation FAR@100% recall", "y": column("val_far_pct"), "color": charts.PALETTE["validation"],
         "style": "dotted"},
    ]
    values = [v for item in series for v in item["y"]] + highs + [target]
    return charts.svg_line_chart(
        series, title="FAR by model (lower is better; open circle: rejected by the gate)", x_label="model",
        y_label="FAR (% of PASS parts flagged)", x_categories=[str(row.get("label", "")) for row in models],
        y_scale=charts.positive_scale(values, upper=100.0),
        hlines=[{"y": target, "label": f"KPI target {target:g}%"}], width=760, height=360)


def histogram_chart(histogram: Mapping[str, Any] | None, *, width: int = 640) -> Markup | None:
    if not histogram:
        return None
    unscored = int(histogram.get("unscored_pass", 0)) + int(histogram.get("unscored_defect", 0))
    title = histogram.get("title", "Score distribution") + (f" ({unscored} unscored rows not shown)" if unscored else "")
    edges = histogram["edges"]
    return charts.svg_histogram(edges, {"PASS": histogram.get("pass", []), "defect": histogram.get("defect", [])},
                                title=title, x_scale=charts.score_scale(edges[0], edges[-1]),
                                thresholds=histogram.get("thresholds", []), width=width)


def curves_chart(curves: list[dict[str, Any]], floor_pct: float | None, basis: str) -> Markup | None:
    """Recall against FAR on a log FAR axis (down to one PASS part of the basis rows), recall zoomed to
    the part of the curve that axis shows; a diamond marks each model's deploy threshold."""
    if not curves:
        return None
    fars = [v for curve in curves for v in curve["far_pct"]]
    x_scale = charts.positive_scale(fars, upper=100.0, lower=floor_pct)
    shown = [r for curve in curves for f, r in zip(curve["far_pct"], curve["recall"]) if f >= x_scale.lo]
    low = min(shown, default=0.0)
    y_scale = charts.LinearScale(max(0.0, math.floor(low * 20 - 1e-9) / 20 - 0.05) if low < 1 else 0.9, 1.005)
    markers = [{"x": max(c["marker"]["far_pct"], x_scale.lo), "y": c["marker"]["recall"], "label": c["marker"]["label"],
                "color": charts.SERIES_COLORS[i % len(charts.SERIES_COLORS)]}
               for i, c in enumerate(curves) if c.get("marker")]
    return charts.svg_line_chart(
        [{"label": c["label"], "x": c["far_pct"], "y": c["recall"]} for c in curves],
        title=f"Recall vs FAR, {basis} (\u25c6 deploy threshold)", x_label="FAR (% of PASS parts flagged)", y_label="recall",
        x_scale=x_scale, y_scale=y_scale, markers=markers)


# ---- context -> template variables ---------------------------------------------------------------
def _pair(pair: Mapping[str, Any], what: str) -> dict[str, str]:
    return {"caption": pair.get("caption", ""), "golden_uri": checked_png_uri(pair["golden_png_b64"], what + " golden"),
            "test_uri": checked_png_uri(pair["test_png_b64"], what + " test")}


def _samples(samples: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    out = []
    for index, sample in enumerate(samples):
        what = f"samples[{index}] ({sample.get('caption', '')!r})"
        if sample.get("kind", "real") not in SAMPLE_KINDS:
            raise ValueError(f"{what}: kind must be one of {SAMPLE_KINDS}, got {sample.get('kind')!r}")
        out.append({**_pair(sample, what), "kind": sample.get("kind", "real")})
    return out


def _iterations(sections: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for section in sections:
        modes = [{**mode, "examples": [_pair(example, f"failure mode {mode.get('id', '')!r} of {section['label']}")
                                       for example in mode.get("examples", [])]}
                 for mode in section.get("modes", [])]
        out.append({"accepted": None, "incumbent": None, "decision": "", "rca_summary": "", "routed_in": None,
                    "routing": "", "facts": [], "warnings": [], "seconds": None, **section, "modes": modes,
                    "chart": histogram_chart(section.get("histogram"), width=560)})
    return out


def normalise_context(context: ReportContext | Mapping[str, Any]) -> dict[str, Any]:
    """Defaults for optional sections, the verdicts, checked image URIs and the SVG charts."""
    ctx: dict[str, Any] = dict(context)
    if "header" not in ctx or "models" not in ctx:
        raise ValueError("report context needs 'header' and 'models'")
    header = {"title": "DEFT loop report", "run_dir": "", "generated_at": "", "iterations_run": 0,
              "max_iterations": 0, "stop_reason": "", "in_progress": False, "basis": "whole KPI set",
              "basis_key": "whole", **ctx["header"]}
    if "kpi_target" not in header:
        raise ValueError("report context header needs 'kpi_target' (FAR percent)")
    target, basis = float(header["kpi_target"]), header["basis"]
    models = [{**row, "delta_tone": difference_tone(row.get("delta"))} for row in ctx["models"]]
    delivery = dict(ctx["delivery"]) if ctx.get("delivery") else None
    if delivery:
        basis_set = next((s for s in delivery.get("sets", []) if s.get("is_basis")), {})
        delivery["verdict"] = kpi_verdict(basis_set.get("far100_pct"), basis_set.get("far100_ci95"), target, basis,
                                          in_progress=bool(header["in_progress"]))
    loop_effect = dict(ctx["loop_effect"]) if ctx.get("loop_effect") else None
    if loop_effect:
        loop_effect["verdict"] = loop_verdict(loop_effect, basis)
    missed = dict(ctx["missed"]) if ctx.get("missed") else None
    if missed:
        missed["rows"] = [{**row, "pair": _pair(row["pair"], f"missed defect {row.get('object_name', '')!r}")
                           if row.get("pair") else None} for row in missed.get("rows", [])]
    out = {
        "header": header,
        "models": models,
        "delivery": delivery,
        "loop_effect": loop_effect,
        "missed": missed,
        "defect_types": list(ctx.get("defect_types") or []),
        "training_data": list(ctx.get("training_data") or []),
        "synthetic_cap": ctx.get("synthetic_cap"),
        "gate": ctx.get("gate"),
        "iterations": _iterations(list(ctx.get("iterations") or [])),
        "trials": list(ctx.get("trials") or []),
        "stage_times": ctx.get("stage_times"),
        "samples": _samples(list(ctx.get("samples") or [])),
        "recommendations": list(ctx.get("recommendations") or []),
    }
    out["charts"] = {"trend": trend_chart(models, target, basis),
                     "histogram": histogram_chart(ctx.get("histogram")),
                     "curves": curves_chart(list(ctx.get("curves") or []), ctx.get("curve_floor_pct"), basis)}
    return out


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=fmt_pct, pp=fmt_pp, ratio=fmt_ratio, num=fmt_num, ci=fmt_ci, seconds=fmt_seconds)
    return env


def render_html(context: ReportContext | Mapping[str, Any]) -> str:
    return _environment().get_template(TEMPLATE_NAME).render(**normalise_context(context))


def render_report(context: ReportContext | Mapping[str, Any], out_path: str | os.PathLike) -> Path:
    """Render the report and write it atomically; returns the path."""
    path = Path(out_path)
    fsutil.write_text(path, render_html(context))
    return path
