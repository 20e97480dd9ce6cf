"""The KPI, FAR at 100% recall (``far_pct``), and everything reported around it. The only KPI code.

Rule (TAO AOI contract, section 4): a row is predicted defect when ``score > threshold``. Candidate
thresholds are every unique score plus one value just below the minimum. Recall = TP / (TP + FN) over
defect rows, FAR = FP / (FP + TN) over PASS rows. Among candidates whose recall reaches the target
(1.0 for the KPI) the operating point is the highest threshold, which has the lowest FAR;
``far_pct`` = that FAR x 100. The same rule with ``min_recall`` 0.99 / 0.995 / 0.999 gives the relaxed points.

Selection (``selection_score``, the one rule every model choice uses: AutoML, best_val vs latest, the
DEFT gate, pick_best): FAR@100% recall hangs on the single weakest defect, so two models that differ
in one row look far apart and two good ones tie. The selection score is its expectation over
bootstrap resamples of the defect rows, in closed form: the weakest drawn defect is the k-th weakest
with probability ((n-k+1)/n)^n - ((n-k)/n)^n (0.63, 0.23, 0.09, ... for k = 1, 2, 3), so it is the
FAR at each of the weakest few defects, weighted so. Exact ties (both 0: every defect above every
PASS row) go to the larger margin between the weakest defects and the strongest PASS rows.

Defined behaviour:
- ties: rows with equal scores are on the same side of every threshold, so they move together.
- non-finite scores (NaN, inf) are never dropped: they are counted (``nan_scores``) and treated as
  flagged (predicted defect) at every threshold, the conservative choice for inspection (a part the
  model could not score goes to review). For AUROC they rank above every finite score.
- a frame without defect rows or without PASS rows is an InputError: recall or FAR would be 0/0.
- label ``PASS`` (exact) is good, anything else a defect; an empty label or a mis-spelt PASS
  (``pass``, ``Pass``, `` PASS``) is an InputError naming the 1-based data row.

Deployable FAR (contract section 7): TAO picks the threshold on the KPI set itself, which is
optimistic. ``calibration_threshold`` (the 100%-recall threshold of the validation CSV) is applied
unchanged to the KPI set, reporting the FAR it gives, the recall it really reaches and what it misses.

All candidates come from one sort (``np.unique``) and cumulative sums, so a million rows take about
a second. The bootstrap draws rows, so for huge inputs it uses fewer resamples (``bootstrap_resamples``,
recorded in ``metrics.json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from aoideft.csvdata import PASS_LABEL
from aoideft.errors import InputError

SCORE_COLUMN = "siamese_score"
KPI_RECALL = 1.0
RELAXED_RECALLS = {"recall_99": 0.99, "recall_99_5": 0.995, "recall_99_9": 0.999}
# Recall levels whose FAR gets a bootstrap interval (the held-out report's figures).
INTERVAL_RECALLS = {"recall_100": 1.0, "recall_99_9": 0.999, "recall_99_5": 0.995}
MARGIN_ROWS = 5  # rows averaged on each side of the selection margin
DEFAULT_BOOTSTRAP = 1000
CI_LEVEL = 0.95
# Row draws over all bootstrap resamples; above it the resample count shrinks (never below the floor).
BOOTSTRAP_DRAW_BUDGET = 30_000_000
MIN_BOOTSTRAP_RESAMPLES = 100
_DRAWS_PER_CHUNK = 4_000_000  # bounds the memory of one vectorised block of resamples
MAX_LISTED_ROWS = 5

TABLE_COLUMNS = ["threshold", "recall", "far_pct", "tp", "fp", "tn", "fn"]


@dataclass(frozen=True)
class OperatingPoint:
    """Confusion counts at one threshold (defect predicted when score > threshold)."""

    threshold: float
    recall: float
    far_pct: float
    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def from_counts(cls, threshold: float, tp: int, fp: int, n_defect: int, n_pass: int) -> OperatingPoint:
        return cls(threshold=float(threshold), recall=tp / n_defect, far_pct=100.0 * fp / n_pass,
                   tp=int(tp), fp=int(fp), tn=int(n_pass - fp), fn=int(n_defect - tp))

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0.0 when nothing is flagged (scikit-learn's zero_division default)."""
        flagged = self.tp + self.fp
        return self.tp / flagged if flagged else 0.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": self.precision, "f1": self.f1}


