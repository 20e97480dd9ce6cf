"""Small statistics the report shows beside the KPI's own figures (``aoideft.kpi``): an interval for a
proportion at a fixed threshold, and score histograms with logit-spaced bins."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from .charts import SCORE_EPS, logit

HISTOGRAM_BINS = 24


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (0-1): the FAR or the recall at a threshold fixed before
    looking at the rows (the deploy threshold), where each row is one Bernoulli draw. None for 0 trials."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials or not 0 < level < 1:
        raise ValueError(f"need 0 <= successes <= trials and 0 < level < 1, got {successes}, {trials}, {level}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == trials else min(1.0, centre + half)


def logit_histogram(is_defect: Any, scores: Any, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Per-class counts over ``bins`` bins evenly spaced in log-odds between the lowest and the highest
    finite score (clipped into (1e-6, 1 - 1e-6)), so scores crowded near 0 or 1 spread over the axis.
    Unscored (NaN) rows are counted apart."""
    is_defect = np.asarray(is_defect, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores)
    clipped = np.clip(scores[finite], SCORE_EPS, 1 - SCORE_EPS)
    low, high = (float(clipped.min()), float(clipped.max())) if len(clipped) else (0.01, 0.99)
    lo, hi = logit(low), logit(high)
    if hi - lo < 0.2:  # (nearly) one score: a window around it
        lo, hi = lo - 0.1, hi + 0.1
    edges = 1.0 / (1.0 + np.exp(-np.linspace(lo, hi, bins + 1)))
    edges[0], edges[-1] = min(edges[0], low), max(edges[-1], high)  # the extremes stay inside after rounding
    finite_defect = is_defect[finite]
    return {
        "edges": edges.tolist(),
        "pass": np.histogram(clipped[~finite_defect], bins=edges)[0].tolist(),
        "defect": np.histogram(clipped[finite_defect], bins=edges)[0].tolist(),
        "unscored_pass": int(np.count_nonzero(~finite & ~is_defect)),
        "unscored_defect": int(np.count_nonzero(~finite & is_defect)),
    }
