"""RCA (TAO's ``gap_analysis vcn_aoi``): find the KPI rows the current model is weakest on.

The operating point is the KPI's (FAR at 100% recall, from ``aoideft.kpi``, on every row, so RCA's
threshold is exactly the evaluate stage's). Each row gets a signed *weakness*: its distance from
that threshold in the wrong direction (defect: threshold - score, PASS: score - threshold), so a
positive value means the row is on the wrong side. The top-K weakest rows per label are kept and
expanded to one row per lighting, as TAO's ``kpi_gaps.parquet``.

Unreachable KPI (``unreachable_kpi.txt``; then no routing or mining): the KPI's rule always has a
candidate below the lowest score and counts rows without a finite score as flagged, so 100% recall
is reachable unless no row has a finite score (the threshold is undefined) or kpi reports recall
< 1. A threshold below every PASS score (FAR = 100%) is NOT unreachable: it is the weakest model
DEFT can start from and the loop exists to fix it, so ``metrics.json`` flags it as ``far_is_total``.
Rows without a finite score are counted but never picked as weak samples (there is no distance
to rank them by, and no embedding to mine with).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from aoideft import csvdata, fsutil, kpi
from aoideft.errors import InputError

SCORE_COLUMN = "siamese_score"
PASS_LABEL = "PASS"
REQUIRED_COLUMNS = ("input_path", "golden_path", "label", "object_name", SCORE_COLUMN)
# kpi_gaps.parquet columns come first in this order, then the inference row's other columns.
GAP_COLUMNS = ("filepath", "light", "label", SCORE_COLUMN, "weakness", "misclassified", "row_key")
MIN_RECALL = 1.0

GAPS_FILE = "kpi_gaps.parquet"
THRESHOLD_FILE = "threshold.txt"
METRICS_FILE = "metrics.json"
BREAKDOWN_FILE = "weak_samples_breakdown.txt"
UNREACHABLE_FILE = "unreachable_kpi.txt"


@dataclass(frozen=True)
class RcaResult:
    """Everything RCA found; ``gaps`` is empty when the KPI is unreachable."""

    gaps: pd.DataFrame  # one row per weak sample and light (kpi_gaps.parquet)
    weak: pd.DataFrame  # one row per weak sample, top-K per label, weakest first within a label
    per_label: pd.DataFrame  # one row per label: the readable breakdown
    operating_point: kpi.OperatingPoint | None
    lights: tuple[str, ...]
    top_k_per_label: int
    unscored_rows: dict[str, int]  # {"PASS": n, "defect": n} rows without a finite score (flagged by the KPI)
    unreachable_reason: str | None = None

    @property
    def reachable(self) -> bool:
        return self.unreachable_reason is None

    @property
    def threshold(self) -> float | None:
        return None if self.operating_point is None else float(self.operating_point.threshold)

    @property
    def target_defect_labels(self) -> list[str]:
        """Defect labels with weak rows, the label with the weakest row first (TAO's rca_target_defects)."""
        defects = self.weak[self.weak["label"] != PASS_LABEL]
        order = defects.groupby("label")["weakness"].max().sort_values(ascending=False, kind="stable")
        return [str(label) for label in order.index]

    def metrics(self) -> dict:
        op = self.operating_point
        far_is_total = bool(op is not None and op.fp > 0 and op.tn == 0)
        return {
            "unreachable": not self.reachable,
            "unreachable_reason": self.unreachable_reason,
            "min_recall": MIN_RECALL,
            "threshold": self.threshold,
            "far_pct": None if op is None else float(op.far_pct),
            "recall": None if op is None else float(op.recall),
            "tp": None if op is None else int(op.tp),
            "fp": None if op is None else int(op.fp),
            "tn": None if op is None else int(op.tn),
            "fn": None if op is None else int(op.fn),
            "far_is_total": far_is_total,
            "unscored_rows": self.unscored_rows,
            "top_k_per_label": self.top_k_per_label,
            "lights": list(self.lights),
            "weak_counts_per_label": _counts(self.weak, "label"),
            "misclassified_per_label": {str(row.label): int(row.misclassified)
                                        for row in self.per_label.itertuples() if row.misclassified},
            "target_defects": self.target_defect_labels,
            "gap_rows": len(self.gaps),
        }


def analyse(
    inference: pd.DataFrame,
    *,
    lights: list[str] | tuple[str, ...],
    images_dir: str | Path,
    image_ext: str,
    top_k_per_label: int = 50,
    source: str = "inference CSV",
) -> RcaResult:
    """Sweep the threshold at 100% recall on ``inference`` (input rows + siamese_score) and pick weak rows."""
    if top_k_per_label < 1:
        raise InputError(f"top_k_per_label must be >= 1, got {top_k_per_label}.")
    missing = [column for column in REQUIRED_COLUMNS if column not in inference.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {missing}; RCA needs the inference CSV (input rows + {SCORE_COLUMN}).")
    frame = inference.reset_index(drop=True).copy()
    frame[SCORE_COLUMN] = kpi.parse_scores(frame[SCORE_COLUMN], source=source)
    frame["row_key"] = csvdata.row_key(frame)
    is_defect = np.asarray(kpi.defect_mask(frame["label"], source=source), dtype=bool)
    kpi.require_both_classes(is_defect, source)
    scores = frame[SCORE_COLUMN].to_numpy()
    scored = np.isfinite(scores)
    unscored = {"PASS": int((~scored & ~is_defect).sum()), "defect": int((~scored & is_defect).sum())}
    op = kpi.operating_point_at_recall(is_defect, scores, min_recall=MIN_RECALL)
    empty = RcaResult(*_empty_frames(frame), operating_point=op, lights=tuple(lights),
                      top_k_per_label=top_k_per_label, unscored_rows=unscored)
    if not scored.any() or not np.isfinite(op.threshold):
        return replace(empty, operating_point=None,
                       unreachable_reason=f"no row has a finite {SCORE_COLUMN}, so there is no threshold.")
    if op.recall < MIN_RECALL:
        return replace(empty, unreachable_reason=f"the best operating point reaches recall {op.recall:.4f} < {MIN_RECALL}.")

    frame = frame[scored].copy()
    frame["weakness"] = signed_weakness(is_defect[scored], frame[SCORE_COLUMN].to_numpy(), op.threshold)
    frame["misclassified"] = (frame[SCORE_COLUMN].to_numpy() > op.threshold) != is_defect[scored]
    weak = top_k_weakest(frame, top_k_per_label)
    return replace(
        empty,
        gaps=expand_per_light(weak, lights=lights, images_dir=images_dir, image_ext=image_ext),
        weak=weak,
        per_label=label_breakdown(frame, weak),
    )


def signed_weakness(is_defect: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Distance from ``threshold`` in the wrong direction: > 0 means on the wrong side of it."""
    scores = np.asarray(scores, dtype=float)
    return np.where(np.asarray(is_defect, dtype=bool), threshold - scores, scores - threshold)


def top_k_weakest(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` rows with the largest weakness per label (ties by row key, so the choice is deterministic)."""
    ordered = frame.sort_values(["label", "weakness", "row_key"], ascending=[True, False, True], kind="stable")
    return ordered.groupby("label", sort=False).head(k).reset_index(drop=True)


def expand_per_light(
    weak: pd.DataFrame, *, lights: list[str] | tuple[str, ...], images_dir: str | Path, image_ext: str
) -> pd.DataFrame:
    """One row per (weak row, light) with ``filepath`` = that light's test image, GAP_COLUMNS first."""
    if not lights:
        raise InputError("RCA needs at least one light (the keys of dataset.classify.input_map).")
    expanded = weak.loc[weak.index.repeat(len(lights))].reset_index(drop=True)
    expanded["light"] = list(lights) * len(weak)
    expanded["filepath"] = [
        str(csvdata.image_file(images_dir, rel_dir, name, light, image_ext))
        for rel_dir, name, light in zip(expanded["input_path"], expanded["object_name"], expanded["light"])
    ]
    return expanded[list(GAP_COLUMNS) + [c for c in expanded.columns if c not in GAP_COLUMNS]]


def label_breakdown(scored: pd.DataFrame, weak: pd.DataFrame) -> pd.DataFrame:
    """Per label: rows, weak rows kept, rows on the wrong side of the threshold, score range, weakest row."""
    grouped = scored.groupby("label")
    table = pd.DataFrame({
        "rows": grouped.size(),
        "kept": weak.groupby("label").size(),
        "misclassified": grouped["misclassified"].sum(),
        "score_min": grouped[SCORE_COLUMN].min(),
        "score_max": grouped[SCORE_COLUMN].max(),
        "max_weakness": grouped["weakness"].max(),
    })
    table[["kept", "misclassified"]] = table[["kept", "misclassified"]].fillna(0).astype(int)
    return table.rename_axis("label").reset_index()


def breakdown_text(result: RcaResult) -> str:
    """The readable weak_samples_breakdown.txt."""
    if not result.reachable:
        return f"KPI unreachable: {result.unreachable_reason}\nNo weak samples; routing and mining are skipped.\n"
    op = result.operating_point
    assert op is not None  # a reachable KPI has its operating point
    lines = [
        f"RCA at 100% recall: threshold {op.threshold:.6g}, FAR {op.far_pct:.2f}% "
        f"(FP {op.fp} of {op.fp + op.tn} PASS rows; TP {op.tp}, FN {op.fn}).",
        f"Kept the top {result.top_k_per_label} weakest rows per label, {len(result.lights)} light(s) each "
        f"-> {len(result.gaps)} gap rows. weakness > 0 = on the wrong side of the threshold.",
        f"Target defect labels (weakest first): {', '.join(result.target_defect_labels) or 'none'}",
    ]
    if any(result.unscored_rows.values()):
        lines.append(f"Rows without a finite score (flagged by the KPI rule, never picked as weak): {result.unscored_rows}.")
    table = result.per_label.to_string(index=False, float_format=lambda value: f"{value:.4f}")
    return "\n".join(lines) + "\n\n" + table + "\n"


def write_rca(result: RcaResult, out_dir: str | Path) -> None:
    """Write kpi_gaps.parquet, threshold.txt, metrics.json, weak_samples_breakdown.txt (+ unreachable_kpi.txt)."""
    out = Path(out_dir)
    fsutil.write_parquet(out / GAPS_FILE, result.gaps)
    fsutil.write_text(out / THRESHOLD_FILE, f"{result.threshold!r}\n" if result.reachable else "nan\n")
    fsutil.write_json(out / METRICS_FILE, result.metrics())
    fsutil.write_text(out / BREAKDOWN_FILE, breakdown_text(result))
    unreachable = out / UNREACHABLE_FILE
    if result.reachable:
        unreachable.unlink(missing_ok=True)  # a stale marker from an earlier run would stop the loop
    else:
        fsutil.write_text(unreachable, f"{result.unreachable_reason}\n")


def read_gaps(out_dir: str | Path) -> pd.DataFrame:
    return pd.read_parquet(Path(out_dir) / GAPS_FILE)


def _empty_frames(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(gaps, weak, per_label) with their columns and no rows."""
    weak = frame.iloc[0:0].assign(weakness=pd.Series(dtype=float), misclassified=pd.Series(dtype=bool))
    gaps = weak.assign(light=pd.Series(dtype=str), filepath=pd.Series(dtype=str))
    gaps = gaps[list(GAP_COLUMNS) + [c for c in gaps.columns if c not in GAP_COLUMNS]]
    per_label = pd.DataFrame(columns=["label", "rows", "kept", "misclassified", "score_min", "score_max", "max_weakness"])
    return gaps, weak, per_label


def _counts(frame: pd.DataFrame, column: str) -> dict[str, int]:
    return {str(key): int(value) for key, value in frame[column].value_counts().sort_index().items()}
