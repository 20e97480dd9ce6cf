from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from aoideft import kpi, kpi_report
from aoideft.errors import InputError

NAN = float("nan")

# Defects 0.9, 0.6, 0.8; PASS 0.1, 0.7, 0.95, 0.3. Candidates: 0.1 - 1e-6, 0.1, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95.
# Recall 1 needs threshold < 0.6 (lowest defect) -> highest such candidate 0.3 -> PASS 0.7, 0.95 flagged.
ROWS = [("BRIDGE", 0.9), ("BRIDGE", 0.6), ("MISSING", 0.8),
        ("PASS", 0.1), ("PASS", 0.7), ("PASS", 0.95), ("PASS", 0.3)]


def frame(rows, **extra) -> pd.DataFrame:
    out = pd.DataFrame({"label": [label for label, _ in rows], "siamese_score": [score for _, score in rows]})
    out.insert(0, "object_name", [f"obj{i + 1}" for i in range(len(rows))])
    for column, values in extra.items():
        out[column] = values
    return out


def arrays(rows):
    return (np.array([label != "PASS" for label, _ in rows]), np.array([score for _, score in rows], dtype=float))


def brute_counts(is_defect, scores, threshold):
    flagged = ~np.isfinite(scores) | (scores > threshold)
    return int((flagged & is_defect).sum()), int((flagged & ~is_defect).sum())


# ---- the sweep and the KPI operating point --------------------------------------------------------
def test_recall_far_table_is_hand_computed_with_the_candidate_below_the_minimum():
    table = kpi.recall_far_table(*arrays(ROWS))
    assert list(table.columns) == ["threshold", "recall", "far_pct", "tp", "fp", "tn", "fn"]
    assert table["threshold"].tolist() == pytest.approx([0.1 - 1e-6, 0.1, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95], abs=1e-12)
    assert table["threshold"].iloc[0] < 0.1
    assert table["tp"].tolist() == [3, 3, 3, 2, 2, 1, 0, 0]
    assert table["fp"].tolist() == [4, 3, 2, 2, 1, 1, 1, 0]
    assert table["tn"].tolist() == [0, 1, 2, 2, 3, 3, 3, 4]
    assert table["fn"].tolist() == [0, 0, 0, 1, 1, 2, 3, 3]
    assert table["far_pct"].tolist() == pytest.approx([100, 75, 50, 50, 25, 25, 25, 0])
    assert table["recall"].tolist() == pytest.approx([1, 1, 1, 2 / 3, 2 / 3, 1 / 3, 0, 0])


def test_kpi_point_is_the_highest_threshold_with_full_recall():
    point = kpi.operating_point_at_recall(*arrays(ROWS))
    assert point == kpi.OperatingPoint(threshold=0.3, recall=1.0, far_pct=50.0, tp=3, fp=2, tn=2, fn=0)
    assert point.precision == pytest.approx(0.6) and point.f1 == pytest.approx(0.75)


def test_lowest_score_being_a_defect_selects_the_candidate_just_below_the_minimum():
    rows = [("SHIFT", 0.2), ("PASS", 0.5), ("PASS", 0.9), ("SHIFT", 0.95)]
    point = kpi.operating_point_at_recall(*arrays(rows))
    assert point.threshold == pytest.approx(0.2 - 1e-6, abs=1e-12) and point.threshold < 0.2
    assert (point.far_pct, point.tp, point.fp) == (100.0, 2, 2)
    assert kpi.just_below(1000.0) == pytest.approx(1000.0 - 1e-3, abs=1e-9)  # relative for large scores


