from __future__ import annotations

import json

import pandas as pd
import pytest

from aoideft.deft import routing

LIGHTS = ["SolderLight", "UniformLight"]


def gaps_frame(labels: list[str]) -> pd.DataFrame:
    """Per-light gap rows, two lights per weak sample, as RCA writes them."""
    rows = []
    for i, label in enumerate(labels):
        for light in LIGHTS:
            rows.append({"filepath": f"/i/kpi/s{i}_{light}.jpg", "light": light, "label": label,
                         "siamese_score": 0.5, "weakness": 0.1, "row_key": f"kpi/s{i}",
                         "input_path": "kpi", "golden_path": "kpi_g", "object_name": f"s{i}"})
    return pd.DataFrame(rows)


GAPS = gaps_frame(["PASS", "BRIDGE", "SHIFT", "MISSING", "TOMBSTONE", "EXCESS_SOLDER"])
POOL_LABELS = {"PASS", "SHIFT", "MISSING"}


def test_tao_label_routing_sends_rows_to_sdg_mining_both_or_drops_them():
    result = routing.route_by_label(GAPS, pool_labels=POOL_LABELS)
    assert set(result.sdg["label"]) == {"PASS", "BRIDGE", "MISSING", "EXCESS_SOLDER"}
    assert set(result.mining["label"]) == {"PASS", "SHIFT", "MISSING"}
    assert set(result.dropped["label"]) == {"TOMBSTONE"}
    assert result.dropped["drop_reason"].str.contains("TOMBSTONE").all()
    # PASS and MISSING go to both; every gap row is accounted for
    both = set(result.sdg["row_key"]) & set(result.mining["row_key"])
    assert both == {"kpi/s0", "kpi/s3"}
    assert len(result.sdg) + len(result.mining) - len(both) * len(LIGHTS) + len(result.dropped) == len(GAPS)
    assert list(result.sdg.columns) == list(GAPS.columns)  # rows keep all their columns


def test_default_sdg_labels_are_taos():
    assert routing.DEFAULT_SDG_LABELS == {"PASS", "EXCESS_SOLDER", "MISSING", "BRIDGE"}
    only_pool = routing.route_by_label(GAPS, sdg_labels=set(), pool_labels={"BRIDGE"})
    assert set(only_pool.mining["label"]) == {"BRIDGE"} and only_pool.sdg.empty
    assert len(only_pool.dropped) == len(GAPS) - 2


def test_write_routing_outputs_and_summary_counts_samples_not_lights(tmp_path):
    result = routing.route_by_label(GAPS, pool_labels=POOL_LABELS)
    routing.write_routing(result, tmp_path)
    for name in ("routing_sdg.parquet", "routing_mining.parquet", "routing_dropped.parquet"):
        assert (tmp_path / name).exists()
    assert pd.read_parquet(tmp_path / "routing_dropped.parquet")["drop_reason"].notna().all()
    summary = json.loads((tmp_path / "routing_summary.json").read_text())
    assert summary["sdg_samples"] == 4 and summary["mining_samples"] == 3 and summary["dropped_samples"] == 1
    assert summary["per_label"]["MISSING"] == {"sdg_rows": 2, "mining_rows": 2, "dropped_rows": 0,
                                               "sdg_samples": 1, "mining_samples": 1, "dropped_samples": 0}
    assert sum(summary["drop_reasons"].values()) == 2


def test_a_strategy_replaces_the_row_decision_and_must_stay_aligned():
    def everything_to_mining(gaps):
        return pd.DataFrame({"to_sdg": False, "to_mining": True, "drop_reason": None}, index=gaps.index)

    result = routing.route(GAPS, everything_to_mining)
    assert len(result.mining) == len(GAPS) and result.sdg.empty and result.dropped.empty
    with pytest.raises(ValueError, match="aligned"):
        routing.route(GAPS, lambda gaps: everything_to_mining(gaps).iloc[1:])
