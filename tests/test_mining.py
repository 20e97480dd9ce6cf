from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aoideft.deft import mining


def brute_force_topk(queries, pool, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    p = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    sims = q @ p.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


@pytest.mark.parametrize("batch_size,query_batch_size", [(13, 3), (1000, 256), (1, 1)])
def test_cosine_topk_equals_brute_force(batch_size, query_batch_size):
    rng = np.random.default_rng(0)
    queries, pool = rng.normal(size=(7, 16)), rng.normal(size=(200, 16))
    idx, sims = mining.cosine_topk(queries, pool, 5, batch_size=batch_size, query_batch_size=query_batch_size)
    expected_idx, expected_sims = brute_force_topk(queries, pool, 5)
    assert np.array_equal(idx, expected_idx)
    assert np.allclose(sims, expected_sims, atol=1e-5)


def test_cosine_topk_respects_the_valid_mask_and_small_pools():
    rng = np.random.default_rng(1)
    queries, pool = rng.normal(size=(4, 8)), rng.normal(size=(30, 8)).astype(np.float32)
    valid = np.zeros(30, bool)
    valid[[3, 17, 29]] = True
    idx, sims = mining.cosine_topk(queries, pool, 5, batch_size=7, valid=valid)
    assert idx.shape == (4, 3) and set(idx.ravel()) <= {3, 17, 29}
    assert (np.diff(sims, axis=1) <= 0).all()
    with pytest.raises(ValueError, match="NaN"):
        mining.cosine_topk(np.full((1, 8), np.nan), pool, 2)


def unit(angle_deg: float) -> np.ndarray:
    """A 2-D unit vector; cos(angle) is its similarity to unit(0)."""
    return np.array([np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))])


def pool_frame(n: int, label="PASS") -> pd.DataFrame:
    labels = label if isinstance(label, list) else [label] * n
    return pd.DataFrame({"input_path": "pool", "golden_path": "pool_g", "label": labels,
                         "object_name": [f"p{i}" for i in range(n)], "comp_type_1": "CAP"})


def targets_frame(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"input_path": "kpi", "golden_path": "kpi_g", "label": labels,
                         "object_name": [f"t{i}" for i in range(len(labels))]})


# pool p_i sits i*3 degrees from the x axis: similarity to unit(0) is cos(3i deg) (p0..p8 >= 0.9, i.e. <= 25.8 deg)
POOL = pool_frame(12)
POOL_EMB = np.stack([unit(3 * i) for i in range(12)])


def test_top_k_and_similarity_floor_are_respected():
    result = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=3,
                         min_similarity=0.9, history={}, exclude_keys=set())
    assert list(result.rows["object_name"]) == ["p0", "p1", "p2"]
    assert list(result.rows["target_key"]) == ["kpi/t0"] * 3
    assert not result.hard_stop and result.stats["mined"] == 3
    loose = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=12,
                        min_similarity=0.9, history={}, exclude_keys=set())
    assert (loose.rows["similarity"] >= 0.9).all() and len(loose.rows) == 9


def test_duplicates_across_targets_are_kept_once_by_their_best_similarity():
    # t0 at 0 deg and t1 at 6 deg share neighbours; p2 (6 deg) is closer to t1
    targets = targets_frame(["PASS", "PASS"])
    result = mining.mine(targets, np.stack([unit(0), unit(6)]), POOL, POOL_EMB, top_k_per_target=3,
                         min_similarity=0.9, history={}, exclude_keys=set())
    assert result.rows["object_name"].is_unique
    owner = dict(zip(result.rows["object_name"], result.rows["target_key"]))
    assert owner["p2"] == "kpi/t1" and owner["p0"] == "kpi/t0"
    assert set(owner) == {"p0", "p1", "p2", "p3"}
    assert result.stats["duplicates_dropped"] == 2


def test_per_light_targets_are_deduplicated_by_row_key():
    targets = pd.concat([targets_frame(["PASS"])] * 2, ignore_index=True)
    result = mining.mine(targets, np.stack([unit(0), unit(0)]), POOL, POOL_EMB, top_k_per_target=2,
                         min_similarity=0.9, history={}, exclude_keys=set())
    assert result.stats["targets"] == 1 and len(result.rows) == 2