def test_tied_scores_move_together():
    # defect and PASS tie at 0.5: keeping the defect flagged (threshold < 0.5) flags the tied PASS too.
    rows = [("BRIDGE", 0.5), ("PASS", 0.5), ("PASS", 0.4), ("BRIDGE", 0.8), ("PASS", 0.9)]
    point = kpi.operating_point_at_recall(*arrays(rows))
    assert point.threshold == pytest.approx(0.4)
    assert (point.tp, point.fp, point.tn, point.fn) == (2, 2, 1, 0)
    assert point.far_pct == pytest.approx(200 / 3)
    # tied PASS rows at the minimum: only the below-minimum candidate keeps the tied defect
    rows = [("BRIDGE", 0.3), ("PASS", 0.3), ("PASS", 0.3), ("PASS", 0.1)]
    point = kpi.operating_point_at_recall(*arrays(rows))
    assert point.threshold == pytest.approx(0.1) and point.fp == 2
    table = kpi.recall_far_table(*arrays(rows))
    assert len(table) == 3  # 2 unique scores + the one below the minimum


def test_unscored_rows_are_counted_and_flagged_at_every_threshold():
    rows = ROWS + [("SHIFT", NAN), ("PASS", NAN)]
    point = kpi.operating_point_at_recall(*arrays(rows))
    # the NaN defect is always caught so it does not move the threshold; the NaN PASS is a false alarm
    assert point.threshold == pytest.approx(0.3)
    assert (point.tp, point.fp, point.tn, point.fn) == (4, 3, 2, 0)
    assert point.far_pct == pytest.approx(60.0)
    table = kpi.recall_far_table(*arrays(rows))
    assert table["threshold"].notna().all() and len(table) == 8
    assert table["tp"].iloc[-1] == 1 and table["fp"].iloc[-1] == 1  # at the top threshold only NaN rows
    evaluation = kpi_report.evaluate_frame(frame(rows), bootstrap=0)
    metrics = evaluation.metrics
    assert (metrics["nan_scores"], metrics["nan_scores_pass"], metrics["nan_scores_defect"]) == (2, 1, 1)
    assert metrics["n_rows"] == 9 and metrics["far_pct"] == pytest.approx(60.0)
    assert metrics["per_label"]["SHIFT"]["nan_scores"] == 1 and metrics["per_label"]["SHIFT"]["detectable_kpi"] is True


def test_sweep_matches_brute_force_counts_on_random_data_with_ties_and_nans():
    rng = np.random.default_rng(3)
    is_defect = rng.random(400) < 0.3
    scores = np.round(np.where(is_defect, rng.beta(4, 2, 400), rng.beta(2, 4, 400)), 2)  # many ties
    scores[rng.choice(400, 7, replace=False)] = np.nan
    table = kpi.recall_far_table(is_defect, scores)
    finite = np.unique(scores[np.isfinite(scores)])
    assert np.allclose(table["threshold"].iloc[1:], finite) and table["threshold"].iloc[0] < finite[0]
    for row in table.itertuples():
        assert (row.tp, row.fp) == brute_counts(is_defect, scores, row.threshold)
    for min_recall in (1.0, 0.99, 0.95, 0.8):
        point = kpi.operating_point_at_recall(is_defect, scores, min_recall=min_recall)
        ok = table[table["recall"] >= min_recall]
        assert point.threshold == ok["threshold"].max()
        higher = table[table["threshold"] > point.threshold]
        assert (higher["recall"] < min_recall).all()


def test_relaxed_recall_points_are_hand_computed():
    # 197 easy defects + weak defects 0.2, 0.3, 0.4; PASS 0.1, 0.25, 0.35, 0.45, 0.5.
    rows = ([("BRIDGE", 0.9)] * 197 + [("MISSING", 0.2), ("MISSING", 0.3), ("SHIFT", 0.4)]
            + [("PASS", s) for s in (0.1, 0.25, 0.35, 0.45, 0.5)])
    metrics = kpi_report.evaluate_frame(frame(rows), bootstrap=0).metrics
    assert metrics["threshold"] == pytest.approx(0.1) and metrics["far_pct"] == pytest.approx(80.0)
    # 99.5% of 200 = 199 TP: may miss 0.2 -> threshold 0.25; 99% = 198 TP: may miss 0.2, 0.3 -> 0.35
    assert metrics["operating_points"]["recall_99_5"]["threshold"] == pytest.approx(0.25)
    assert metrics["far_at_recall_99_5"] == pytest.approx(60.0)
    assert metrics["operating_points"]["recall_99"]["threshold"] == pytest.approx(0.35)
    assert metrics["far_at_recall_99"] == pytest.approx(40.0)
    with pytest.raises(ValueError):
        kpi.operating_point_at_recall(*arrays(ROWS), min_recall=0.0)


