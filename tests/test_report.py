from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aoideft import kpi, report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def image(seed: int, channels: int = 3) -> np.ndarray:
    shape = (8, 8, channels) if channels > 1 else (8, 8)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def full_context(final_far_pct: float | None = 6.2, **header) -> dict:
    evaluation = kpi.evaluate_frame(pd.DataFrame({
        "label": ["PASS", "PASS", "PASS", "BRIDGE", "MISSING", "PASS"],
        "siamese_score": [0.1, 0.2, 0.6, 0.7, 0.9, 0.4]}), bootstrap=0)
    table = evaluation.table
    return {
        "header": {"title": "DEFT loop report", "run_dir": "/runs/r1", "generated_at": "2026-01-01T00:00:00Z",
                   "kpi_target": 5.0, "iterations_run": 2, "max_iterations": 3, "stop_reason": "max_iterations",
                   "final_far_pct": final_far_pct, "final_label": "iter2", **header},
        "rows": [
            {"label": "Phase 1 AutoML best", "phase": "Phase 1", "far_pct": 20.0, "val_far_pct": 18.0},
            {"label": "baseline", "phase": "Phase 2", "far_pct": 20.0, "deployable_far_pct": 22.0,
             "deployable_recall": 0.98, "delta_vs_baseline": 0.0, "threshold": 0.3, "training_rows": 1000,
             "synthetic_rows": 0, "mined_rows": 0, "synthetic_ratio": 0.0, "best_ckpt_kind": "best_val", "note": ""},
            {"label": EVIL, "phase": "Phase 2", "far_pct": 6.2, "deployable_far_pct": None, "deployable_recall": None,
             "delta_vs_baseline": -13.8, "threshold": 0.45, "training_rows": 1100, "synthetic_rows": 40,
             "mined_rows": 60, "synthetic_ratio": 40 / 1100, "best_ckpt_kind": "latest", "note": EVIL},
        ],
        "augmentation": [{"iteration": "iter1", "sdg_generated": 40, "mined": 60, "total_added": 100}],
        "score_distribution": {"label": EVIL, **evaluation.metrics["score_histogram"],
                               "threshold": evaluation.metrics["threshold"]},
        "recall_far_curves": [{"label": "iter2", "far_pct": table["far_pct"].tolist(), "recall": table["recall"].tolist()}],
        "defect_types": [{"label": EVIL, "count": 3, "score_min": 0.2, "score_median": 0.5, "score_max": 0.9,
                          "detectable": False},
                         {"label": "BRIDGE", "count": 5, "score_min": 0.6, "score_median": 0.7, "score_max": 0.8,
                          "detectable": True}],
        "samples": [{"caption": EVIL, "golden_png_b64": report.png_base64(image(1)),
                     "test_png_b64": report.png_data_uri(image(2)), "kind": "synthetic"}],
        "iteration_cards": [{"title": "iter1", "facts": [("mined", 60), (EVIL, EVIL)], "warnings": [EVIL]}],
        "phase3": {"ran": True, "message": "4 recommendations", "improved_over_deft": False},
        "recommendations": [EVIL, "collect more MISSING samples"],
    }


def render(tmp_path, context) -> str:
    path = report.render_report(context, tmp_path / "DEFT_Loop_Report.html")
    assert not list(tmp_path.glob(".*.tmp"))
    return path.read_text(encoding="utf-8")


def test_full_report_is_self_contained(tmp_path):
    html = render(tmp_path, full_context())
    assert "http://" not in html and "https://" not in html
    for reference in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert reference.startswith("data:image/png;base64,"), reference
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe"):
        assert forbidden not in html.lower()
    assert html.count("<svg") == 3  # FAR trend, score histogram, recall vs FAR
    assert html.count('src="data:image/png;base64,') == 2


def test_every_data_string_is_escaped(tmp_path):
    html = render(tmp_path, full_context())
    assert EVIL not in html and "<script" not in html
    assert html.count(ESCAPED) >= 7  # row label, note, defect label, caption, fact key/value, warning, recommendation
    trend, histogram, _ = re.findall(r"<svg.*?</svg>", html, re.S)
    assert "&lt;script&gt;" in trend  # x labels
    assert f"<title>Score distribution - {ESCAPED}</title>" in histogram


