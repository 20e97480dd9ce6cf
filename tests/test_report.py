"""The report's renderer (aoideft.report): self-contained, escaped HTML, verdicts on the basis they
state, charts whose axes suit real data, and the statistics it shows."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aoideft import kpi_report, report
from aoideft.report import charts, render, stats

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
BASIS = "held-out KPI half"


def image(seed: int, channels: int = 3) -> np.ndarray:
    shape = (8, 8, channels) if channels > 1 else (8, 8)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def pair(caption: str, seed: int = 1) -> dict:
    return {"caption": caption, "golden_png_b64": report.png_base64(image(seed)),
            "test_png_b64": report.png_data_uri(image(seed + 1))}


def row_set(name: str, *, is_basis: bool = False, far100: float = 6.0) -> dict:
    return {"name": name, "key": name, "is_basis": is_basis, "n_pass": 100, "n_defect": 20, "recall": 0.95,
            "recall_ci95": [0.76, 0.99], "missed": 1, "far_pct": 8.0, "far_ci95": [4.1, 15.0],
            "confusion": {"tp": 19, "fn": 1, "fp": 8, "tn": 92}, "far100_pct": far100, "far100_ci95": [3.0, 12.0],
            "far_99_9_pct": far100, "far_99_9_ci95": [3.0, 12.0], "far_99_5_pct": far100, "far_99_5_ci95": [3.0, 12.0],
            "far_99_pct": 5.0, "auroc": 0.97, "best_f1": {"threshold": 0.4, "f1": 0.8, "precision": 0.7, "recall": 0.9,
                                                        "far_pct": 7.0}}


def histogram(title: str) -> dict:
    is_defect = np.r_[np.zeros(50, bool), np.ones(10, bool)]
    scores = np.r_[np.linspace(0.001, 0.2, 50), np.linspace(0.3, 0.999, 10)]
    return {"title": title, **stats.logit_histogram(is_defect, scores),
            "thresholds": [{"value": 0.25, "label": "deploy threshold"}]}


def full_context(far100: float | None = 6.2, **header) -> dict:
    evaluation = kpi_report.evaluate_frame(pd.DataFrame({
        "label": ["PASS", "PASS", "PASS", "BRIDGE", "MISSING", "PASS"],
        "siamese_score": [0.1, 0.2, 0.6, 0.7, 0.9, 0.4]}), bootstrap=0)
    table = evaluation.table
    basis_set = row_set(BASIS, is_basis=True, far100=far100)
    return {
        "header": {"title": "DEFT loop report", "run_dir": "/runs/r1", "generated_at": "2026-01-01T00:00:00Z",
                   "kpi_target": 5.0, "iterations_run": 2, "max_iterations": 3, "stop_reason": "max_iterations",
                   "basis": BASIS, "basis_key": "held_out", **header},
        "models": [
            {"label": "baseline", "phase": "Phase 2", "accepted": None, "basis_far_pct": 20.0,
             "basis_far_ci95": [12.0, 30.0], "delta": None, "kpi_far_pct": 21.0, "deployable_far_pct": 22.0,
             "deployable_recall": 0.98, "val_far_pct": 18.0, "val_expected_far_pct": 15.0, "threshold": 0.3,
             "best_ckpt_kind": "best_val", "note": ""},
            {"label": EVIL, "phase": "Phase 2", "accepted": True, "delivered": True, "basis_far_pct": 6.2,
             "basis_far_ci95": [3.0, 11.0], "kpi_far_pct": 7.0, "deployable_far_pct": None, "deployable_recall": None,
             "delta": {"recall": "100%", "difference_pp": -13.8, "low": -20.0, "high": -6.0, "p_lower": 1.0},
             "val_far_pct": 9.0, "val_expected_far_pct": 8.0, "threshold": 0.45, "note": EVIL},
            {"label": "iter2", "phase": "Phase 2", "accepted": False, "basis_far_pct": 19.0, "basis_far_ci95": None,
             "delta": {"recall": "100%", "difference_pp": -1.0, "low": -9.0, "high": 7.0, "p_lower": 0.6},
             "kpi_far_pct": 20.0, "deployable_far_pct": 25.0, "deployable_recall": 1.0, "note": ""},
        ],
        "delivery": {"final": True, "label": EVIL, "checkpoint": "iter1/train/best_val.pth",
                     "inference_spec": "best_model_inference_spec.yaml", "training_spec": "iter1/train/spec.yaml",
                     "threshold": 0.4567891, "threshold_from": "validation, 100% recall", "how_chosen": [EVIL],
                     "sets": [row_set("validation"), basis_set, row_set("whole KPI set")], "cautions": [EVIL]},
        "loop_effect": {"model": "iter1", "reference": "baseline", "validation": ["iter1 passed the gate"],
                        "differences": [{"recall": "100%", "model_far_pct": 6.2, "reference_far_pct": 20.0,
                                         "difference_pp": -13.8, "low": -20.0, "high": -6.0, "p_lower": 0.99}]},
        "histogram": histogram(EVIL),
        "curves": [{"label": "iter1", "far_pct": table["far_pct"].tolist(), "recall": table["recall"].tolist(),
                    "marker": {"far_pct": 25.0, "recall": 1.0, "label": "iter1"}}],
        "curve_floor_pct": 25.0,
        "missed": {"threshold": 0.4567891, "total": 2, "file": "iter1/evaluate/best_val/missed_defects.csv",
                   "rows": [{"half": "held-out", "label": EVIL, "object_name": "C1", "score": 0.2, "margin": 0.25,
                             "metadata": "comp_type_1 CAP", "pair": pair(EVIL)},
                            {"half": "targeting", "label": "BRIDGE", "object_name": "C2", "score": 0.3, "margin": 0.15,
                             "metadata": "", "pair": None}]},
        "defect_types": [{"label": EVIL, "count": 3, "score_min": 0.2, "score_median": 0.5, "score_max": 0.9,
                          "caught": 2, "held_out_count": 1, "held_out_caught": 1},
                         {"label": "BRIDGE", "count": 5, "score_min": 0.6, "score_median": 0.7, "score_max": 0.8,
                          "caught": 5, "held_out_count": None, "held_out_caught": None}],
        "training_data": [{"iteration": "iter1", "training_rows": 1100, "rows_added": 100, "synthetic_rows": 40,
                           "synthetic_share": 40 / 1100,
                           "additions": [{"source": "sdg", "rows": 40, "by_label": [("BRIDGE", 30), (EVIL, 10)]},
                                         {"source": "mined_neighbour", "rows": 60, "by_label": [("PASS", 60)]}]},
                          {"iteration": "iter2", "training_rows": 1200, "rows_added": 100, "synthetic_rows": 400,
                           "synthetic_share": 400 / 1200, "additions": []}],
        "synthetic_cap": 0.3,
        "gate": {"enabled": True, "basis": "targeting", "confidence": 0.8, "resamples": 1000,
                 "rows": [{"iteration": "iter2", "incumbent": "iter1", "accepted": False, "p_better": 0.31,
                           "p_worse": 0.93, "candidate_expected_far_pct": 9.0, "incumbent_expected_far_pct": 8.0,
                           "targeting_p_better": 0.87, "targeting_candidate_far_pct": 21.5,
                           "targeting_incumbent_far_pct": 32.5, "note": EVIL}]},
        "iterations": [{"label": "iter1", "accepted": True, "incumbent": "iter1", "decision": "continue",
                        "histogram": histogram("iter1"), "rca_summary": EVIL, "routed_in": "iter2", "routing": "modes",
                        "facts": [(EVIL, EVIL)], "warnings": [EVIL], "seconds": 75.0,
                        "modes": [{"id": "m1", "description": EVIL, "size": 4, "share": 0.5, "lift": 2.0,
                                   "p_value": 0.01, "labels": "BRIDGE 4", "sdg_rows": 2, "mining_rows": 3,
                                   "examples": [pair("m1 example", 5)]}]}],
        "trials": [{"phase": "Phase 1 AutoML", "metric_name": "val_selection", "params": ["train.optim.lr"],
                    "note": "", "winner": {"train.optim.lr": 0.002, "train.num_epochs": 10},
                    "trials": [{"rec_id": 0, "status": "ok", "score": 9.0, "val_loss": 0.3, "collapsed": False,
                                "seconds": 61.0, "params": {"train.optim.lr": 0.001}, "winner": False},
                               {"rec_id": 1, "status": "ok", "score": 7.0, "val_loss": 0.2, "collapsed": False,
                                "seconds": 65.0, "params": {"train.optim.lr": 0.002}, "winner": True}]}],
        "stage_times": {"stages": ["inference", "train"], "totals": {"inference": 3.0, "train": 120.0, "total": 123.0},
                        "rows": [{"iteration": "iter1", "seconds": {"inference": 3.0, "train": 120.0}, "total": 123.0}],
                        "phase_seconds": [("Phase 1 AutoML trials (sum of 2)", 126.0)]},
        "samples": [{**pair(EVIL, 7), "kind": "synthetic"}],
        "recommendations": [EVIL, "collect more MISSING samples"],
    }


def render_page(tmp_path, context) -> str:
    path = report.render_report(context, tmp_path / "DEFT_Loop_Report.html")
    assert not list(tmp_path.glob(".*.tmp"))
    return path.read_text(encoding="utf-8")


def section(html: str, name: str) -> str:
    return re.search(rf'<section id="{name}">(.*?)</section>', html, re.S).group(1)


def test_full_report_is_self_contained(tmp_path):
    html = render_page(tmp_path, full_context())
    assert "http://" not in html and "https://" not in html
    for reference in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert reference.startswith(("data:image/png;base64,", "#")), reference
    for forbidden in ("<script", "<link", "@import", "url(", "<iframe", "@font-face"):
        assert forbidden not in html.lower()
    assert html.count("<svg") == 4  # FAR by model, delivered histogram, recall vs FAR, iter1's histogram
    assert html.count('src="data:image/png;base64,') == 6  # missed defect, mode example, sample: golden + test
    assert "@media print" in html and html.count('tabindex="0"') == 3  # every pair enlarges on focus


def test_every_data_string_is_escaped(tmp_path):
    html = render_page(tmp_path, full_context())
    assert EVIL not in html and "<script" not in html
    assert html.count(ESCAPED) >= 15
    trend = re.findall(r"<svg.*?</svg>", html, re.S)[0]
    assert "&lt;script&gt;" in trend  # an x label


def test_the_top_names_the_model_threshold_and_how_it_was_chosen(tmp_path):
    deploy = section(render_page(tmp_path, full_context()), "deploy")
    assert f'Deploy <span class="big">{ESCAPED}</span>' in deploy
    assert "iter1/train/best_val.pth" in deploy and "best_model_inference_spec.yaml" in deploy
    assert '<span class="big">0.456789</span>' in deploy and "validation, 100% recall" in deploy
    figures = re.search(r'<table id="deploy-figures">(.*?)</table>', deploy, re.S).group(1)
    assert figures.count("<tr") == 4 and 'class="delivered"' in figures  # header + 3 sets; the basis marked
    assert "95.0%" in figures and "[76.0–99.0%]" in figures and "[4.1–15.0%]" in figures
    interim = render_page(tmp_path, {**full_context(), "delivery": {**full_context()["delivery"], "final": False}})
    assert "Incumbent so far" in section(interim, "deploy")


@pytest.mark.parametrize("far, ci, header, headline, tone, detail", [
    (4.0, [2.0, 4.5], {}, "KPI MET", "good", "FAR@100% recall 4.00% (95% interval 2.0-4.5%) vs target 5%"),
    (5.0, [3.0, 8.0], {}, "KPI MET", "good", "the interval reaches 8.0%, above the target"),
    (8.24, None, {}, "KPI NOT MET", "bad", "3.2pp from target"),
    (8.24, None, {"in_progress": True}, "KPI IN PROGRESS", "warn", "3.2pp from target"),
    (None, None, {}, "KPI NOT EVALUATED", "warn", "no FAR@100% recall yet"),
])
def test_kpi_verdict_is_judged_on_the_basis_it_names(tmp_path, far, ci, header, headline, tone, detail):
    context = full_context(far100=far, **header)
    context["delivery"]["sets"][1]["far100_ci95"] = ci
    banner = re.search(r'<div class="verdict (\w+)" id="kpi-banner">(.*?)</div>\s*</div>',
                       render_page(tmp_path, context), re.S)
    assert banner.group(1) == tone
    assert f'<div class="headline">{headline}</div>' in banner.group(2) and detail in banner.group(2)
    assert f"basis: {BASIS}" in banner.group(2)


def test_gap_text():
    assert render.kpi_verdict(7.06, None, 5.0, BASIS)["detail"].endswith("2.1pp from target")
    assert render.kpi_verdict(5.02, None, 5.0, BASIS)["detail"].endswith("<0.1pp from target")
    assert render.kpi_verdict(float("nan"), None, 5.0, BASIS)["headline"] == "KPI NOT EVALUATED"


def test_a_delta_is_coloured_only_when_its_interval_excludes_zero(tmp_path):
    assert render.difference_tone({"low": -3.0, "high": -0.1}) == "good"
    assert render.difference_tone({"low": 0.2, "high": 9.0}) == "bad"
    assert render.difference_tone({"low": -20.0, "high": 0.5}) == "neutral"  # "-0.56 pp" within noise: not green
    assert render.difference_tone(None) == "neutral"
    models = re.search(r'<table id="model-table">(.*?)</table>', render_page(tmp_path, full_context()), re.S).group(1)
    assert '<span class="tone-good">-13.80pp</span>' in models and '<span class="tone-neutral">-1.00pp</span>' in models


def test_did_the_loop_help_follows_the_paired_interval():
    effect = full_context()["loop_effect"]
    assert render.loop_verdict(effect, BASIS)["headline"].startswith("Yes: iter1 has fewer false alarms")
    within = {**effect, "differences": [{**effect["differences"][0], "low": -20.0, "high": 3.0}]}
    verdict = render.loop_verdict(within, BASIS)
    assert verdict["tone"] == "warn" and verdict["headline"].startswith("Not measurably") and verdict["basis"] == BASIS
    worse = {**effect, "differences": [{**effect["differences"][0], "difference_pp": 5.0, "low": 1.0, "high": 9.0}]}
    assert render.loop_verdict(worse, BASIS)["tone"] == "bad"
    kept = render.loop_verdict({**effect, "model": "baseline", "differences": []}, BASIS)
    assert kept["headline"].startswith("No") and kept["basis"] == "the accept-or-keep gate"


def test_sections_show_missed_defects_defect_types_additions_trials_and_times(tmp_path):
    html = render_page(tmp_path, full_context())
    missed = section(html, "missed-defects")
    assert "2 KPI defects score at or below 0.456789" in missed and "image unavailable" in missed
    types = section(html, "defect-types")
    assert "no: 1 missed" in types and "yes, every part" in types and "2 / 3" in types
    data = section(html, "training-data")
    assert "<b>sdg 40</b>" in data and "<span>BRIDGE 30</span>" in data and "(30%)" in data
    assert '<span class="tone-bad">33.3%</span>' in data  # over the cap
    trials = section(html, "trials")
    assert "train.optim.lr = 0.002" in trials and 'rec1</b> <span class="basis">winner' in trials and "1m05s" in trials
    times = section(html, "stage-times")
    assert "2m00s" in times and "2m03s" in times and "Phase 1 AutoML trials (sum of 2): <b>2m06s</b>" in times
    gate = section(html, "regression-gate")
    assert "rejected, incumbent kept" in gate and "basis: KPI targeting half, not worse on validation" in gate
    assert "21.50%" in gate and "32.50%" in gate and "87%" in gate and "93%" in gate  # both sets' figures


def test_optional_sections_may_be_missing(tmp_path):
    html = render_page(tmp_path, {"header": {"kpi_target": 5.0}, "models": []})
    for text in ("No evaluated model yet.", "No phase has finished yet.", "No sample images in this report.",
                 "No augmentation yet.", "No evaluation to analyse yet.", "No iteration has run yet.",
                 "No AutoML phase has finished yet.", "No stage has been logged yet."):
        assert text in html, text
    assert "<svg" not in html
    with pytest.raises(ValueError, match="header"):
        report.render_html({"models": []})


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


# ---- charts ---------------------------------------------------------------------------------------------
def test_positive_scale_goes_log_when_values_span_decades():
    assert charts.positive_scale([2.0, 5.0, 9.0]).kind == "linear"
    scale = charts.positive_scale([0.0, 0.4, 3.0, 62.0], upper=100.0)
    assert scale.kind == "log" and (scale.lo, scale.hi) == (0.1, 100.0) and scale.floor
    assert scale.fraction(0.0) == scale.fraction(0.1) == 0.0 and scale.fraction(100.0) == pytest.approx(1.0)
    assert scale.fraction(1.0) == pytest.approx(1 / 3)
    assert [text for _, text in scale.ticks()] == ["\u22640.1", "1", "10", "100"]
    assert charts.positive_scale([0.001, 50.0], upper=100.0, lower=0.5).lo == 0.5  # one PASS part of 200
    assert charts.positive_scale([]).kind == "linear"


def test_logit_scale_spreads_scores_crowded_near_zero():
    scale = charts.score_scale(0.0001, 0.9999)
    assert scale.fraction(0.5) == pytest.approx(0.5)
    assert scale.fraction(0.01) == pytest.approx(1 - scale.fraction(0.99))
    # on a linear axis 0.008 and 0.001 are 0.7% of the width apart; here over a tenth of it
    assert scale.fraction(0.008) - scale.fraction(0.001) > 0.1
    assert [text for _, text in scale.ticks()] == ["0.0001", "0.001", "0.01", "0.1", "0.5", "0.9", "0.99", "0.999", "0.9999"]
    assert [v for v, _ in charts.score_scale(0.55, 0.7).ticks()] == pytest.approx([0.55, 0.6, 0.65, 0.7])
    assert [text for _, text in charts.score_scale(0.5, 1.0).ticks()][-2:] == ["0.9999", "0.99999"]


def test_logit_histogram_bins_evenly_in_log_odds_and_counts_everything():
    scores = np.r_[np.full(90, 0.002), 0.004, 0.2, 0.9, np.nan, 0.995]
    is_defect = np.r_[np.zeros(92, bool), True, True, True]
    found = stats.logit_histogram(is_defect, scores)  # 24 bins of 0.48 in log-odds
    edges = np.asarray(found["edges"])
    logits = np.log(edges / (1 - edges))
    assert np.allclose(np.diff(logits), np.diff(logits)[0])
    assert sum(found["pass"]) == 92 and sum(found["defect"]) == 2 and found["unscored_defect"] == 1
    assert found["pass"][:2] == [90, 1]  # 0.004 has a bin of its own, apart from 0.002
    one = stats.logit_histogram([False, True], [0.3, 0.3], bins=4)
    assert one["edges"][0] < 0.3 < one["edges"][-1] and sum(one["pass"]) + sum(one["defect"]) == 2


def test_histogram_log_axis_keeps_a_thin_tail_visible():
    svg = str(charts.svg_histogram([0, 0.5, 1], {"PASS": [999, 1], "defect": [0, 4]}, title="t",
                                   thresholds=[{"value": 0.25, "label": "deploy threshold"}]))
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"[^>]*><title>', svg)]
    assert len(heights) == 3 and min(heights) > 30  # 0.1% of PASS rows: a third of the way up, not one pixel
    assert "(log)" in svg and "deploy threshold 0.25" in svg
    linear = str(charts.svg_histogram([0, 0.5, 1], {"PASS": [1, 1], "defect": [0, 4]}, title="t"))
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"[^>]*><title>', linear)]
    assert heights[0] == pytest.approx(heights[1]) == pytest.approx(heights[2] / 2, rel=0.01)
    with pytest.raises(ValueError):
        charts.svg_histogram([0, 1], {"PASS": [1, 2]}, title="t")


def test_line_chart_error_bars_hollow_points_labels_gaps_and_thinning():
    chart = str(charts.svg_line_chart(
        [{"label": "a", "y": [1.0, None, 3.0], "low": [0.5, None, None], "high": [2.0, None, None],
          "hollow": [False, False, True], "point_labels": ["recall 98.0%", None, None]}],
        title="c", x_label="x", y_label="y", x_categories=["i1", "i2", "i3"]))
    assert chart.count("<circle") == 2 and chart.count("<polyline") == 2  # the gap splits the line
    assert chart.count('fill="#fff"') == 1 and "recall 98.0%" in chart and chart.count("<path d=\"M") == 1
    assert "a: 1 [0.5, 2]" in chart
    clipped = str(charts.svg_line_chart([{"label": "a", "x": [0.0, 1.0], "y": [-5.0, 0.5]}], title="c", x_label="x",
                                        y_label="y", y_scale=charts.LinearScale(0.0, 1.0), width=400, height=300))
    ys = [float(y) for y in re.findall(r"[\d.]+,([\d.]+)", re.search(r'points="([^"]*)"', clipped).group(1))]
    assert max(ys) <= 300 - 48 - 16  # below the axis's range: drawn on the axis, not under it
    many = str(charts.svg_line_chart([{"label": "a", "x": list(range(5000)), "y": list(range(5000))}],
                                     title="c", x_label="x", y_label="y"))
    assert len(re.search(r'points="([^"]*)"', many).group(1).split()) == charts.MAX_CURVE_POINTS
    wide = str(charts.svg_line_chart([{"label": f"a long legend entry {i}", "y": [1.0]} for i in range(8)],
                                     title="c", x_label="x", y_label="y", x_categories=["i1"], width=400))
    assert re.search(r'viewBox="0 0 400 (\d+)"', wide).group(1) != "330"  # the legend wrapped onto more rows


def test_nice_ticks():
    assert charts.nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert charts.nice_ticks(0, 22) == [0, 5, 10, 15, 20]
    assert charts.nice_ticks(3, 3) == [3]


def test_wilson_interval():
    low, high = stats.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = stats.wilson_interval(19, 20)
    assert low == pytest.approx(0.7639, abs=1e-3) and high == pytest.approx(0.9911, abs=1e-3)
    assert stats.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        stats.wilson_interval(3, 2)
    assert math.isclose(sum(stats.wilson_interval(5, 10)), 1.0)  # symmetric around one half


def test_the_text_summary_has_the_verdict_the_delivered_model_and_every_models_figures():
    from aoideft.report import text

    lines = text.summary_text(full_context(), "/runs/r1/DEFT_Loop_Report.html").splitlines()
    assert lines[0].startswith("AOI DEFT run /runs/r1: 2 DEFT iteration(s), stopped on max_iterations")
    assert lines[1].startswith(f"KPI NOT MET on the {BASIS}: FAR@100% recall 6.20%")
    assert lines[2].startswith(f"Delivered: {EVIL}, checkpoint iter1/train/best_val.pth, threshold 0.4568")
    table = lines[lines.index("") + 1:]
    header, baseline, delivered, iter2 = table[:4]
    assert header.split("  ")[0] == "model" and f"{BASIS} FAR@100%" in header
    # model, gate, validation, basis, deployable (recall), TAO's figure
    assert baseline.split() == ["baseline", "incumbent", "18.0%", "20.0%", "22.0%", "(98.0%)", "21.0%"]
    assert delivered.split() == [EVIL, "<-", "delivered", "accepted", "9.0%", "6.2%", render.DASH, "7.0%"]
    assert iter2.split() == ["iter2", "rejected", render.DASH, "19.0%", "25.0%", "(100.0%)", "20.0%"]
    assert "Did the loop help? Yes" in "\n".join(lines) and "  iter1 passed the gate" in lines
    assert lines[-2:] == [f"  - {EVIL}", "  - collect more MISSING samples"]


def test_the_text_summary_of_a_run_with_nothing_evaluated_says_so():
    from aoideft.report import text

    context = {"header": full_context()["header"], "models": []}
    assert text.summary_text(context, "r.html").splitlines()[1] == "No model has been evaluated yet."


def test_the_text_summary_of_taos_selection_shows_no_gate():
    from aoideft.report import text

    context = full_context(basis="whole KPI set", basis_key="whole")
    lines = text.summary_text(context, "r.html").splitlines()
    rows = lines[lines.index("") + 2:lines.index("") + 5]
    assert [row.split()[0] for row in rows] == ["baseline", EVIL, "iter2"]
    assert all(row.split()[1 if row.split()[0] != EVIL else 3] == render.DASH for row in rows)
    assert "every choice used the whole KPI set (TAO's rule" in "\n".join(lines)