def test_recall_target_is_an_integer_count_free_of_float_round_off():
    # 0.14 * 50 = 7.000000000000001 in floating point; the target is 7 true positives, not 8.
    is_defect = np.r_[np.ones(50, bool), False, False]
    scores = np.r_[np.arange(1, 51) / 100, 0.0, 1.0]
    point = kpi.operating_point_at_recall(is_defect, scores, min_recall=0.14)
    assert point.threshold == pytest.approx(0.43) and point.tp == 7


def test_best_f1_ties_go_to_the_highest_threshold():
    # below 0.2: TP 2, FP 2 -> 4/6; at 0.5: TP 1, FP 0, FN 1 -> 2/3 as well; the higher threshold wins.
    rows = [("BRIDGE", 0.9), ("BRIDGE", 0.2), ("PASS", 0.5), ("PASS", 0.4)]
    best = kpi.threshold_sweep(*arrays(rows)).best_f1()
    assert best.threshold == pytest.approx(0.5) and best.f1 == pytest.approx(2 / 3)


def test_best_f1_point_is_hand_computed():
    rows = [("BRIDGE", 0.9), ("BRIDGE", 0.85), ("MISSING", 0.2), ("PASS", 0.1), ("PASS", 0.3), ("PASS", 0.4)]
    # 0.4 -> TP 2, FP 0, FN 1 -> 4/5 = 0.8 beats 0.1 -> TP 3, FP 2 -> 6/8 = 0.75
    best = kpi.threshold_sweep(*arrays(rows)).best_f1()
    assert best.threshold == pytest.approx(0.4) and best.f1 == pytest.approx(0.8)
    assert (best.precision, best.recall, best.far_pct) == (pytest.approx(1.0), pytest.approx(2 / 3), 0.0)


def test_operating_point_at_a_given_threshold():
    point = kpi.operating_point_at_threshold(*arrays(ROWS), threshold=0.7)
    assert (point.tp, point.fp, point.tn, point.fn) == (2, 1, 3, 1)
    assert point.recall == pytest.approx(2 / 3) and point.far_pct == pytest.approx(25.0)
    # score == threshold is NOT flagged (score > threshold)
    assert kpi.operating_point_at_threshold(*arrays(ROWS), threshold=0.6).tp == 2
    with pytest.raises(InputError):
        kpi.operating_point_at_threshold(*arrays(ROWS), threshold=NAN)


# ---- AUROC -------------------------------------------------------------------------------------
def test_auroc_is_hand_computed_and_matches_pairwise_count_with_ties_and_nans():
    # defect/PASS pairs won: 0.9 beats 3, 0.6 beats 2, 0.8 beats 3 -> 8 of 12
    assert kpi.auroc(*arrays(ROWS)) == pytest.approx(8 / 12)
    assert kpi.auroc(*arrays([("B", 0.5), ("PASS", 0.5)])) == pytest.approx(0.5)  # a tie counts half

    rng = np.random.default_rng(11)
    is_defect = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + 0.3 * is_defect, 1)
    scores[[3, 50, 51]] = np.nan
    ranked = np.where(np.isnan(scores), np.inf, scores)
    d, p = ranked[is_defect][:, None], ranked[~is_defect][None, :]
    pairwise = ((d > p).sum() + 0.5 * (d == p).sum()) / (d.size * p.size)
    assert kpi.auroc(is_defect, scores) == pytest.approx(pairwise, abs=1e-12)