@dataclass(frozen=True)
class ThresholdSweep:
    """TP and FP at every candidate threshold, thresholds ascending (so TP and FP never increase)."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_defect: int
    n_pass: int

    def point(self, index: int) -> OperatingPoint:
        return OperatingPoint.from_counts(self.thresholds[index], self.tp[index], self.fp[index],
                                          self.n_defect, self.n_pass)

    def at_recall(self, min_recall: float = KPI_RECALL) -> OperatingPoint:
        """The highest threshold whose recall is >= ``min_recall`` (the lowest candidate always is)."""
        if not 0.0 < min_recall <= 1.0:
            raise ValueError(f"min_recall must be in (0, 1], got {min_recall}")
        # Integer TP target, so 0.995 * 200 defects needs 199 TP without float round-off surprises.
        needed = math.ceil(min_recall * self.n_defect - 1e-9)
        return self.point(int(np.flatnonzero(self.tp >= needed)[-1]))

    def at_far(self, max_far_pct: float) -> OperatingPoint:
        """The lowest threshold whose FAR is <= ``max_far_pct`` (the highest recall at that FAR budget)."""
        if not 0.0 <= max_far_pct <= 100.0:
            raise ValueError(f"max_far_pct must be in [0, 100], got {max_far_pct}")
        allowed = math.floor(max_far_pct / 100.0 * self.n_pass + 1e-9)
        within = np.flatnonzero(self.fp <= allowed)
        # Unscored PASS rows are always flagged; if they alone exceed the budget, the top candidate is closest.
        return self.point(int(within[0]) if len(within) else len(self.thresholds) - 1)

    def best_f1(self) -> OperatingPoint:
        """The candidate with the highest F1; among equal F1 the highest threshold (fewest alarms)."""
        f1 = 2 * self.tp / (2 * self.tp + self.fp + (self.n_defect - self.tp))
        return self.point(len(f1) - 1 - int(np.argmax(f1[::-1])))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({
            "threshold": self.thresholds,
            "recall": self.tp / self.n_defect,
            "far_pct": 100.0 * self.fp / self.n_pass,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.n_pass - self.fp,
            "fn": self.n_defect - self.tp,
        }, columns=TABLE_COLUMNS)


# ---- inputs ----------------------------------------------------------------------------------
def defect_mask(labels: Sequence[Any] | pd.Series | np.ndarray, source: str = "") -> np.ndarray:
    """True for defect rows: any label other than the literal ``PASS``.

    An empty label or a mis-spelt PASS would silently count as a defect, so both are InputErrors
    naming ``source`` and the 1-based data rows.
    """
    series = pd.Series(labels).reset_index(drop=True)
    name = source or "labels"
    # Check the distinct values, not every row: a million rows have a handful of labels.
    distinct = pd.unique(series)
    empty = [value for value in distinct if pd.isna(value) or str(value).strip() == ""]
    if empty:
        raise InputError(f"{name}: empty label at {_row_listing(series.isin(empty) | series.isna())}; "
                         f"every row needs a label ('{PASS_LABEL}' or a defect name)")
    misspelt = [value for value in distinct if str(value) != PASS_LABEL and str(value).strip().upper() == PASS_LABEL]
    if misspelt:
        rows = series.isin(misspelt)
        first = series[rows].iloc[0]
        raise InputError(f"{name}: label {first!r} at {_row_listing(rows)} is not the literal "
                         f"'{PASS_LABEL}'; use '{PASS_LABEL}' for good parts (any other label is a defect)")
    return (series.astype(str) != PASS_LABEL).to_numpy(dtype=bool)


def parse_scores(values: pd.Series, *, source: str = "", column: str = SCORE_COLUMN) -> np.ndarray:
    """Scores as float64; empty / 'nan' cells become NaN (counted later), any other text is an InputError."""
    series = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64)
    numbers = pd.to_numeric(series, errors="coerce")
    blank = series.isna() | series.astype(str).str.strip().str.lower().isin(["", "nan"])
    bad = numbers.isna() & ~blank
    if bad.any():
        raise InputError(f"{source or 'scores'}: {column} {series[bad].iloc[0]!r} at {_row_listing(bad)} "
                         f"is not a number; the column must hold the model's defect probability")
    return numbers.to_numpy(dtype=np.float64)


def require_both_classes(is_defect: np.ndarray, source: str = "") -> None:
    n_defect = int(np.count_nonzero(is_defect))
    n_pass = len(is_defect) - n_defect
    if n_defect == 0 or n_pass == 0:
        missing = "defect rows (every label is PASS)" if n_defect == 0 else "PASS rows"
        raise InputError(f"{source or 'scores'}: has no {missing}; the KPI (FAR at 100% recall) needs both "
                         f"classes ({n_pass} PASS, {n_defect} defect rows found). Use a CSV with PASS and defect rows.")


def _row_listing(mask: pd.Series | np.ndarray) -> str:
    rows = (np.flatnonzero(np.asarray(mask)) + 1).tolist()
    shown = ", ".join(map(str, rows[:MAX_LISTED_ROWS]))
    more = f" ... and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def checked_arrays(is_defect: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    is_defect = np.asarray(is_defect, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if is_defect.shape != scores.shape:
        raise ValueError(f"is_defect has {len(is_defect)} rows but scores has {len(scores)}")
    require_both_classes(is_defect)
    return is_defect, scores


# ---- the sweep and its operating points -------------------------------------------------------
def just_below(value: float) -> float:
    """The extra candidate under the lowest score: 1e-6 below it (relative for big values).

    Far enough to survive float32 rounding when the threshold is deployed as TAO's eval_margin, and
    with no score between it and the minimum it flags exactly the same rows as any lower value.
    """
    return float(value - max(1e-6, abs(value) * 1e-6))


def threshold_sweep(is_defect: Any, scores: Any) -> ThresholdSweep:
    """Counts at every candidate: one sort of the finite scores, then suffix sums per unique value."""
    is_defect, scores = checked_arrays(is_defect, scores)
    finite = np.isfinite(scores)
    unscored_defect = int(np.count_nonzero(~finite & is_defect))
    unscored_pass = int(np.count_nonzero(~finite & ~is_defect))
    values, inverse = np.unique(scores[finite], return_inverse=True)
    if len(values) == 0:  # nothing scored: every row is flagged at any threshold; one NaN candidate
        return ThresholdSweep(np.array([np.nan]), np.array([unscored_defect]), np.array([unscored_pass]),
                              unscored_defect, unscored_pass)
    defects_at = np.bincount(inverse, weights=is_defect[finite], minlength=len(values)).astype(np.int64)
    pass_at = np.bincount(inverse, minlength=len(values)) - defects_at
    # Flagged at candidate values[j] = finite rows scoring above it (suffix after j) + every unscored row.
    tp_above = defects_at[::-1].cumsum()[::-1] - defects_at
    fp_above = pass_at[::-1].cumsum()[::-1] - pass_at
    return ThresholdSweep(
        thresholds=np.concatenate([[just_below(values[0])], values]),
        tp=np.concatenate([[defects_at.sum()], tp_above]) + unscored_defect,
        fp=np.concatenate([[pass_at.sum()], fp_above]) + unscored_pass,
        n_defect=int(np.count_nonzero(is_defect)),
        n_pass=int(np.count_nonzero(~is_defect)),
    )


def operating_point_at_recall(is_defect: Any, scores: Any, min_recall: float = KPI_RECALL) -> OperatingPoint:
    """The highest candidate threshold with recall >= ``min_recall``; with 1.0 that is the KPI point."""
    return threshold_sweep(is_defect, scores).at_recall(min_recall)


def operating_point_at_threshold(is_defect: Any, scores: Any, threshold: float) -> OperatingPoint:
    """Counts at a given threshold (e.g. one calibrated on another CSV); unscored rows are flagged."""
    if not math.isfinite(threshold):
        raise InputError(f"threshold must be a finite number, got {threshold}")
    is_defect, scores = checked_arrays(is_defect, scores)
    alarms = flagged(scores, threshold)
    return OperatingPoint.from_counts(threshold, int(np.count_nonzero(alarms & is_defect)),
                                      int(np.count_nonzero(alarms & ~is_defect)),
                                      int(np.count_nonzero(is_defect)), int(np.count_nonzero(~is_defect)))


def flagged(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Rows called defective at ``threshold``: above it, or unscored (never pass what was not scored)."""
    return ~np.isfinite(scores) | (scores > threshold)


