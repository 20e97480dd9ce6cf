from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aoideft.deft import routing
from aoideft.errors import InputError

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


# ---- the integer program over failure modes ----------------------------------------------------
def _check_budgets(plan: routing.Plan, demands, budget: routing.Budget, rows_per_weak_row: int) -> None:
    sdg, mined = plan.sdg_total, plan.mining_total
    assert sdg + mined <= budget.max_new_rows
    assert sdg <= budget.sdg_rows
    if budget.compute_s is not None:
        assert budget.sdg_row_cost_s * sdg + budget.row_train_cost_s * (sdg + mined) <= budget.compute_s + 1e-6
    assert budget.previous_synthetic_rows + sdg <= budget.max_synthetic_share * (budget.previous_rows + sdg + mined) + 1e-6
    for demand in demands:
        rows = plan.rows[demand.mode_id]
        assert 0 <= rows["mining"] <= demand.available
        assert rows["sdg"] >= 0 and rows["sdg"] + rows["mining"] <= rows_per_weak_row * demand.size


@pytest.mark.parametrize("seed", range(12))
def test_the_plan_respects_every_budget(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, rng.integers(1, 7))
    demands = [routing.ModeDemand(f"m{i}", float(size / sizes.sum()), int(size), int(rng.integers(0, 60)))
               for i, size in enumerate(sizes)]
    budget = routing.Budget(max_new_rows=int(rng.integers(1, 150)), sdg_rows=int(rng.integers(0, 60)),
                            compute_s=float(rng.uniform(1, 20)) if seed % 2 else None,
                            sdg_row_cost_s=0.05, row_train_cost_s=0.04,
                            max_synthetic_share=float(rng.uniform(0.1, 0.5)), previous_rows=int(rng.integers(50, 400)),
                            previous_synthetic_rows=int(rng.integers(0, 20)))
    plan = routing.plan_rows(demands, budget, rows_per_weak_row=3)
    assert plan.status in ("optimal", "empty", "fallback_mining_only")
    _check_budgets(plan, demands, budget, 3)


def test_the_larger_failure_mode_is_served_first():
    demands = [routing.ModeDemand("small", 0.4, 5, 100), routing.ModeDemand("large", 0.6, 20, 100)]
    plan = routing.plan_rows(demands, routing.Budget(max_new_rows=10, sdg_rows=0))
    assert plan.rows == {"small": {"sdg": 0, "mining": 0}, "large": {"sdg": 0, "mining": 10}}
    # once the large mode's weak rows are covered, further rows there count half: the small mode is next
    plan = routing.plan_rows(demands, routing.Budget(max_new_rows=25, sdg_rows=0))
    assert plan.rows["large"]["mining"] == 20 and plan.rows["small"]["mining"] == 5


def test_mined_rows_are_preferred_to_synthetic_ones_and_sdg_fills_what_the_pool_lacks():
    demands = [routing.ModeDemand("a", 0.55, 10, 4), routing.ModeDemand("b", 0.45, 10, 10)]
    plan = routing.plan_rows(demands, routing.Budget(max_new_rows=20, sdg_rows=20))
    assert plan.rows["a"] == {"sdg": 6, "mining": 4} and plan.rows["b"] == {"sdg": 0, "mining": 10}


def test_with_a_plentiful_pool_each_source_saturates_so_sdg_adds_a_second_view():
    demands = [routing.ModeDemand("a", 1.0, 10, 100)]
    # 10 mined rows count fully; the 11th mined row counts 0.5, a synthetic one 0.8: SDG takes the next 10
    plan = routing.plan_rows(demands, routing.Budget(max_new_rows=25, sdg_rows=40))
    assert plan.rows["a"] == {"sdg": 10, "mining": 15}
    only_mining = routing.plan_rows(demands, routing.Budget(max_new_rows=25, sdg_rows=0))
    assert only_mining.rows["a"] == {"sdg": 0, "mining": 25}


def test_an_infeasible_share_cap_falls_back_to_mining_only_with_a_message():
    demands = [routing.ModeDemand("a", 1.0, 10, 5)]
    budget = routing.Budget(max_new_rows=50, sdg_rows=20, max_synthetic_share=0.1, previous_rows=100,
                            previous_synthetic_rows=40)
    plan = routing.plan_rows(demands, budget)
    assert plan.status == "fallback_mining_only" and "infeasible" in plan.message
    assert plan.rows == {"a": {"sdg": 0, "mining": 5}}


def test_degenerate_cases_say_why():
    assert routing.plan_rows([], routing.Budget(10, 10)).status == "no_modes"
    empty = routing.plan_rows([routing.ModeDemand("a", 1.0, 3, 0)], routing.Budget(max_new_rows=10, sdg_rows=0))
    assert empty.status == "empty" and "similarity floor" in empty.message
    with pytest.raises(InputError, match="max_new_rows must be >= 0"):
        routing.Budget(max_new_rows=-1, sdg_rows=0)
    with pytest.raises(InputError, match="compute_s"):
        routing.Budget(max_new_rows=1, sdg_rows=0, compute_s=0)


def test_mode_targets_and_plan_file(tmp_path):
    targets = pd.DataFrame({"failure_mode": ["a", "a", "b", "c"], "label": "PASS", "row_key": list("wxyz")})
    plan = routing.Plan({"a": {"sdg": 3, "mining": 0}, "b": {"sdg": 0, "mining": 2}, "c": {"sdg": 0, "mining": 0}},
                        "optimal", "", 1.0)
    sdg_targets = routing.mode_targets(targets, plan, "sdg")
    assert sdg_targets["row_key"].tolist() == ["w", "x"] and set(sdg_targets["mode_quota"]) == {3}
    assert routing.mode_targets(targets, plan, "mining")["row_key"].tolist() == ["y"]
    demands = [routing.ModeDemand(m, 1 / 3, 1, 2) for m in "abc"]
    routing.write_plan(plan, demands, routing.Budget(10, 5), tmp_path, routed_by="modes")
    written = json.loads((tmp_path / "routing_plan.json").read_text())
    assert written["sdg_rows"] == 3 and written["mining_rows"] == 2 and written["routed_by"] == "modes"
    assert written["modes"][0] == {"id": "a", "weight": 1 / 3, "size": 1, "available": 2, "sdg": 3, "mining": 0}