# ---- bootstrap ---------------------------------------------------------------------------------
def spread_data():
    rng = np.random.default_rng(5)
    is_defect = np.r_[np.ones(60, bool), np.zeros(240, bool)]
    scores = np.r_[rng.beta(5, 2, 60), rng.beta(2, 5, 240)]
    return is_defect, scores


def test_bootstrap_interval_contains_the_estimate_and_is_deterministic_by_seed():
    is_defect, scores = spread_data()
    point = kpi.operating_point_at_recall(is_defect, scores).far_pct
    low, high = kpi.bootstrap_far_interval(is_defect, scores, n=500, seed=1)
    assert low < point <= high and low < high
    assert kpi.bootstrap_far_interval(is_defect, scores, n=500, seed=1) == (low, high)
    assert kpi.bootstrap_far_interval(is_defect, scores, n=500, seed=2) != (low, high)


def test_bootstrap_with_one_defect_gives_the_binomial_spread_of_the_pass_rows():
    # The lone defect is in every resample, so FP ~ Binomial(400, 0.25): 95% range ~ [20.75, 29.25]%.
    is_defect = np.r_[True, np.zeros(400, bool)]
    scores = np.r_[0.5, np.full(100, 0.7), np.full(300, 0.2)]
    samples = kpi.bootstrap_far_samples(is_defect, scores, n=2000, seed=0)
    assert samples.mean() == pytest.approx(25.0, abs=0.3)
    assert samples.std() == pytest.approx(100 * math.sqrt(0.25 * 0.75 / 400), rel=0.1)
    low, high = kpi.bootstrap_far_interval(is_defect, scores, n=2000, seed=0)
    assert 20.0 <= low <= 21.5 and 28.5 <= high <= 30.0


def test_bootstrap_counts_pass_rows_tied_with_the_weakest_defect_as_false_alarms():
    # one defect at 0.5 and PASS rows 0.5 (tied: flagged) and 0.1: FAR is 0, 50 or 100% with p 1/4, 1/2, 1/4
    is_defect, scores = np.array([True, False, False]), np.array([0.5, 0.5, 0.1])
    samples = kpi.bootstrap_far_samples(is_defect, scores, n=4000, seed=0)
    assert set(np.unique(samples)) == {0.0, 50.0, 100.0}
    assert samples.mean() == pytest.approx(50.0, abs=2.0) and (samples == 50.0).mean() == pytest.approx(0.5, abs=0.03)


def test_bootstrap_matches_literal_resampling_with_the_operating_point_recomputed():
    rng = np.random.default_rng(9)
    is_defect = np.r_[np.ones(8, bool), np.zeros(16, bool)]
    scores = np.round(np.r_[rng.uniform(0.3, 1, 8), rng.uniform(0, 0.8, 16)], 2)
    scores[[2, 20]] = np.nan
    defects, passes = np.flatnonzero(is_defect), np.flatnonzero(~is_defect)
    literal = []
    for _ in range(2000):
        rows = np.r_[rng.choice(defects, len(defects)), rng.choice(passes, len(passes))]
        literal.append(kpi.operating_point_at_recall(is_defect[rows], scores[rows]).far_pct)
    fast = kpi.bootstrap_far_samples(is_defect, scores, n=2000, seed=4)
    assert fast.mean() == pytest.approx(np.mean(literal), abs=1.5)
    assert fast.std() == pytest.approx(np.std(literal), rel=0.1)
    assert 0.0 <= fast.min() and fast.max() <= 100.0


def test_bootstrap_of_separated_classes_is_zero_and_huge_inputs_use_fewer_resamples():
    is_defect = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    scores = np.r_[np.full(5, 0.9), np.full(5, 0.1)]
    assert kpi.bootstrap_far_interval(is_defect, scores, n=200) == (0.0, 0.0)
    assert kpi.bootstrap_resamples(10_000, 1000) == 1000
    assert kpi.bootstrap_resamples(1_000_000, 1000) == kpi.MIN_BOOTSTRAP_RESAMPLES
    assert kpi.bootstrap_resamples(50, 0) == 0


