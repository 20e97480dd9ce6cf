from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from aoideft import csvdata
from aoideft.deft import rca
from aoideft.errors import InputError

LIGHTS = ["SolderLight", "UniformLight"]


def inference_frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """(object_name, label, score) -> an inference CSV frame with one metadata column."""
    return pd.DataFrame({
        "input_path": ["kpi/test"] * len(rows),
        "golden_path": ["kpi/golden"] * len(rows),
        "label": [label for _, label, _ in rows],
        "object_name": [name for name, _, _ in rows],
        "comp_type_1": ["CAP" if i % 2 else "RES" for i in range(len(rows))],
        "siamese_score": [score for _, _, score in rows],
    })


# Defects lowest score 0.6 -> the highest threshold with recall 1 is the next candidate below it: 0.3.
ROWS = [
    ("d1", "BRIDGE", 0.9), ("d2", "BRIDGE", 0.6), ("d3", "MISSING", 0.8),
    ("p1", "PASS", 0.1), ("p2", "PASS", 0.7), ("p3", "PASS", 0.95), ("p4", "PASS", 0.3),
]


def analyse(rows=ROWS, **kwargs):
    kwargs = {"lights": LIGHTS, "images_dir": "/imgs", "image_ext": ".jpg", **kwargs}
    return rca.analyse(inference_frame(rows), **kwargs)


def test_weakness_is_signed_distance_on_the_wrong_side_of_the_threshold():
    result = analyse()
    assert result.reachable and result.threshold == pytest.approx(0.3)
    weak = result.weak.set_index("object_name")
    expected = {"d1": -0.6, "d2": -0.3, "d3": -0.5, "p1": -0.2, "p2": 0.4, "p3": 0.65, "p4": 0.0}
    for name, value in expected.items():
        assert weak.loc[name, "weakness"] == pytest.approx(value)
    # predicted defect iff score > threshold: p2, p3 are false alarms; p4 (== threshold) is not
    assert sorted(weak.index[weak["misclassified"]]) == ["p2", "p3"]
    assert np.array_equal(rca.signed_weakness(np.array([True, False]), np.array([0.2, 0.2]), 0.5), [0.3, -0.3])


def test_top_k_per_label_keeps_the_weakest_rows_of_each_label():
    result = analyse(top_k_per_label=2)
    kept = result.weak.groupby("label")["object_name"].apply(list).to_dict()
    assert kept == {"BRIDGE": ["d2", "d1"], "MISSING": ["d3"], "PASS": ["p3", "p2"]}
    assert result.metrics()["weak_counts_per_label"] == {"BRIDGE": 2, "MISSING": 1, "PASS": 2}
    # BRIDGE's weakest row (-0.3) is weaker than MISSING's (-0.5)
    assert result.target_defect_labels == ["BRIDGE", "MISSING"]


def test_gaps_have_one_row_per_light_with_that_lights_test_image_and_the_row_columns():
    result = analyse(top_k_per_label=1)
    gaps = result.gaps
    assert len(gaps) == 3 * len(LIGHTS)
    assert list(gaps.columns[:5]) == ["filepath", "light", "label", "siamese_score", "weakness"]
    for column in ("input_path", "golden_path", "object_name", "comp_type_1", "row_key"):
        assert column in gaps.columns
    p3 = gaps[gaps["object_name"] == "p3"]
    assert list(p3["light"]) == LIGHTS
    assert list(p3["filepath"]) == [str(csvdata.image_file("/imgs", "kpi/test", "p3", light, ".jpg")) for light in LIGHTS]
    assert set(p3["row_key"]) == {"kpi/test/p3"}


def test_write_rca_outputs_and_read_gaps_round_trip(tmp_path):
    result = analyse(top_k_per_label=2)
    rca.write_rca(result, tmp_path)
    assert float((tmp_path / "threshold.txt").read_text()) == pytest.approx(0.3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["far_pct"] == pytest.approx(50.0) and metrics["unreachable"] is False
    assert metrics["target_defects"] == ["BRIDGE", "MISSING"]
    assert metrics["misclassified_per_label"] == {"PASS": 2}
    breakdown = (tmp_path / "weak_samples_breakdown.txt").read_text()
    assert "FAR 50.00%" in breakdown and "BRIDGE" in breakdown and "MISSING" in breakdown
    assert not (tmp_path / "unreachable_kpi.txt").exists()
    back = rca.read_gaps(tmp_path)
    assert back[["object_name", "light", "weakness"]].equals(result.gaps[["object_name", "light", "weakness"]])


def test_no_finite_score_makes_the_kpi_unreachable_and_a_later_reachable_run_clears_the_marker(tmp_path):
    result = analyse([(name, label, float("nan")) for name, label, _ in ROWS])
    assert not result.reachable and "finite" in result.unreachable_reason
    assert result.gaps.empty and result.threshold is None
    rca.write_rca(result, tmp_path)
    assert (tmp_path / "unreachable_kpi.txt").exists()
    assert math.isnan(float((tmp_path / "threshold.txt").read_text()))
    assert rca.read_gaps(tmp_path).empty
    assert json.loads((tmp_path / "metrics.json").read_text())["unreachable"] is True

    rca.write_rca(analyse(), tmp_path)
    assert not (tmp_path / "unreachable_kpi.txt").exists()


def test_unscored_rows_follow_the_kpi_rule_and_are_never_weak_samples():
    # The KPI counts a row without a score as flagged: the defect is caught, the PASS row is a false alarm.
    result = analyse(ROWS + [("d4", "SHIFT", float("nan")), ("p5", "PASS", "")])
    assert result.reachable and result.threshold == pytest.approx(0.3)
    assert result.operating_point.tp == 4 and result.operating_point.fp == 3
    assert result.unscored_rows == {"PASS": 1, "defect": 1}
    assert not {"d4", "p5"} & set(result.weak["object_name"])
    assert "SHIFT" not in result.target_defect_labels


def test_threshold_below_every_pass_score_is_reachable_but_flagged():
    result = analyse([("d1", "BRIDGE", 0.2), ("p1", "PASS", 0.5), ("p2", "PASS", 0.9)])
    metrics = result.metrics()
    assert result.reachable and metrics["far_pct"] == pytest.approx(100.0) and metrics["far_is_total"] is True


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="no defect rows"):
        analyse([("p1", "PASS", 0.1), ("p2", "PASS", 0.2)])
    with pytest.raises(InputError, match="not a number"):
        analyse(ROWS + [("p9", "PASS", "high")])
    with pytest.raises(InputError, match="siamese_score"):
        rca.analyse(inference_frame(ROWS).drop(columns="siamese_score"), lights=LIGHTS, images_dir="/i", image_ext=".jpg")
    with pytest.raises(InputError, match="top_k_per_label"):
        analyse(top_k_per_label=0)
