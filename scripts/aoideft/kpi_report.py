"""What the evaluation of one scored CSV reports and writes: ``evaluate_frame`` (the KPI point of
``kpi``, the relaxed points, best F1, AUROC, bootstrap intervals, per-label detectability, missed
defects, the deployable point), its files (``write_evaluation``) and ``aoideft evaluate``."""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aoideft import fsutil
from aoideft.csvdata import PASS_LABEL, read_text_csv
from aoideft.errors import InputError
from aoideft.kpi import (
    DEFAULT_BOOTSTRAP,
    INTERVAL_RECALLS,
    KPI_RECALL,
    RELAXED_RECALLS,
    SCORE_COLUMN,
    OperatingPoint,
    auroc,
    bootstrap_far_interval,
    bootstrap_resamples,
    checked_arrays,
    defect_mask,
    flagged,
    operating_point_at_threshold,
    parse_scores,
    require_both_classes,
    selection_score,
    threshold_sweep,
)

METRICS_FILE = "metrics.json"
TABLE_FILE = "recall_far.csv"
PER_LABEL_FILE = "per_label.csv"
MISSED_FILE = "missed_defects.csv"
HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class Evaluation:
    """The KPI evaluation of one scored frame; ``write_evaluation`` writes it to disk."""

    metrics: dict[str, Any]  # what metrics.json holds
    table: pd.DataFrame  # recall-vs-FAR, one row per candidate threshold (recall_far.csv)
    per_label: pd.DataFrame  # score range and detectability per label (per_label.csv)
    missed_defects: pd.DataFrame  # defects not flagged at the KPI / best-F1 / deployable points (missed_defects.csv)
    operating_point: OperatingPoint  # the KPI point (100% recall, threshold chosen on this frame)
    deployable: OperatingPoint | None = None  # the calibration threshold applied to this frame