def test_bootstrap_at_a_relaxed_recall_matches_literal_resampling():
    rng = np.random.default_rng(12)
    is_defect = np.r_[np.ones(20, bool), np.zeros(40, bool)]
    scores = np.round(np.r_[rng.uniform(0.2, 1, 20), rng.uniform(0, 0.8, 40)], 2)
    defects, passes = np.flatnonzero(is_defect), np.flatnonzero(~is_defect)
    literal = []
    for _ in range(2000):
        rows = np.r_[rng.choice(defects, len(defects)), rng.choice(passes, len(passes))]
        literal.append(kpi.operating_point_at_recall(is_defect[rows], scores[rows], min_recall=0.9).far_pct)
    fast = kpi.bootstrap_far_samples(is_defect, scores, n=2000, seed=3, min_recall=0.9)
    assert fast.mean() == pytest.approx(np.mean(literal), abs=1.5)
    # With fewer than 1000 defects, 99.9% recall allows no miss: the same draws as 100%.
    assert np.array_equal(kpi.bootstrap_far_samples(is_defect, scores, n=50, seed=1, min_recall=0.999),
                          kpi.bootstrap_far_samples(is_defect, scores, n=50, seed=1))


def test_paired_bootstrap_draws_the_same_rows_for_every_model():
    is_defect, scores = spread_data()
    rng = np.random.default_rng(8)
    other = np.clip(scores + rng.normal(0, 0.1, len(scores)), 0, 1)
    both = kpi.paired_bootstrap_far_samples(is_defect, [scores, other], n=300, seed=6)
    assert both.shape == (2, 300)
    assert np.array_equal(both[0], kpi.bootstrap_far_samples(is_defect, scores, n=300, seed=6))
    # Literal resampling of the same rows for both models, operating points recomputed on each.
    defects, passes = np.flatnonzero(is_defect), np.flatnonzero(~is_defect)
    literal = []
    for _ in range(1500):
        rows = np.r_[rng.choice(defects, len(defects)), rng.choice(passes, len(passes))]
        literal.append(kpi.operating_point_at_recall(is_defect[rows], other[rows]).far_pct
                       - kpi.operating_point_at_recall(is_defect[rows], scores[rows]).far_pct)
    many = kpi.paired_bootstrap_far_samples(is_defect, [scores, other], n=1500, seed=7)
    assert (many[1] - many[0]).mean() == pytest.approx(np.mean(literal), abs=1.5)
    assert (many[1] - many[0]).std() == pytest.approx(np.std(literal), rel=0.15)
    # A model that ranks every row alike gives the same FAR in every resample.
    same_order = kpi.paired_bootstrap_far_samples(is_defect, [scores, scores ** 2], n=200, seed=1)
    assert np.array_equal(same_order[0], same_order[1])


def test_far_difference_interval_is_paired():
    is_defect, scores = spread_data()
    same = kpi.bootstrap_far_difference(is_defect, scores ** 3, scores, n=300, seed=2)
    assert same == {"difference_pp": 0.0, "low": 0.0, "high": 0.0, "p_lower": 0.0, "resamples": 300}
    better = np.where(is_defect, np.maximum(scores, 0.9), np.minimum(scores, 0.85))  # every defect above every PASS
    gain = kpi.bootstrap_far_difference(is_defect, better, scores, n=300, seed=2)
    assert gain["difference_pp"] == pytest.approx(-kpi.operating_point_at_recall(is_defect, scores).far_pct)
    assert gain["low"] <= gain["high"] < 0 and gain["p_lower"] == 1.0
    # Paired: the difference's interval is narrower than the two models' intervals side by side.
    nudged = np.where(is_defect, scores, scores * 0.97)
    paired = kpi.bootstrap_far_difference(is_defect, nudged, scores, n=500, seed=3)
    low_a, high_a = kpi.bootstrap_far_interval(is_defect, scores, n=500, seed=3)
    assert paired["high"] - paired["low"] < (high_a - low_a) / 2
    with pytest.raises(ValueError):
        kpi.bootstrap_far_difference(is_defect, scores, scores, n=0)