@pytest.mark.parametrize("far, header, headline, tone, detail", [
    (4.0, {}, "KPI MET", "good", "FAR@100% recall 4.00% vs target 5%"),
    (5.0, {}, "KPI MET", "good", "5.00% vs target 5%"),
    (8.24, {}, "KPI NOT MET", "bad", "3.2pp from target"),
    (8.24, {"in_progress": True}, "KPI IN PROGRESS", "warn", "3.2pp from target"),
    (None, {}, "KPI NOT EVALUATED", "warn", "no FAR@100% recall yet"),
])
def test_kpi_banner(tmp_path, far, header, headline, tone, detail):
    html = render(tmp_path, full_context(final_far_pct=far, **header))
    banner = re.search(r'<div class="banner (\w+)" id="kpi-banner">(.*?)</div>', html, re.S)
    assert banner.group(1) == tone
    assert f'<span class="headline">{headline}</span>' in banner.group(2) and detail in banner.group(2)


def test_kpi_status_gap_text():
    assert report.kpi_status(7.06, 5.0).detail.endswith("2.1pp from target")
    assert report.kpi_status(5.02, 5.0).detail.endswith("<0.1pp from target")
    assert report.kpi_status(float("nan"), 5.0).met is None


def test_charts_carry_the_kpi_target_threshold_and_curves(tmp_path):
    html = render(tmp_path, full_context())
    trend, histogram, curve = re.findall(r"<svg.*?</svg>", html, re.S)
    # KPI-set FAR: one line over 3 rows; deployable FAR: only the baseline point (None elsewhere)
    assert "KPI target 5%" in trend and trend.count("<polyline") == 2 and trend.count("<circle") == 4
    assert "KPI threshold 0.6" in histogram and histogram.count("<rect") == 6  # 4 PASS bins + 2 defect bins
    assert "Recall vs FAR" in curve and curve.count("<polyline") == 1
    context = full_context()
    context["score_distribution"]["unscored_pass"] = 2
    assert "(2 unscored rows not shown)" in render(tmp_path, context)


def test_optional_sections_may_be_missing(tmp_path):
    minimal = {"header": {"kpi_target": 5.0}, "rows": []}
    html = render(tmp_path, minimal)
    for text in ("No phase has finished yet.", "No sample images in this report.", "Phase 3 has not run.",
                 "No augmentation yet.", "No evaluation to analyse yet.", "KPI NOT EVALUATED"):
        assert text in html
    assert "<svg" not in html
    skipped = {**full_context(), "phase3": {"ran": False, "message": "DEFT hard-stopped"}, "samples": [],
               "score_distribution": None, "recall_far_curves": []}
    html = render(tmp_path, skipped)
    assert "Phase 3 did not run: DEFT hard-stopped" in html and html.count("<svg") == 1
    with pytest.raises(ValueError, match="header"):
        report.render_html({"rows": []})


def test_png_helpers_round_trip_and_refuse_other_data():
    for array in (image(3), image(4, channels=1), image(5, channels=4)):
        uri = report.png_data_uri(array)
        assert uri.startswith("data:image/png;base64,")
        decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
        assert np.array_equal(decoded, array)
    with pytest.raises(ValueError):
        report.png_base64(np.zeros((4, 4), dtype=np.float32))
    context = full_context()
    png = report.png_base64(image(6))
    for bad in ("javascript:alert(1)", base64.b64encode(b"GIF89a....").decode(), "", png + '" onerror="x'):
        context["samples"] = [{"caption": "x", "golden_png_b64": bad, "test_png_b64": bad, "kind": "real"}]
        with pytest.raises(ValueError, match="samples\\[0\\]"):
            report.render_html(context)
    context["samples"] = [{**full_context()["samples"][0], "kind": "other"}]
    with pytest.raises(ValueError, match="kind"):
        report.render_html(context)


def test_histogram_normalises_each_class_and_line_chart_skips_missing_points():
    svg = str(report.svg_histogram([0, 0.5, 1], {"PASS": [1, 1], "defect": [0, 4]}, title="t", threshold=0.25))
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 3 and heights[0] == pytest.approx(heights[1]) == pytest.approx(heights[2] / 2, rel=0.01)
    assert "threshold 0.25" in svg
    with pytest.raises(ValueError):
        report.svg_histogram([0, 1], {"PASS": [1, 2]}, title="t")
    chart = str(report.svg_line_chart([{"label": "a", "y": [1.0, None, 3.0]}], title="c", x_label="x", y_label="y",
                                      x_categories=["i1", "i2", "i3"]))
    assert chart.count("<circle") == 2 and chart.count("<polyline") == 2  # the gap splits the line
    many = str(report.svg_line_chart([{"label": "a", "x": list(range(5000)), "y": list(range(5000))}],
                                     title="c", x_label="x", y_label="y"))
    assert len(re.search(r'points="([^"]*)"', many).group(1).split()) == report.MAX_CURVE_POINTS


def test_nice_ticks():
    assert report.nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert report.nice_ticks(0, 22) == [0, 5, 10, 15, 20]
    assert report.nice_ticks(3, 3) == [3]