def test_history_and_exclusions_are_never_returned():
    history = {"1": ["pool/p0"]}
    result = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=2,
                         min_similarity=0.9, history=history, exclude_keys={"pool/p1"}, iteration=2)
    assert list(result.rows["object_name"]) == ["p2", "p3"]
    assert result.stats["excluded_rows"] == 1 and result.stats["mined_before_rows"] == 1
    # re-running iteration 1 ignores its own earlier entry instead of excluding its rows
    rerun = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=1,
                        min_similarity=0.9, history=history, exclude_keys=set(), iteration=1)
    assert list(rerun.rows["object_name"]) == ["p0"]
    unaware = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=1,
                          min_similarity=0.9, history=history, exclude_keys=set(), history_aware=False)
    assert list(unaware.rows["object_name"]) == ["p0"]


def test_hard_stop_when_nothing_is_added():
    far = mining.mine(targets_frame(["PASS"]), unit(90)[None], POOL, POOL_EMB, min_similarity=0.9,
                      history={}, exclude_keys=set())
    assert far.hard_stop and far.rows.empty and "floor" in far.reason
    all_used = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, history={},
                           exclude_keys=set(mining.rows_keys(POOL)))
    assert all_used.hard_stop and "excluded" in all_used.reason
    nothing_routed = mining.mine(targets_frame([]), np.zeros((0, 2)), POOL, POOL_EMB, history={}, exclude_keys=set())
    assert nothing_routed.hard_stop and "routed" in nothing_routed.reason


def test_yield_drop_and_label_aware_warnings():
    history = {"1": [f"pool/q{i}" for i in range(10)]}
    result = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=2,
                         history=history, exclude_keys=set(), iteration=2)
    assert any("yield dropped" in w for w in result.warnings) and result.stats["previous_yield"] == 10
    steady = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=5,
                         history={"1": ["pool/q0"] * 1}, exclude_keys=set(), iteration=2)
    assert not any("yield" in w for w in steady.warnings)

    pool = pool_frame(12, label=["PASS"] * 6 + ["SHIFT"] * 6)
    aware = mining.mine(targets_frame(["SHIFT", "BRIDGE"]), np.stack([unit(0), unit(0)]), pool, POOL_EMB,
                        top_k_per_target=3, min_similarity=0.5, history={}, exclude_keys=set(), label_aware=True)
    assert set(aware.rows["label"]) == {"SHIFT"} and list(aware.rows["object_name"]) == ["p6", "p7", "p8"]
    assert any("BRIDGE" in w and "no rows" in w for w in aware.warnings)


def test_history_io_and_write_mining(tmp_path):
    path = tmp_path / "mining_history.json"
    assert mining.read_history(path) == {}
    history = mining.updated_history({"2": ["b"], 1: ["a"]}, 3, ["d", "c", "c"])
    assert history == {"1": ["a"], "2": ["b"], "3": ["c", "d"]} and list(history) == ["1", "2", "3"]
    assert mining.updated_history(history, 3, ["e"])["3"] == ["e"]
    result = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=2,
                         history={"1": ["pool/p0"]}, exclude_keys=set())
    mining.write_mining(result, tmp_path / "out", path, history={"1": ["pool/p0"]}, iteration=2)
    assert mining.read_history(path) == {"1": ["pool/p0"], "2": ["pool/p1", "pool/p2"]}
    assert list(pd.read_csv(tmp_path / "out" / "mined_rows.csv")["object_name"]) == ["p1", "p2"]
    summary = json.loads((tmp_path / "out" / "mining_summary.json").read_text())
    assert summary["mined"] == 2 and summary["hard_stop"] is False and summary["iteration"] == 2
    with pytest.raises(ValueError, match="iteration"):
        mining.write_mining(result, tmp_path / "out", path, history={})
    path.write_text("[1, 2]")
    with pytest.raises(Exception, match="iteration numbers"):
        mining.read_history(path)