# ---- selection -------------------------------------------------------------------------------------
def test_selection_score_is_the_bootstrap_mean_of_far_at_full_recall_in_closed_form():
    rng = np.random.default_rng(5)
    is_defect = np.r_[np.ones(12, bool), np.zeros(30, bool)]
    scores = np.r_[rng.uniform(0.2, 1, 12), rng.uniform(0, 0.7, 30)]
    scores[[3, 33]] = np.nan  # an unscored defect never constrains; an unscored PASS row is always flagged
    score = kpi.selection_score(is_defect, scores)
    assert score.far_pct == kpi.operating_point_at_recall(is_defect, scores).far_pct
    sampled = kpi.bootstrap_far_samples(is_defect, scores, n=40_000, seed=2)
    assert score.expected_far_pct == pytest.approx(sampled.mean(), abs=0.3)
    assert score.expected_far_pct < score.far_pct  # the weakest defect is absent from about 37% of resamples


def test_selection_key_ranks_by_expected_far_then_by_margin():
    is_defect = np.r_[np.ones(4, bool), np.zeros(6, bool)]
    one_weak = kpi.selection_score(is_defect, np.r_[0.3, 0.9, 0.9, 0.9, 0.1, 0.2, 0.4, 0.5, 0.1, 0.2])
    two_weak = kpi.selection_score(is_defect, np.r_[0.3, 0.35, 0.9, 0.9, 0.1, 0.2, 0.4, 0.5, 0.1, 0.2])
    assert one_weak.far_pct == two_weak.far_pct  # FAR@100% recall ties ...
    assert one_weak.key < two_weak.key  # ... the expected FAR does not
    close = kpi.selection_score(is_defect, np.r_[0.6, 0.7, 0.8, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1])
    wide = kpi.selection_score(is_defect, np.r_[0.95, 0.97, 0.98, 0.99, 0.05, 0.04, 0.03, 0.02, 0.01, 0.01])
    assert close.expected_far_pct == wide.expected_far_pct == 0.0 and wide.margin > close.margin > 0
    assert wide.key < close.key and wide.value < close.value < 0 < one_weak.value < two_weak.value


# ---- evaluate_frame / deployable / errors ---------------------------------------------------------
def test_evaluate_frame_metrics_tables_and_per_label_detectability():
    evaluation = kpi_report.evaluate_frame(frame(ROWS), source="kpi.csv", bootstrap=200, seed=3)
    m = evaluation.metrics
    assert (m["far_pct"], m["threshold"], m["recall"]) == (50.0, 0.3, 1.0)
    assert m["confusion"] == {"tp": 3, "fp": 2, "tn": 2, "fn": 0}
    assert (m["n_pass"], m["n_defect"], m["nan_scores"]) == (4, 3, 0)
    assert m["best_f1"] == {"threshold": 0.3, "f1": 0.75, "precision": 0.6, "recall": 1.0, "far_pct": 50.0}
    assert m["auroc"] == pytest.approx(8 / 12)
    low, high = m["far_pct_ci95"]
    assert low <= 50.0 <= high and m["bootstrap_resamples"] == 200
    assert len(evaluation.table) == m["candidate_thresholds"] == 8
    assert m["missed_defects"] == {"recall_100": 0, "best_f1": 0} and "deployable" not in m
    assert evaluation.missed_defects.empty
    hist = m["score_histogram"]
    assert sum(hist["pass"]) == 4 and sum(hist["defect"]) == 3 and hist["edges"][0] == 0 and hist["edges"][-1] == 1
    per_label = evaluation.per_label.set_index("label")
    assert list(per_label.index) == ["BRIDGE", "MISSING", "PASS"]
    assert per_label.loc["BRIDGE", ["count", "score_min", "score_median", "score_max"]].tolist() == \
        pytest.approx([2, 0.6, 0.75, 0.9])
    assert per_label.loc["PASS", "flagged_kpi"] == 2 and per_label.loc["PASS", "detectable_kpi"] is None
    assert m["per_label"]["MISSING"]["detectable_kpi"] is True


