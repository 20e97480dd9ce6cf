"""Failure modes: planted gaps in a generated workspace's KPI set are found, by metadata and by embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aoideft import kpi
from aoideft.deft import failure_modes as fm
from aoideft.errors import InputError

SETTINGS = fm.ModeSettings(weak_per_side=40, min_failures=3, max_clusters=3, seed=1)


@pytest.fixture(scope="module")
def kpi_rows(tiny_workspace) -> pd.DataFrame:
    """The generated tiny workspace's KPI CSV (its real metadata columns and label mix), six times
    over (renamed), so each defect label has enough rows to be a mode."""
    rows = pd.read_csv(tiny_workspace / "kpi" / "testing_set.csv", dtype=str, keep_default_na=False)
    return pd.concat([rows.assign(object_name=rows["object_name"] + f"_{copy}") for copy in range(6)],
                     ignore_index=True)


def scored(rows: pd.DataFrame, *, seed: int, planted) -> pd.DataFrame:
    """Scores of an average model (defects higher on average) with a planted gap: rows where
    ``planted(rows)`` is true score like the other class."""
    rng = np.random.default_rng(seed)
    is_defect = (rows["label"] != "PASS").to_numpy()
    scores = np.where(is_defect, rng.normal(0.65, 0.1, len(rows)), rng.normal(0.35, 0.1, len(rows)))
    gap = planted(rows).to_numpy()
    scores[gap & ~is_defect] = rng.normal(0.8, 0.05, int((gap & ~is_defect).sum()))  # confident false alarms
    scores[gap & is_defect] = rng.normal(0.15, 0.05, int((gap & is_defect).sum()))  # confidently missed
    return rows.assign(siamese_score=np.clip(scores, 0, 1))


def test_a_component_type_with_false_alarms_is_found_as_a_metadata_mode(kpi_rows):
    comp_type = kpi_rows.loc[kpi_rows["label"] == "PASS", "comp_type_1"].value_counts().index[1]
    frame = scored(kpi_rows, seed=0, planted=lambda rows: (rows["comp_type_1"] == comp_type) & (rows["label"] == "PASS"))
    result = fm.find_modes(frame, target_far_pct=5.0, settings=SETTINGS)
    top = result.modes[0]
    assert top["definition"] == {"comp_type_1": comp_type} and top["kind"] == "metadata"
    assert top["lift"] >= SETTINGS.min_lift and top["p_value"] <= top["p_adjusted"] < 0.05
    planted_pass = int(((frame["comp_type_1"] == comp_type) & (frame["label"] == "PASS")).sum())
    assert top["size"] == min(planted_pass, SETTINGS.weak_per_side)
    assert top["false_alarm_share"] == top["share"] > 0.3 and top["missed_share"] == 0.0
    assert len(top["examples"]) == min(SETTINGS.examples, top["size"])
    assert all(example["label"] == "PASS" for example in top["examples"])


def test_a_missed_defect_label_is_found_on_the_missed_side(kpi_rows):
    defects = kpi_rows.loc[kpi_rows["label"] != "PASS", "label"].value_counts()
    label = defects.index[0]
    frame = scored(kpi_rows, seed=1, planted=lambda rows: rows["label"] == label)
    result = fm.find_modes(frame, target_far_pct=5.0, settings=fm.ModeSettings(min_failures=2, seed=1))
    missed = [mode for mode in result.modes if mode["side"] == fm.MISSED and mode["kind"] == "metadata"]
    # the label (or a column fully confounded with it in this workspace) and exactly its rows
    (column, value), = missed[0]["definition"].items()
    members = result.targets.loc[result.targets["failure_mode"] == missed[0]["id"], "object_name"]
    assert set(members) == set(frame.loc[frame["label"] == label, "object_name"])
    assert column == "label" and value == label  # label comes first among equally good columns
    # every weak row is in exactly one mode and the weights of all modes add up to 1
    assert (result.targets["failure_mode"] != "").all()
    assert sum(mode["size"] for mode in result.modes) == len(result.targets)
    assert sum(mode["weight"] for mode in result.modes) == pytest.approx(1.0)


def test_missed_weight_splits_the_routing_weight_between_the_sides(kpi_rows):
    defects = kpi_rows.loc[kpi_rows["label"] != "PASS", "label"].value_counts()
    frame = scored(kpi_rows, seed=1, planted=lambda rows: rows["label"] == defects.index[0])
    weights = {}
    for missed_weight in (0.5, 0.8):
        settings = fm.ModeSettings(min_failures=2, seed=1, missed_weight=missed_weight)
        modes = fm.find_modes(frame, target_far_pct=5.0, settings=settings).modes
        assert {mode["side"] for mode in modes} == {fm.MISSED, fm.FALSE_ALARM}
        weights[missed_weight] = {side: sum(m["weight"] for m in modes if m["side"] == side)
                                  for side in (fm.MISSED, fm.FALSE_ALARM)}
        # the modes and their shares do not move, only the weight routing reads
        assert sum(m["share"] for m in modes if m["side"] == fm.MISSED) == pytest.approx(1.0)
    assert weights[0.5][fm.MISSED] == pytest.approx(0.5) and weights[0.5][fm.FALSE_ALARM] == pytest.approx(0.5)
    assert weights[0.8][fm.MISSED] == pytest.approx(0.8) and weights[0.8][fm.FALSE_ALARM] == pytest.approx(0.2)


def test_no_planted_gap_gives_no_metadata_mode(kpi_rows):
    frame = scored(kpi_rows, seed=2, planted=lambda rows: rows["label"] == "__none__")
    result = fm.find_modes(frame, target_far_pct=5.0, settings=SETTINGS)
    assert not [mode for mode in result.modes if mode["kind"] == "metadata"]


def test_a_gap_without_a_metadata_column_is_found_as_an_embedding_cluster():
    rng = np.random.default_rng(3)
    n_pass, n_defect = 200, 40
    labels = ["PASS"] * n_pass + ["SHIFT"] * n_defect
    frame = pd.DataFrame({"input_path": "kpi/test", "golden_path": "kpi/golden", "label": labels,
                          "object_name": [f"o{i}" for i in range(n_pass + n_defect)],
                          "boardname": rng.choice(["B1", "B2"], n_pass + n_defect)})
    scores = np.where(frame["label"] == "PASS", rng.normal(0.3, 0.1, len(frame)), rng.normal(0.7, 0.05, len(frame)))
    hidden = np.zeros(len(frame), bool)
    hidden[:30] = True  # e.g. dust on the test board: no CSV column says so, the model's features do
    scores[hidden] = rng.normal(0.85, 0.03, 30)
    frame["siamese_score"] = scores
    embeddings = rng.normal(0, 1, (len(frame), 16))
    embeddings[hidden] += 6 * np.eye(16)[0]
    keys = frame["input_path"] + "/" + frame["object_name"]
    result = fm.find_modes(frame, target_far_pct=5.0, settings=SETTINGS, embeddings=embeddings, embedding_keys=keys)
    clusters = [mode for mode in result.modes if mode["kind"] == "embedding_cluster" and mode["side"] == fm.FALSE_ALARM]
    members = {m["id"]: set(result.targets.loc[result.targets["failure_mode"] == m["id"], "object_name"]) for m in clusters}
    hidden_names = {f"o{i}" for i in range(30)}
    best = max(members.values(), key=lambda names: len(names & hidden_names))
    assert len(best & hidden_names) >= 25 and len(best - hidden_names) <= 3


def test_missed_side_uses_the_target_far_threshold():
    frame = pd.DataFrame({"input_path": "k", "golden_path": "g", "label": ["PASS"] * 10 + ["SHIFT"] * 4,
                          "object_name": [f"o{i}" for i in range(14)],
                          "siamese_score": [0.1 * i for i in range(10)] + [0.95, 0.85, 0.55, 0.05]})
    weak, operating, _ = fm.weak_rows(frame, target_far_pct=10.0, settings=fm.ModeSettings(near_margin=0.0))
    # FAR <= 10% of 10 PASS rows allows one false alarm: threshold = the second-highest PASS score 0.8
    assert operating["target_threshold"] == pytest.approx(0.8)
    assert set(weak.loc[weak["side"] == fm.MISSED, "object_name"]) == {"o12", "o13"}
    assert operating["missed_at_target"] == 2 and operating["kpi_threshold"] == 0.0  # the PASS score under 0.05
    missed = weak[weak["side"] == fm.MISSED].set_index("object_name")
    assert missed.at["o13", "severity"] == 0.0 and 0 < missed.at["o12", "severity"] < 1


def test_bad_columns_and_foreign_embeddings_are_input_errors(kpi_rows):
    frame = scored(kpi_rows, seed=0, planted=lambda rows: rows["label"] == "__none__")
    with pytest.raises(InputError, match="comp_typ.*not columns"):
        fm.find_modes(frame, target_far_pct=5.0, settings=SETTINGS, columns=["comp_typ"])
    with pytest.raises(InputError, match="computed from another"):
        fm.find_modes(frame, target_far_pct=5.0, settings=SETTINGS, embeddings=np.ones((2, 4)),
                      embedding_keys=pd.Series(["x/1", "x/2"]))


def test_write_and_read_round_trip(kpi_rows, tmp_path):
    frame = scored(kpi_rows, seed=0, planted=lambda rows: rows["label"] == "__none__")
    result = fm.find_modes(frame, target_far_pct=5.0, settings=SETTINGS)
    fm.write_modes(result, tmp_path, SETTINGS)
    modes, targets = fm.read_modes(tmp_path)
    assert [m["id"] for m in modes] == [m["id"] for m in result.modes]
    assert targets["failure_mode"].tolist() == result.targets["failure_mode"].tolist()


def test_at_far_is_the_highest_recall_within_the_far_budget():
    is_defect = [0] * 20 + [1] * 5
    scores = [i / 20 for i in range(20)] + [0.99, 0.9, 0.6, 0.3, 0.97]
    point = kpi.threshold_sweep(is_defect, scores).at_far(5.0)  # one false alarm of 20 allowed
    assert point.threshold == 0.9 and point.fp == 1
    assert point.tp == 2  # 0.99 and 0.97; the defect at 0.9 ties the PASS row and is not flagged
    assert kpi.threshold_sweep(is_defect, scores).at_far(100.0).recall == 1.0
