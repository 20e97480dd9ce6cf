"""The DEFT loop's stop rule (KPI met, unreachable KPI, iteration budget) and its accept-or-keep gate."""

import numpy as np
import pytest

from aoideft.deft import gate
from aoideft.workflow.deft_eval_jobs import decide_stop

BASE = dict(far_pct=12.0, target=5.0, iteration=1, max_iterations=3, unreachable=False)


@pytest.mark.parametrize("changes, reason, stop, hard", [
    ({}, "continue", False, False),
    ({"far_pct": 5.0}, "kpi_met", True, False),
    ({"far_pct": 4.9, "unreachable": True}, "kpi_met", True, False),
    ({"unreachable": True}, "unreachable_kpi", True, True),
    ({"iteration": 3}, "max_iterations", True, False),
])
def test_stop_rule(changes, reason, stop, hard):
    decision = decide_stop(**{**BASE, **changes})
    assert (decision["reason"], decision["stop"], decision["hard_stop"]) == (reason, stop, hard)
    assert decision["message"]


def _validation(seed: int, defect_shift: float, pass_shift: float, n_defect: int = 40, n_pass: int = 160):
    rng = np.random.default_rng(seed)
    is_defect = np.r_[np.ones(n_defect, bool), np.zeros(n_pass, bool)]
    base = np.r_[rng.uniform(0.3, 1.0, n_defect), rng.uniform(0.0, 0.7, n_pass)]
    shifted = np.clip(base + np.where(is_defect, defect_shift, pass_shift), 0.0, 1.0)
    return is_defect, base, shifted


def test_the_gate_accepts_a_model_better_beyond_noise():
    is_defect, incumbent, candidate = _validation(1, defect_shift=0.15, pass_shift=-0.15)
    result = gate.compare((is_defect, incumbent, candidate), resamples=300, seed=0)
    assert result.accept and result.p_better >= 0.8
    assert result.candidate["expected_far_pct"] < result.incumbent["expected_far_pct"]
    assert "accepted" in result.message("iter1", "baseline")


def test_the_gate_keeps_the_incumbent_against_a_tie_noise_or_a_worse_model():
    is_defect, incumbent, _ = _validation(2, 0.0, 0.0)
    same = gate.compare((is_defect, incumbent, incumbent), resamples=200, seed=0)
    assert not same.accept and same.p_better == 0.0 == same.p_worse  # ties are not better
    rng = np.random.default_rng(5)
    noisy = np.clip(incumbent + rng.normal(0, 0.01, len(incumbent)), 0, 1)  # the same model, reshuffled noise
    assert not gate.compare((is_defect, incumbent, noisy), resamples=300, seed=0).accept
    worse = gate.compare((is_defect, incumbent, np.clip(incumbent + np.where(is_defect, -0.2, 0.2), 0, 1)),
                         resamples=300, seed=0)
    assert not worse.accept and worse.p_worse > 0.9 and "rejected" in worse.message("iter2", "iter1")


def test_the_targeting_gate_needs_a_gain_on_the_targeted_rows_and_no_loss_on_validation():
    validation = _validation(4, 0.0, 0.0)
    clearly_worse = np.clip(validation[1] + np.where(validation[0], -0.2, 0.2), 0, 1)
    targeted, gained = _validation(6, 0.0, 0.0), _validation(6, 0.2, -0.2)[2]
    kept_validation = (validation[0], validation[1], validation[1])  # validation unchanged
    result = gate.compare(kept_validation, (targeted[0], targeted[1], gained), resamples=300, seed=0)
    assert result.accept and result.basis == "targeting" and result.targeting["p_better"] >= 0.8
    assert result.p_worse < 0.8 and "KPI targeting half" in result.message("iter1", "baseline")
    regressed = gate.compare((validation[0], validation[1], clearly_worse), (targeted[0], targeted[1], gained),
                             resamples=300, seed=0)
    assert not regressed.accept and regressed.p_worse >= 0.8
    no_gain = gate.compare(_validation(7, 0.15, -0.15), (targeted[0], targeted[1], targeted[1]), resamples=300, seed=0)
    assert not no_gain.accept and no_gain.p_better >= 0.8  # better on validation alone does not pass this basis


def test_the_gate_is_deterministic_by_seed_and_checks_its_inputs():
    is_defect, incumbent, candidate = _validation(3, 0.02, -0.02)
    first = gate.compare((is_defect, incumbent, candidate), resamples=100, seed=7)
    assert first == gate.compare((is_defect, incumbent, candidate), resamples=100, seed=7)
    with pytest.raises(ValueError, match="same rows"):
        gate.compare((is_defect, incumbent, candidate[:-1]))
    with pytest.raises(ValueError, match="confidence"):
        gate.compare((is_defect, incumbent, candidate), confidence=0.3)