def test_detectability_of_a_label_needs_all_its_rows_above_the_threshold():
    rows = [("BRIDGE", 0.9), ("BRIDGE", 0.4), ("MISSING", 0.8), ("PASS", 0.5), ("PASS", 0.2)]
    per_label = kpi_report.per_label_summary(pd.Series([r[0] for r in rows]), np.array([r[1] for r in rows]),
                                      {"at_0_6": 0.6, "at_0_3": 0.3}).set_index("label")
    assert per_label.loc["BRIDGE", "detectable_at_0_6"] is False and per_label.loc["BRIDGE", "flagged_at_0_6"] == 1
    assert per_label.loc["MISSING", "detectable_at_0_6"] is True
    assert per_label.loc["BRIDGE", "detectable_at_0_3"] is True and per_label.loc["PASS", "flagged_at_0_3"] == 1


def test_deployable_threshold_from_validation_transfers_and_recall_can_drop():
    validation = frame([("BRIDGE", 0.8), ("MISSING", 0.6), ("PASS", 0.55), ("PASS", 0.2)])
    threshold = kpi_report.evaluate_frame(validation, bootstrap=0).operating_point.threshold
    assert threshold == pytest.approx(0.55)
    # On the KPI set a MISSING row scores 0.5 < 0.55: the deployed threshold misses it.
    kpi_rows = [("BRIDGE", 0.9), ("MISSING", 0.5), ("SHIFT", 0.7), ("PASS", 0.6), ("PASS", 0.3), ("PASS", 0.1),
                ("PASS", 0.56)]
    evaluation = kpi_report.evaluate_frame(frame(kpi_rows), bootstrap=0, calibration_threshold=threshold)
    dep = evaluation.metrics["deployable"]
    assert dep["threshold"] == pytest.approx(0.55) and dep["recall"] == pytest.approx(2 / 3)
    assert dep["far_pct"] == pytest.approx(50.0) and dep["missed"] == 1 and (dep["tp"], dep["fn"]) == (2, 1)
    # the optimistic KPI-set threshold (highest candidate below 0.5) is 0.3: PASS 0.6 and 0.56 flagged
    assert evaluation.metrics["threshold"] == pytest.approx(0.3) and evaluation.metrics["far_pct"] == pytest.approx(50.0)
    # best F1 is at 0.6 (TP 2, FP 0, FN 1 -> 0.8) and misses the same row
    missed = evaluation.missed_defects
    assert missed[["operating_point", "row", "object_name", "label"]].values.tolist() == [
        ["best_f1", 2, "obj2", "MISSING"], ["deployable", 2, "obj2", "MISSING"]]
    assert missed["margin"].tolist() == pytest.approx([0.1, 0.05])
    assert evaluation.metrics["missed_defects"] == {"recall_100": 0, "best_f1": 1, "deployable": 1}
    per_label = evaluation.per_label.set_index("label")
    assert per_label.loc["MISSING", "detectable_deployable"] is False
    assert per_label.loc["MISSING", "detectable_kpi"] is True


@pytest.mark.parametrize("rows, words", [
    ([("PASS", 0.1), ("PASS", 0.2)], ["kpi.csv", "no defect rows", "both classes"]),
    ([("BRIDGE", 0.1), ("MISSING", 0.2)], ["kpi.csv", "no PASS rows", "both classes"]),
])
def test_a_frame_without_one_class_is_an_input_error_naming_the_csv(rows, words):
    with pytest.raises(InputError) as error:
        kpi_report.evaluate_frame(frame(rows), source="kpi.csv")
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("label, row", [("Pass", 3), ("pass", 3), (" PASS", 3)])
def test_a_wrong_case_pass_label_is_an_input_error_naming_the_row(label, row):
    rows = [("PASS", 0.1), ("BRIDGE", 0.9), (label, 0.2), ("PASS", 0.3)]
    with pytest.raises(InputError, match=rf"kpi\.csv: label '{label}' at row {row} is not the literal 'PASS'"):
        kpi_report.evaluate_frame(frame(rows), source="kpi.csv")