def test_large_pool_is_processed_in_bounded_chunks():
    rng = np.random.default_rng(2)
    pool = rng.normal(size=(20000, 32)).astype(np.float32)
    queries = pool[[5, 12345]] + 0.01
    idx, sims = mining.cosine_topk(queries, pool, 3, batch_size=4096, query_batch_size=1)
    assert list(idx[:, 0]) == [5, 12345] and (sims[:, 0] > 0.99).all()


def test_quotas_keep_the_most_similar_rows_of_each_mode_and_no_row_twice():
    targets = targets_frame(["PASS", "PASS"]).assign(failure_mode=["fa:a", "fa:b"])
    target_emb = np.stack([unit(0), unit(30)])  # p0..p4 nearer target a, p6..p11 nearer target b
    result = mining.mine(targets, target_emb, POOL, POOL_EMB, top_k_per_target=6, min_similarity=0.8,
                         quotas={"fa:a": 2, "fa:b": 3})
    per_mode = result.rows.groupby("failure_mode")["object_name"].apply(set).to_dict()
    assert per_mode == {"fa:a": {"p0", "p1"}, "fa:b": {"p9", "p10", "p11"}}  # p9 and p11 tie at 3 degrees
    assert result.rows["object_name"].is_unique
    available = mining.rows_per_mode(mining.mine(targets, target_emb, POOL, POOL_EMB, top_k_per_target=6,
                                                 min_similarity=0.8))
    assert sum(available.values()) == 12 and available["fa:a"] >= 2 and available["fa:b"] >= 3
    capped = mining.mine(targets, target_emb, POOL, POOL_EMB, top_k_per_target=6, min_similarity=0.8, max_rows=4)
    assert len(capped.rows) == 4 and capped.stats["over_budget_dropped"] == 8


