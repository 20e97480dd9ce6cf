"""The DEFT loop's stop rule: KPI met, unreachable KPI, regression gate, iteration budget."""

import pytest

from aoideft.workflow.deft_jobs import decide_stop

BASE = dict(far_pct=12.0, target=5.0, iteration=1, max_iterations=3, unreachable=False,
            val_far_pct=8.0, best_earlier_val=7.0, regression_tolerance_pp=None)


@pytest.mark.parametrize("changes, reason, stop, hard", [
    ({}, "continue", False, False),
    ({"far_pct": 5.0}, "kpi_met", True, False),
    ({"far_pct": 4.9, "unreachable": True}, "kpi_met", True, False),
    ({"unreachable": True}, "unreachable_kpi", True, True),
    ({"iteration": 3}, "max_iterations", True, False),
    ({"regression_tolerance_pp": 0.5}, "regression", True, False),
    ({"regression_tolerance_pp": 1.0}, "continue", False, False),
    ({"regression_tolerance_pp": 0.5, "iteration": 0}, "continue", False, False),
])
def test_stop_rule(changes, reason, stop, hard):
    decision = decide_stop(**{**BASE, **changes})
    assert (decision["reason"], decision["stop"], decision["hard_stop"]) == (reason, stop, hard)
    assert decision["message"]


def test_regression_gate_message_names_both_figures():
    decision = decide_stop(**{**BASE, "val_far_pct": 9.5, "regression_tolerance_pp": 2.0})
    assert decision["reason"] == "regression"
    assert "9.50%" in decision["message"] and "7.00%" in decision["message"]
