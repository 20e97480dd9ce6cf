"""The accept-or-keep gate TAO names ("KPI regression gate") and never defines.

A candidate model (a DEFT iteration's retrain, Phase 3's winner) replaces the incumbent only when it
is better beyond noise where the loop aims, and not worse beyond noise on validation. "Beyond noise"
is a paired, stratified bootstrap: ``resamples`` resamples of the rows (the same defect and PASS
rows for both models), both models' selection key (``kpi.selection_score``) on each; the candidate
is better when its key is lower in at least ``confidence`` of them, worse when it is higher in at
least ``confidence``. Ties count as neither. Deterministic for a seed.

Two bases (``deft.gate.basis``):

- ``validation`` (the default): better on validation; the KPI set plays no part.
- ``targeting``: better on the KPI set's targeting half (the rows RCA, routing and mining already
  read) and not worse on validation. Validation is drawn like the base set, so it holds none of
  the gap content the loop adds; but the loop mines near the targeting rows, so a gain there need
  not generalise: measured, it delivered worse held-out figures than ``validation``
  (benchmarks/README.md, "Gate basis"). The held-out half stays unread either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aoideft import kpi

DEFAULT_CONFIDENCE = 0.8
DEFAULT_RESAMPLES = 1000
BASES = ("targeting", "validation")


@dataclass(frozen=True)
class Comparison:
    """Two models on one set of rows."""

    p_better: float  # share of resamples where the candidate's selection key is lower (better)
    p_worse: float
    incumbent: dict[str, float]  # selection score on the whole set
    candidate: dict[str, float]


@dataclass(frozen=True)
class GateResult:
    accept: bool
    basis: str
    p_better: float  # on validation (kept at the top level: the report and older runs read these)
    p_worse: float
    resamples: int
    confidence: float
    incumbent: dict[str, float]
    candidate: dict[str, float]
    targeting: dict[str, Any] | None  # the same comparison on the KPI targeting half (basis "targeting")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self, candidate: str, incumbent: str) -> str:
        verdict = "accepted" if self.accept else "rejected (incumbent kept)"
        return f"gate: {candidate} {verdict}: " + describe(self.as_dict(), incumbent)


def describe(gate: dict[str, Any], incumbent: str) -> str:
    """A gate decision's evidence in words, from ``GateResult.as_dict()`` (as the decision files keep it)."""
    validation = (f"expected FAR@100% recall {gate['candidate']['expected_far_pct']:.2f}% vs "
                  f"{gate['incumbent']['expected_far_pct']:.2f}%")
    target = gate.get("targeting")
    if not target:
        return (f"better than {incumbent} on validation in {gate['p_better']:.0%} of {gate['resamples']} paired "
                f"bootstrap resamples (needs {gate['confidence']:.0%}); {validation}")
    return (f"better than {incumbent} on the KPI targeting half in {target['p_better']:.0%} of {gate['resamples']} "
            f"paired bootstrap resamples (needs {gate['confidence']:.0%}; expected FAR@100% recall "
            f"{target['candidate']['expected_far_pct']:.2f}% vs {target['incumbent']['expected_far_pct']:.2f}%), "
            f"worse on validation in {gate['p_worse']:.0%} (rejected from {gate['confidence']:.0%}; {validation})")


def _summary(score: kpi.SelectionScore) -> dict[str, float]:
    return {"expected_far_pct": score.expected_far_pct, "margin": score.margin, "far_pct": score.far_pct}


def paired_bootstrap(is_defect: Any, incumbent_scores: Any, candidate_scores: Any, *, resamples: int,
                     seed: int) -> Comparison:
    """Both models' selection keys on the same stratified resamples of one set of rows."""
    is_defect = np.asarray(is_defect, dtype=bool)
    incumbent_scores = np.asarray(incumbent_scores, dtype=np.float64)
    candidate_scores = np.asarray(candidate_scores, dtype=np.float64)
    if not (len(is_defect) == len(incumbent_scores) == len(candidate_scores)):
        raise ValueError("the gate needs both models' scores on the same rows")
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
    return Comparison(p_better=better / resamples, p_worse=worse / resamples,
                      incumbent=_summary(kpi.selection_score(is_defect, incumbent_scores)),
                      candidate=_summary(kpi.selection_score(is_defect, candidate_scores)))


def compare(validation: tuple[Any, Any, Any], targeting: tuple[Any, Any, Any] | None = None, *,
            resamples: int = DEFAULT_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> GateResult:
    """The gate. ``validation`` and ``targeting`` are (is_defect, incumbent scores, candidate scores) on
    the same rows in the same order; without ``targeting`` the basis is validation alone."""
    if resamples < 1 or not 0.5 <= confidence < 1.0:
        raise ValueError(f"need resamples >= 1 and 0.5 <= confidence < 1, got {resamples}, {confidence}")
    on_validation = paired_bootstrap(*validation, resamples=resamples, seed=seed)
    on_targets = None if targeting is None else paired_bootstrap(*targeting, resamples=resamples, seed=seed + 1)
    if on_targets is None:
        accept = on_validation.p_better >= confidence
    else:
        accept = on_targets.p_better >= confidence and on_validation.p_worse < confidence
    return GateResult(accept=accept, basis="validation" if on_targets is None else "targeting",
                      p_better=on_validation.p_better, p_worse=on_validation.p_worse, resamples=resamples,
                      confidence=confidence, incumbent=on_validation.incumbent, candidate=on_validation.candidate,
                      targeting=None if on_targets is None else asdict(on_targets))