def recall_far_table(is_defect: Any, scores: Any) -> pd.DataFrame:
    """One row per candidate threshold (ascending): threshold, recall, far_pct, tp, fp, tn, fn."""
    return threshold_sweep(is_defect, scores).table()


def auroc(is_defect: Any, scores: Any) -> float:
    """Rank-based AUROC (Mann-Whitney U / (n_defect * n_pass)), tied scores get their average rank.

    Unscored rows rank above every finite score (they are flagged at every threshold).
    """
    is_defect, scores = checked_arrays(is_defect, scores)
    ranked = np.where(np.isfinite(scores), scores, np.inf)
    _, inverse, counts = np.unique(ranked, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each tie group
    n_defect = int(np.count_nonzero(is_defect))
    n_pass = len(is_defect) - n_defect
    u_statistic = average_rank[inverse][is_defect].sum() - n_defect * (n_defect + 1) / 2.0
    return float(u_statistic / (n_defect * n_pass))


# ---- bootstrap -----------------------------------------------------------------------------------
def bootstrap_resamples(n_rows: int, requested: int) -> int:
    """Resamples actually drawn: ``requested``, fewer for huge inputs (draw budget), at least the floor."""
    if requested <= 0:
        return 0
    return min(requested, max(MIN_BOOTSTRAP_RESAMPLES, BOOTSTRAP_DRAW_BUDGET // max(n_rows, 1)))


def bootstrap_far_samples(is_defect: Any, scores: Any, n: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                          min_recall: float = KPI_RECALL) -> np.ndarray:
    """FAR (%) at ``min_recall`` of ``n`` stratified resamples (the operating point redone on each);
    see ``paired_bootstrap_far_samples``, of which this is the one-model case."""
    return paired_bootstrap_far_samples(is_defect, [scores], n=n, seed=seed, min_recall=min_recall)[0]


def paired_bootstrap_far_samples(is_defect: Any, score_sets: Sequence[Any], n: int = DEFAULT_BOOTSTRAP,
                                 seed: int = 0, min_recall: float = KPI_RECALL) -> np.ndarray:
    """FAR (%) at ``min_recall`` of ``n`` stratified resamples, the same resampled rows for every model
    of ``score_sets`` (scores of the same rows): [models, n]. The first model's samples do not depend
    on the others.

    Each resample draws n_defect defect rows and n_pass PASS rows with replacement. With m = the
    defects it may miss (n_defect - ceil(min_recall * n_defect)), its operating point is the highest
    candidate below its (m+1)-th lowest drawn defect score s (unscored defects never constrain it:
    they are always flagged), and no candidate lies between that threshold and s, so its false alarms
    are exactly its PASS draws scoring >= s, plus unscored PASS draws. PASS rows are drawn as positions
    in the first model's sorted order, so for it one searchsorted per resample counts them.
    """
    is_defect = np.asarray(is_defect, dtype=bool).ravel()
    ranked = [np.where(np.isfinite(s), s, np.inf) for _, s in (checked_arrays(is_defect, scores) for scores in score_sets)]
    order = np.argsort(ranked[0][~is_defect], kind="stable")
    pass_ordered = [values[~is_defect][order] for values in ranked]  # the first model's are sorted
    defect_scores = [values[is_defect] for values in ranked]
    n_defect, n_pass = len(defect_scores[0]), len(order)
    misses = n_defect - math.ceil(min_recall * n_defect - 1e-9)
    rng = np.random.default_rng(seed)
    samples = np.empty((len(ranked), n), dtype=np.float64)
    per_chunk = max(1, _DRAWS_PER_CHUNK // (n_defect + n_pass))
    for start in range(0, n, per_chunk):
        size = min(per_chunk, n - start)
        defect_draws = rng.integers(0, n_defect, size=(size, n_defect))
        weakest_kept = [np.partition(d[defect_draws], misses, axis=1)[:, misses] if misses
                        else d[defect_draws].min(axis=1) for d in defect_scores]
        pass_draws = rng.integers(0, n_pass, size=(size, n_pass))
        first_flagged = np.searchsorted(pass_ordered[0], weakest_kept[0], side="left")
        false_alarms = [np.count_nonzero(pass_draws >= first_flagged[:, None], axis=1)]
        false_alarms += [np.count_nonzero(passes[pass_draws] >= kept[:, None], axis=1)
                         for passes, kept in zip(pass_ordered[1:], weakest_kept[1:])]
        samples[:, start:start + size] = 100.0 * np.asarray(false_alarms) / n_pass
    return samples


def bootstrap_far_difference(is_defect: Any, scores: Any, reference_scores: Any, n: int = DEFAULT_BOOTSTRAP,
                             seed: int = 0, level: float = CI_LEVEL, min_recall: float = KPI_RECALL) -> dict[str, float]:
    """FAR (%) at ``min_recall`` of ``scores`` minus that of ``reference_scores`` on the same rows (pp):
    the difference itself, a paired percentile interval and the share of resamples where it is < 0."""
    if n < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n >= 1 and 0 < level < 1, got n={n}, level={level}")
    point = (operating_point_at_recall(is_defect, scores, min_recall).far_pct
             - operating_point_at_recall(is_defect, reference_scores, min_recall).far_pct)
    model, reference = paired_bootstrap_far_samples(is_defect, [scores, reference_scores], n=n, seed=seed,
                                                    min_recall=min_recall)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(model - reference, [tail, 1.0 - tail])
    return {"difference_pp": float(point), "low": float(low), "high": float(high),
            "p_lower": float(np.mean(model < reference)), "resamples": n}


def bootstrap_far_interval(is_defect: Any, scores: Any, n: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                           level: float = CI_LEVEL, min_recall: float = KPI_RECALL) -> tuple[float, float]:
    """Percentile interval of the bootstrap FAR at ``min_recall`` (seeded: the same inputs give the
    same interval).

    FAR at 100% recall hangs on the weakest defect, and a resample's weakest defect is never weaker than
    the full set's, so the bootstrap distribution leans low: read the interval as sampling spread.
    """
    if n < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n >= 1 and 0 < level < 1, got n={n}, level={level}")
    tail = (1.0 - level) / 2.0
    samples = bootstrap_far_samples(is_defect, scores, n=n, seed=seed, min_recall=min_recall)
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


# ---- selection ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelectionScore:
    """How good a model's scores are for choosing between models: lower ``key`` is better."""

    expected_far_pct: float  # E[FAR@100% recall] over bootstrap resamples of the defects (closed form)
    margin: float  # mean logit of the weakest defects minus that of the strongest PASS rows
    far_pct: float  # FAR@100% recall itself, for reference

    @property
    def key(self) -> tuple[float, float]:
        return (self.expected_far_pct, -self.margin)

    @property
    def value(self) -> float:
        """One number with the key's order, for samplers that need a scalar (AutoML): the expected FAR,
        or when it is 0 the margin mapped into (-1, 0)."""
        if self.expected_far_pct > 0:
            return self.expected_far_pct
        return -self.margin / (1.0 + abs(self.margin))


def validation_metrics(is_defect: Any, scores: Any) -> dict[str, float]:
    """What a training run records per validation: the KPI point and the selection score."""
    point = operating_point_at_recall(is_defect, scores)
    selection = selection_score(is_defect, scores)
    return {"val_far_pct": float(point.far_pct), "val_threshold": float(point.threshold),
            "val_selection": float(selection.value), "val_expected_far_pct": float(selection.expected_far_pct),
            "val_margin": float(selection.margin)}


def validation_order(metrics: dict[str, Any]) -> tuple[float, ...]:
    """Sort key of ``validation_metrics`` records, best first: the selection key, then ``val_loss``."""
    loss = metrics.get("val_loss")
    return (metrics["val_expected_far_pct"], -metrics["val_margin"], math.inf if loss is None else loss)


def _logits(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    return np.log(clipped / (1.0 - clipped))


def selection_score(is_defect: Any, scores: Any) -> SelectionScore:
    """The selection rule (module docstring): E[FAR@100% recall] under the bootstrap, then the margin."""
    is_defect, scores = checked_arrays(is_defect, scores)
    ranked = np.where(np.isfinite(scores), scores, np.inf)  # unscored rows are flagged: never constrain
    defects = np.sort(ranked[is_defect])
    passes = np.sort(ranked[~is_defect])
    n = len(defects)
    k = np.arange(1, n + 1)
    weight = ((n - k + 1) / n) ** n - ((n - k) / n) ** n  # P(the weakest drawn defect is the k-th weakest)
    far_at_k = 100.0 * (len(passes) - np.searchsorted(passes, defects, side="left")) / len(passes)
    weak = _logits(np.where(np.isfinite(defects[:MARGIN_ROWS]), defects[:MARGIN_ROWS], 1.0)).mean()
    strong = _logits(np.where(np.isfinite(passes[-MARGIN_ROWS:]), passes[-MARGIN_ROWS:], 1.0)).mean()
    return SelectionScore(expected_far_pct=float(np.dot(weight, far_at_k)), margin=float(weak - strong),
                          far_pct=float(far_at_k[0]))