def test_other_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="empty label at row 2"):
        kpi.defect_mask(["PASS", "", "BRIDGE"], source="x.csv")
    with pytest.raises(InputError, match=r"siamese_score 'abc' at row 2 is not a number"):
        kpi_report.evaluate_frame(frame([("PASS", "0.1"), ("BRIDGE", "abc")]), source="x.csv")
    with pytest.raises(InputError, match=r"missing column\(s\) \['siamese_score'\]"):
        kpi_report.evaluate_frame(pd.DataFrame({"label": ["PASS"]}), source="x.csv")
    with pytest.raises(InputError, match="no row has a finite siamese_score"):
        kpi_report.evaluate_frame(frame([("PASS", NAN), ("BRIDGE", NAN)]), source="x.csv")
    # text scores as read with dtype=str: blank cells are unscored rows, not errors
    parsed = kpi.parse_scores(pd.Series(["0.5", "", "nan", "1e-3"]))
    assert parsed[0] == 0.5 and np.isnan(parsed[1]) and np.isnan(parsed[2]) and parsed[3] == 0.001


# ---- files and CLI -------------------------------------------------------------------------------
def test_write_evaluation_writes_strict_json_and_csvs(tmp_path):
    evaluation = kpi_report.evaluate_frame(frame(ROWS + [("PASS", NAN)]), bootstrap=0, calibration_threshold=0.7)
    paths = kpi_report.write_evaluation(evaluation, tmp_path / "eval")
    text = (tmp_path / "eval" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert metrics["far_pct_ci95"] is None and metrics["deployable"]["missed"] == 1
    assert pd.read_csv(paths["table"]).shape == (8, 7)
    assert set(pd.read_csv(paths["per_label"])["label"]) == {"BRIDGE", "MISSING", "PASS"}
    assert pd.read_csv(paths["missed_defects"])["object_name"].tolist() == ["obj2"]
    assert not list((tmp_path / "eval").glob(".*.tmp"))


def test_cli_round_trip_with_calibration(tmp_path, capsys):
    kpi_csv, val_csv, out = tmp_path / "kpi.csv", tmp_path / "val.csv", tmp_path / "out"
    frame(ROWS, input_path=["kpi/test"] * len(ROWS)).to_csv(kpi_csv, index=False)
    frame([("BRIDGE", 0.8), ("PASS", 0.75), ("PASS", 0.1)]).to_csv(val_csv, index=False)
    code = kpi_report.main(["--inference", str(kpi_csv), "--calibrate-on", str(val_csv), "--out", str(out),
                     "--bootstrap", "50", "--seed", "7"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "FAR@100% recall: 50.00% at threshold 0.3" in printed
    assert "deployable (calibrated threshold 0.75): FAR 25.00% at recall 0.6667 (1 defect(s) missed)" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["far_pct"] == 50.0 and metrics["bootstrap_resamples"] == 50 and metrics["bootstrap_seed"] == 7
    assert metrics["deployable"]["threshold"] == pytest.approx(0.75)
    assert metrics["source"] == str(kpi_csv)
    missed = pd.read_csv(out / "missed_defects.csv", dtype=str)
    assert missed["object_name"].tolist() == ["obj2"] and missed["input_path"].tolist() == ["kpi/test"]


def test_cli_input_error_exits_2_with_the_message_on_stderr(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    frame([("PASS", 0.1), ("PASS", 0.2)]).to_csv(bad, index=False)
    assert kpi_report.main(["--inference", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.csv" in err and "both classes" in err
    assert kpi_report.main(["--inference", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
