"""The one walk over the DEFT loop's decision and gate files."""

from aoideft.workflow.loop import walk_loop

GO = {"stop": False, "reason": "continue"}
PASSED = {"hard_stop": False}


def test_walk_stops_at_the_first_stop_decision():
    decisions = {"baseline": GO, "iter1": GO, "iter2": {"stop": True, "reason": "max_iterations"}}
    walk = walk_loop(decisions.__getitem__, lambda n: PASSED)
    assert walk.labels == ["baseline", "iter1", "iter2"]
    assert walk.decision["reason"] == "max_iterations" and walk.hard_gate is None
    assert walk.files() == ["baseline/decision.json", "iter1/decision.json", "iter2/decision.json"]


def test_a_hard_stopping_gate_ends_the_walk_before_its_iteration_counts():
    gates = {1: PASSED, 2: {"hard_stop": True, "reason": "added no rows"}}
    walk = walk_loop({"baseline": GO, "iter1": GO}.__getitem__, gates.__getitem__)
    assert walk.labels == ["baseline", "iter1"] and walk.hard_stop_iteration == 2
    assert walk.files()[-1] == "iter2/dataset/gate.json"


def test_kpi_met_at_the_baseline_runs_no_iteration():
    walk = walk_loop({"baseline": {"stop": True, "reason": "kpi_met"}}.__getitem__, lambda n: PASSED)
    assert walk.labels == ["baseline"] and walk.files() == ["baseline/decision.json"]
