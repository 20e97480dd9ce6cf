"""The accept-or-keep gate TAO names ("KPI regression gate") and never defines.

A candidate model (a DEFT iteration's retrain, Phase 3's winner) replaces the incumbent only when it
beats it on the validation set beyond noise. The rule: draw ``resamples`` paired, stratified
bootstrap resamples of the validation rows (the same defect and PASS rows for both models), compute
both models' selection key (``kpi.selection_score``) on each, and accept when the candidate's is
better in at least ``confidence`` of them. Ties count as not better, so two models that both
separate every resample perfectly by the same margin keep the incumbent. Deterministic for a seed.

Validation only: the KPI set plays no part, so the loop's choice of model never looks at the rows
it is judged on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aoideft import kpi

DEFAULT_CONFIDENCE = 0.8
DEFAULT_RESAMPLES = 1000


@dataclass(frozen=True)
class GateResult:
    accept: bool
    p_better: float  # share of resamples where the candidate's selection key is lower (better)
    p_worse: float
    resamples: int
    confidence: float
    incumbent: dict[str, float]  # selection score on the whole validation set
    candidate: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self, candidate: str, incumbent: str) -> str:
        verdict = "accepted" if self.accept else "rejected (incumbent kept)"
        return (f"gate: {candidate} {verdict}: better than {incumbent} on validation in {self.p_better:.0%} of "
                f"{self.resamples} paired bootstrap resamples (needs {self.confidence:.0%}); expected FAR@100% "
                f"recall {self.candidate['expected_far_pct']:.2f}% vs {self.incumbent['expected_far_pct']:.2f}%")


def _summary(score: kpi.SelectionScore) -> dict[str, float]:
    return {"expected_far_pct": score.expected_far_pct, "margin": score.margin, "far_pct": score.far_pct}


def compare(is_defect: Any, incumbent_scores: Any, candidate_scores: Any, *, resamples: int = DEFAULT_RESAMPLES,
            confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> GateResult:
    """The gate on one validation set scored by both models (rows in the same order)."""
    is_defect = np.asarray(is_defect, dtype=bool)
    incumbent_scores = np.asarray(incumbent_scores, dtype=np.float64)
    candidate_scores = np.asarray(candidate_scores, dtype=np.float64)
    if not (len(is_defect) == len(incumbent_scores) == len(candidate_scores)):
        raise ValueError("the gate needs both models' scores on the same validation rows")
    if resamples < 1 or not 0.5 <= confidence < 1.0:
        raise ValueError(f"need resamples >= 1 and 0.5 <= confidence < 1, got {resamples}, {confidence}")
    defects, passes = np.flatnonzero(is_defect), np.flatnonzero(~is_defect)
    rng = np.random.default_rng(seed)
    better = worse = 0
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(defects, len(defects)), rng.choice(passes, len(passes))])
        truth = is_defect[rows]
        incumbent = kpi.selection_score(truth, incumbent_scores[rows]).key
        candidate = kpi.selection_score(truth, candidate_scores[rows]).key
        better += candidate < incumbent
        worse += candidate > incumbent
    p_better, p_worse = better / resamples, worse / resamples
    return GateResult(accept=p_better >= confidence, p_better=p_better, p_worse=p_worse, resamples=resamples,
                      confidence=confidence,
                      incumbent=_summary(kpi.selection_score(is_defect, incumbent_scores)),
                      candidate=_summary(kpi.selection_score(is_defect, candidate_scores)))