def test_three_iterations_never_mine_a_row_twice_nor_a_validation_or_kpi_row():
    history: dict = {}
    exclude = {"pool/p3", "pool/p7"}  # e.g. rows that are also in the validation or KPI CSV
    seen: list[str] = []
    for iteration in (1, 2, 3):
        result = mining.mine(targets_frame(["PASS"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=3,
                             min_similarity=-1.0, history=history, exclude_keys=exclude, iteration=iteration)
        keys = mining.rows_keys(result.rows)
        assert not set(keys) & exclude and not set(keys) & set(seen)
        seen += keys
        history = mining.updated_history(history, iteration, keys)
    assert len(seen) == 9 and len(set(seen)) == 9


# ---- hard examples and the random control --------------------------------------------------------
def test_hard_examples_are_the_rows_the_model_gets_most_wrong_never_mined_twice():
    pool = pool_frame(6, ["PASS", "PASS", "PASS", "SHORT", "SHORT", "SHORT"])
    scores = np.array([0.10, 0.95, 0.60, 0.08, 0.90, np.nan])  # threshold 0.5
    rows = mining.hard_examples(pool, scores, 0.5, 3)
    # PASS scored 0.95 (2.9 logits wrong), the defect scored 0.08 (2.4), then PASS at 0.60 (0.4).
    assert list(rows["object_name"]) == ["p1", "p3", "p2"]
    assert (rows["weakness"].diff().dropna() <= 0).all() and (rows["mining_reason"] == mining.HARD_EXAMPLE).all()
    history = {"1": ["pool/p1"]}
    again = mining.hard_examples(pool, scores, 0.5, 10, history=history, exclude_keys={"pool/p3"}, iteration=2)
    assert "p1" not in set(again["object_name"]) and "p3" not in set(again["object_name"])
    assert "p5" not in set(again["object_name"])  # unscored rows have no weakness to rank by
    assert len(again) == 3 and mining.hard_examples(pool, scores, 0.5, 0).empty
    with pytest.raises(ValueError, match="pool scores"):
        mining.hard_examples(pool, scores[:3], 0.5, 2)


def test_class_aware_neighbours_of_a_missed_defect_are_defects_and_of_a_false_alarm_pass_rows():
    # p0..p5 PASS, p6..p11 defects; both targets sit at unit(0), nearest to the PASS rows p0..p2.
    pool = pool_frame(12, label=["PASS"] * 6 + ["SHORT"] * 3 + ["OPEN"] * 3)
    targets = targets_frame(["BRIDGE", "PASS"])
    blind = mining.mine(targets, np.stack([unit(0), unit(0)]), pool, POOL_EMB, top_k_per_target=3,
                        min_similarity=0.5, history={}, exclude_keys=set())
    assert set(blind.rows["label"]) == {"PASS"}  # what TAO's label-agnostic mining gives a missed BRIDGE
    aware = mining.mine(targets, np.stack([unit(0), unit(0)]), pool, POOL_EMB, top_k_per_target=3,
                        min_similarity=0.5, history={}, exclude_keys=set(), class_aware=True)
    by_target = aware.rows.groupby("target_label")["object_name"].apply(list).to_dict()
    assert by_target == {"BRIDGE": ["p6", "p7", "p8"], "PASS": ["p0", "p1", "p2"]}
    only_pass = mining.mine(targets_frame(["BRIDGE"]), unit(0)[None], POOL, POOL_EMB, top_k_per_target=3,
                            min_similarity=0.5, history={}, exclude_keys=set(), class_aware=True)
    assert only_pass.rows.empty and any("1 defect target(s) unserved" in w for w in only_pass.warnings)


def test_hard_examples_take_the_defect_share_and_fill_from_the_other_class():
    pool = pool_frame(8, ["PASS"] * 5 + ["SHORT"] * 3)
    scores = np.array([0.999, 0.998, 0.997, 0.996, 0.995, 0.30, 0.45, 0.20])  # threshold 0.5
    ranked = mining.hard_examples(pool, scores, 0.5, 4)
    assert set(ranked["label"]) == {"PASS"}  # confident false alarms outrank every defect
    balanced = mining.hard_examples(pool, scores, 0.5, 4, defect_share=0.5)
    assert list(balanced["object_name"]) == ["p0", "p1", "p7", "p5"]  # weakest first within the chosen rows
    many = mining.hard_examples(pool, scores, 0.5, 7, defect_share=0.5)
    assert (many["label"] == "SHORT").sum() == 3 and (many["label"] == "PASS").sum() == 4
    odd = mining.hard_examples(pool, scores, 0.5, 3, defect_share=0.5)
    assert (odd["label"] == "SHORT").sum() == 2  # rounded up
    defect_heavy = mining.hard_examples(pool, scores, 0.5, 4, defect_share=0.75)
    assert sorted(defect_heavy["object_name"]) == ["p0", "p5", "p6", "p7"]
    exact = mining.hard_examples(pool_frame(100, ["PASS"] * 50 + ["SHORT"] * 50), np.full(100, 0.5), 0.5, 50,
                                 defect_share=0.14)
    assert (exact["label"] == "SHORT").sum() == 7  # 0.14 x 50 is 7.000000000000001 in floating point, not 8
    only_pass = mining.hard_examples(pool, scores, 0.5, 4, defect_share=0.0)
    assert set(only_pass["label"]) == {"PASS"}


def test_random_rows_are_seeded_eligible_and_marked():
    pool = pool_frame(20)
    first = mining.random_rows(pool, 5, seed=3, history={"1": ["pool/p0", "pool/p1"]}, exclude_keys={"pool/p2"},
                               iteration=2)
    assert len(first) == 5 and not {"p0", "p1", "p2"} & set(first["object_name"])
    assert first.equals(mining.random_rows(pool, 5, seed=3, history={"1": ["pool/p0", "pool/p1"]},
                                           exclude_keys={"pool/p2"}, iteration=2))
    assert not first.equals(mining.random_rows(pool, 5, seed=4))
    assert (first["mining_reason"] == mining.RANDOM).all()
    assert len(mining.random_rows(pool, 50, seed=0)) == 20