# ---- per-label, histogram, missed rows ----------------------------------------------------------
def score_histogram(is_defect: Any, scores: Any, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Per-class counts over ``bins`` equal bins spanning [0, 1] (wider if scores fall outside)."""
    is_defect, scores = checked_arrays(is_defect, scores)
    finite = np.isfinite(scores)
    low = min(0.0, float(scores[finite].min())) if finite.any() else 0.0
    high = max(1.0, float(scores[finite].max())) if finite.any() else 1.0
    edges = np.linspace(low, high, bins + 1)
    return {
        "edges": np.round(edges, 12).tolist(),
        "pass": np.histogram(scores[finite & ~is_defect], bins=edges)[0].tolist(),
        "defect": np.histogram(scores[finite & is_defect], bins=edges)[0].tolist(),
        "unscored_pass": int(np.count_nonzero(~finite & ~is_defect)),
        "unscored_defect": int(np.count_nonzero(~finite & is_defect)),
    }


def per_label_summary(labels: pd.Series, scores: np.ndarray, thresholds: dict[str, float]) -> pd.DataFrame:
    """One row per label: count, unscored rows, score min/median/max, and per named threshold the rows
    flagged and (defect labels) whether the label is detectable there: all its rows score above it."""
    data = pd.DataFrame({"label": pd.Series(labels).astype(str).to_numpy(), "score": scores,
                         "unscored": ~np.isfinite(scores)})
    aggregations = {"count": ("score", "size"), "nan_scores": ("unscored", "sum"),
                    "score_min": ("score", "min"), "score_median": ("score", "median"),
                    "score_max": ("score", "max")}
    for name, threshold in thresholds.items():
        data[f"flagged_{name}"] = flagged(scores, threshold)
        aggregations[f"flagged_{name}"] = (f"flagged_{name}", "sum")
    summary = data.groupby("label", sort=True).agg(**aggregations).reset_index()
    summary.insert(1, "is_defect", summary["label"] != PASS_LABEL)
    for name in thresholds:
        detectable = (summary[f"flagged_{name}"] == summary["count"]).astype(object)
        summary[f"detectable_{name}"] = detectable.where(summary["is_defect"], None)
    # Defect labels first (alphabetical), PASS last.
    return summary.sort_values(["is_defect", "label"], ascending=[False, True], kind="stable").reset_index(drop=True)


def missed_defect_rows(frame: pd.DataFrame, is_defect: np.ndarray, scores: np.ndarray,
                       points: dict[str, OperatingPoint]) -> pd.DataFrame:
    """Defect rows not flagged at each named operating point, lowest score first, with their 1-based
    data row and margin (threshold - score: how far at or below the threshold the row scored)."""
    parts = []
    for name, point in points.items():
        missed = is_defect & ~flagged(scores, point.threshold)
        rows = frame.reset_index(drop=True)[missed].copy()
        rows.insert(0, "operating_point", name)
        rows.insert(1, "threshold", point.threshold)
        rows.insert(2, "row", np.flatnonzero(missed) + 1)
        rows.insert(3, "margin", point.threshold - scores[missed])
        parts.append(rows.sort_values("margin", ascending=False, kind="stable"))
    columns = ["operating_point", "threshold", "row", "margin", *frame.columns]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# ---- one frame -> Evaluation -------------------------------------------------------------------
def evaluate_frame(frame: pd.DataFrame, *, score_col: str = SCORE_COLUMN, source: str = "",
                   bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                   calibration_threshold: float | None = None) -> Evaluation:
    """Evaluate an inference frame (rows with ``label`` and ``score_col``).

    ``bootstrap``: resamples requested for the far_pct interval (0 = none; fewer are drawn for huge
    frames, see ``bootstrap_resamples``). ``calibration_threshold``: a threshold calibrated elsewhere
    (validation, 100% recall), applied unchanged here: the ``deployable`` block.
    """
    name = source or "inference CSV"
    missing = [column for column in ("label", score_col) if column not in frame.columns]
    if missing:
        raise InputError(f"{name}: missing column(s) {missing}; the KPI needs 'label' and the model score "
                         f"'{score_col}' (an inference CSV: input rows + {score_col})")
    if frame.empty:
        raise InputError(f"{name}: has no data rows; the KPI needs PASS and defect rows with scores")
    frame = frame.reset_index(drop=True)
    is_defect = defect_mask(frame["label"], source=name)
    scores = parse_scores(frame[score_col], source=name, column=score_col)
    require_both_classes(is_defect, name)
    if not np.isfinite(scores).any():
        raise InputError(f"{name}: no row has a finite {score_col}; re-run inference (the KPI needs scores)")
    if calibration_threshold is not None and not math.isfinite(calibration_threshold):
        raise InputError(f"{name}: calibration threshold must be a finite number, got {calibration_threshold}")

    sweep = threshold_sweep(is_defect, scores)
    kpi_point = sweep.at_recall(KPI_RECALL)
    points = {"recall_100": kpi_point,
              **{key: sweep.at_recall(recall) for key, recall in RELAXED_RECALLS.items()},
              "best_f1": sweep.best_f1()}
    deployable = (None if calibration_threshold is None
                  else operating_point_at_threshold(is_defect, scores, float(calibration_threshold)))
    missed_at = {"recall_100": kpi_point, "best_f1": points["best_f1"],
                 **({"deployable": deployable} if deployable else {})}
    missed = missed_defect_rows(frame, is_defect, scores, missed_at)
    label_thresholds = {"kpi": kpi_point.threshold, **({"deployable": deployable.threshold} if deployable else {})}
    per_label = per_label_summary(frame["label"], scores, label_thresholds)
    resamples = bootstrap_resamples(len(frame), bootstrap)
    intervals = {key: list(bootstrap_far_interval(is_defect, scores, n=resamples, seed=seed, min_recall=recall))
                 for key, recall in INTERVAL_RECALLS.items()} if resamples else {}
    unscored = ~np.isfinite(scores)
    selection = selection_score(is_defect, scores)

    metrics: dict[str, Any] = {
        "source": name,
        "score_column": score_col,
        "n_rows": len(frame),
        "n_pass": kpi_point.tn + kpi_point.fp,
        "n_defect": kpi_point.tp + kpi_point.fn,
        "nan_scores": int(unscored.sum()),
        "nan_scores_pass": int((unscored & ~is_defect).sum()),
        "nan_scores_defect": int((unscored & is_defect).sum()),
        "far_pct": kpi_point.far_pct,
        "threshold": kpi_point.threshold,
        "recall": kpi_point.recall,
        "confusion": {"tp": kpi_point.tp, "fp": kpi_point.fp, "tn": kpi_point.tn, "fn": kpi_point.fn},
        "far_pct_ci95": intervals.get("recall_100"),
        "far_ci95": intervals,
        "selection": {"expected_far_pct": selection.expected_far_pct, "margin": selection.margin,
                      "value": selection.value},
        "bootstrap_resamples": resamples,
        "bootstrap_seed": seed,
        "best_f1": {key: points["best_f1"].as_dict()[key] for key in ("threshold", "f1", "precision", "recall", "far_pct")},
        "far_at_recall_99": points["recall_99"].far_pct,
        "far_at_recall_99_5": points["recall_99_5"].far_pct,
        "far_at_recall_99_9": points["recall_99_9"].far_pct,
        "operating_points": {key: point.as_dict() for key, point in points.items()},
        "auroc": auroc(is_defect, scores),
        "missed_defects": {key: int((missed["operating_point"] == key).sum()) for key in missed_at},
        "candidate_thresholds": len(sweep.thresholds),
        "per_label": _json_records(per_label),
        "score_histogram": score_histogram(is_defect, scores),
    }
    if deployable is not None:
        metrics["deployable"] = {**deployable.as_dict(), "missed": metrics["missed_defects"]["deployable"]}
    return Evaluation(metrics=_json_clean(metrics), table=sweep.table(), per_label=per_label,
                      missed_defects=missed, operating_point=kpi_point, deployable=deployable)


def _json_records(per_label: pd.DataFrame) -> dict[str, dict[str, Any]]:
    records = per_label.set_index("label").to_dict(orient="index")
    return {str(label): {key: _plain(value) for key, value in record.items()} for label, record in records.items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _json_clean(value: Any) -> Any:
    """Numpy scalars to Python, NaN/inf to None: metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {key: _json_clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(item) for item in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_evaluation(evaluation: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, recall_far.csv, per_label.csv, missed_defects.csv (atomically); returns the paths."""
    out = Path(out_dir)
    paths = {"metrics": out / METRICS_FILE, "table": out / TABLE_FILE,
             "per_label": out / PER_LABEL_FILE, "missed_defects": out / MISSED_FILE}
    fsutil.write_json(paths["metrics"], evaluation.metrics)
    fsutil.write_csv(paths["table"], evaluation.table)
    fsutil.write_csv(paths["per_label"], evaluation.per_label)
    fsutil.write_csv(paths["missed_defects"], evaluation.missed_defects)
    return paths


# ---- CLI -------------------------------------------------------------------------------------------
def read_inference_csv(path: str | Path, score_col: str = SCORE_COLUMN) -> pd.DataFrame:
    """Read an inference CSV: every column as text (names like '007' stay as written), scores parsed later."""
    return read_text_csv(path, str(path), expected=f"an inference CSV with 'label' and '{score_col}'")


def format_summary(evaluation: Evaluation) -> str:
    m = evaluation.metrics
    ci = m["far_pct_ci95"]
    ci_text = f" (95% CI {ci[0]:.2f}-{ci[1]:.2f}%, {m['bootstrap_resamples']} resamples)" if ci else ""
    best = m["best_f1"]
    lines = [
        f"{m['source']}: {m['n_rows']} rows ({m['n_pass']} PASS, {m['n_defect']} defect, "
        f"{m['nan_scores']} unscored, flagged at every threshold)",
        f"FAR@100% recall: {m['far_pct']:.2f}% at threshold {m['threshold']:.6g}{ci_text}",
        f"FAR@99.9% recall: {m['far_at_recall_99_9']:.2f}%   FAR@99.5% recall: {m['far_at_recall_99_5']:.2f}%   "
        f"FAR@99% recall: {m['far_at_recall_99']:.2f}%   AUROC {m['auroc']:.4f}",
        f"selection score (expected FAR@100% recall under the bootstrap): {m['selection']['expected_far_pct']:.2f}%, "
        f"margin {m['selection']['margin']:.2f} logits",
        f"best F1 {best['f1']:.4f} at threshold {best['threshold']:.6g} (precision {best['precision']:.4f}, "
        f"recall {best['recall']:.4f}, FAR {best['far_pct']:.2f}%)",
    ]
    if "deployable" in m:
        dep = m["deployable"]
        lines.append(f"deployable (calibrated threshold {dep['threshold']:.6g}): FAR {dep['far_pct']:.2f}% at "
                     f"recall {dep['recall']:.4f} ({dep['missed']} defect(s) missed)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``aoideft evaluate``: FAR@100% recall and the rest of the KPI report for an inference CSV."""
    parser = argparse.ArgumentParser(prog="aoideft evaluate", description=main.__doc__)
    parser.add_argument("--inference", required=True, help="KPI inference CSV (input rows + score column)")
    parser.add_argument("--calibrate-on", help="validation inference CSV: its 100%%-recall threshold is "
                                               "applied unchanged to the KPI CSV (deployable FAR)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="resamples for the 95%% CI (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-col", default=SCORE_COLUMN)
    args = parser.parse_args(argv)
    try:
        calibration = None
        if args.calibrate_on:
            validation = evaluate_frame(read_inference_csv(args.calibrate_on, args.score_col),
                                        score_col=args.score_col, source=args.calibrate_on, bootstrap=0)
            calibration = validation.operating_point.threshold
        evaluation = evaluate_frame(read_inference_csv(args.inference, args.score_col), score_col=args.score_col,
                                    source=args.inference, bootstrap=args.bootstrap, seed=args.seed,
                                    calibration_threshold=calibration)
        paths = write_evaluation(evaluation, args.out)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(evaluation))
    print(f"wrote {', '.join(str(path) for path in paths.values())}")
    return 0
