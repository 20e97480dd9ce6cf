"""Failure modes: where the model's weak KPI rows concentrate, by metadata value and by embedding cluster.

TAO's RCA ranks weak rows per label only. Here the weak rows of each *side* are grouped:

- false alarms: PASS rows flagged at the KPI operating point (the 100%-recall threshold), plus PASS
  rows within ``near_margin`` below it;
- missed defects: defect rows NOT flagged at the target-FAR threshold (the threshold that meets the
  KPI's FAR target; these are the defects that force the threshold down), plus defects within
  ``near_margin`` above it.

Each side keeps its ``weak_per_side`` weakest rows (furthest on the wrong side). A *metadata mode*
is one column value (``comp_type_1 = SOT23``, ``label = BRIDGE``, ``boardname = ...``) that is
over-represented among a side's weak rows compared with all KPI rows of that class: lift >=
``min_lift``, at least ``min_failures`` rows, and a one-sided hypergeometric p-value < ``max_p``
after a Bonferroni adjustment for the number of values tried.
Modes are taken greedily, best weighted relative accuracy first (share of the side's unassigned
weak rows minus share of the class), so every weak row belongs to one mode. Rows no metadata value
explains are clustered in the current model's embedding space (k-means on unit vectors, k of best
silhouette; no clusters when no k reaches a silhouette of 0.25); clusters smaller than
``min_failures`` and rows without embeddings form one residual mode per side.

A mode's ``share`` is its fraction of the side's weak rows (``false_alarm_share`` or
``missed_share``); its routing ``weight`` is that share times its side's part when both sides have
weak rows (``missed_weight`` for missed defects, the rest for false alarms; ``deft.budget.defect_share``),
so the weights of all modes sum to 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aoideft import csvdata, fsutil, kpi
from aoideft.errors import InputError

FALSE_ALARM, MISSED = "false_alarm", "missed"
SCORE_COLUMN = kpi.SCORE_COLUMN
# CSV columns that identify a row or an image, never a condition shared by rows.
NOT_CONDITIONS = frozenset({"input_path", "golden_path", "object_name", SCORE_COLUMN, "row_key", "filepath",
                            "comp_name"})
MODES_FILE = "failure_modes.json"
TARGETS_FILE = "failure_mode_targets.parquet"
RESIDUAL = "residual"


@dataclass(frozen=True)
class ModeSettings:
    weak_per_side: int = 60
    near_margin: float = 0.02
    min_failures: int = 3
    min_lift: float = 1.5
    max_p: float = 0.05
    max_values: int = 25  # columns with more distinct values are identifiers, not conditions
    max_clusters: int = 4
    examples: int = 4
    missed_weight: float = 0.5  # the missed side's part of the routing weight when both sides have weak rows
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int, missed_weight: float) -> ModeSettings:
        return cls(**{key: value for key, value in config.items() if key != "columns"}, seed=seed,
                   missed_weight=missed_weight)


@dataclass(frozen=True)
class FailureModes:
    modes: list[dict]  # largest first, residual modes last; see mode_record
    targets: pd.DataFrame  # one row per weak KPI row: its columns + side, weakness, severity, failure_mode
    operating: dict  # thresholds and counts of both sides
    columns: list[str]  # metadata columns examined

    def as_json(self) -> dict:
        return {"operating": self.operating, "columns": self.columns, "modes": self.modes}


def weak_rows(frame: pd.DataFrame, *, target_far_pct: float, settings: ModeSettings,
              source: str = "inference CSV") -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """(the weak rows of both sides with ``side``, ``weakness`` and ``severity``; the operating points;
    every scored row with ``is_defect``, the population the metadata lift compares against)."""
    scored = frame.reset_index(drop=True).copy()
    scored[SCORE_COLUMN] = kpi.parse_scores(scored[SCORE_COLUMN], source=source)
    scored["row_key"] = csvdata.row_key(scored)
    is_defect = np.asarray(kpi.defect_mask(scored["label"], source=source), dtype=bool)
    scores = scored[SCORE_COLUMN].to_numpy()
    sweep = kpi.threshold_sweep(is_defect, scores)
    at_recall, at_target = sweep.at_recall(kpi.KPI_RECALL), sweep.at_far(target_far_pct)
    finite = np.isfinite(scores)
    sides = {
        FALSE_ALARM: (~is_defect & finite, scores - at_recall.threshold),
        MISSED: (is_defect & finite, at_target.threshold - scores),
    }
    parts = []
    for side, (members, weakness) in sides.items():
        near = members & (weakness > -settings.near_margin)
        part = scored[near].assign(side=side, weakness=weakness[near])
        parts.append(part.sort_values(["weakness", "row_key"], ascending=[False, True], kind="stable")
                     .head(settings.weak_per_side))
    weak = pd.concat(parts, ignore_index=True)
    # How clearly a weak defect shows to the model: 0 = scored at the bottom, 1 = at the target threshold.
    defect_scores = scores[is_defect & finite]
    low = float(defect_scores.min()) if len(defect_scores) else 0.0
    span = max(at_target.threshold - low, 1e-9)
    weak["severity"] = np.where(weak["side"] == MISSED,
                                np.clip((weak[SCORE_COLUMN] - low) / span, 0.0, 1.0), np.nan)
    operating = {
        "kpi_threshold": at_recall.threshold, "kpi_far_pct": at_recall.far_pct,
        "target_far_pct": target_far_pct, "target_threshold": at_target.threshold,
        "recall_at_target": at_target.recall,
        "false_alarms": int(at_recall.fp), "missed_at_target": int(at_target.fn),
        "pass_rows": int((~is_defect).sum()), "defect_rows": int(is_defect.sum()),
        "weak_false_alarms": int((weak["side"] == FALSE_ALARM).sum()),
        "weak_missed": int((weak["side"] == MISSED).sum()),
    }
    return weak, operating, scored.assign(is_defect=is_defect)


def condition_columns(frame: pd.DataFrame, max_values: int) -> list[str]:
    """Metadata columns that can define a mode: text columns with 2..max_values distinct values."""
    columns = []
    for column in frame.columns:
        if column in NOT_CONDITIONS or column in ("side", "weakness", "severity", "is_defect"):
            continue
        distinct = frame[column].astype(str).nunique()
        if 2 <= distinct <= max_values:
            columns.append(column)
    return columns


def find_modes(
    inference: pd.DataFrame,
    *,
    target_far_pct: float,
    settings: ModeSettings,
    embeddings: np.ndarray | None = None,
    embedding_keys: pd.Series | None = None,
    columns: list[str] | None = None,
    source: str = "inference CSV",
) -> FailureModes:
    """Group the weak rows of ``inference`` (KPI rows + siamese_score) into failure modes."""
    weak, operating, population = weak_rows(inference, target_far_pct=target_far_pct, settings=settings,
                                            source=source)
    if columns is None:
        columns = condition_columns(population, settings.max_values)
    else:
        unknown = [c for c in columns if c not in population.columns]
        if unknown:
            raise InputError(f"deft.failure_modes.columns: {unknown} are not columns of the {source}; "
                             f"available: {sorted(population.columns)}.")
    weak["failure_mode"] = ""
    vectors = _embeddings_for(weak, embeddings, embedding_keys)
    definitions: list[dict] = []
    for side in (FALSE_ALARM, MISSED):
        side_rows = weak.index[weak["side"] == side]
        if len(side_rows) == 0:
            continue
        in_class = population[population["is_defect"] == (side == MISSED)]
        definitions += _metadata_modes(weak, side_rows, in_class, columns, settings)
        rest = side_rows[weak.loc[side_rows, "failure_mode"] == ""]
        definitions += _cluster_modes(weak, rest, vectors, side, settings)
    modes = [mode_record(d, weak, operating, columns, settings) for d in definitions]
    modes.sort(key=lambda m: (m["kind"] == RESIDUAL, -m["size"], m["side"], m["id"]))
    return FailureModes(modes=modes, targets=weak.reset_index(drop=True), operating=operating, columns=columns)


def _metadata_modes(weak, side_rows, in_class, columns, settings) -> list[dict]:
    side = weak.at[side_rows[0], "side"]
    found = []
    # Bonferroni over every (column, value) of the class that could be tested: many values are tried,
    # so an unadjusted 5% level would report chance groupings as modes.
    tests = sum(in_class[column].astype(str).nunique() for column in columns)
    while True:
        unassigned = side_rows[weak.loc[side_rows, "failure_mode"] == ""]
        best = None
        for column in columns:
            values = weak.loc[unassigned, column].astype(str)
            for value, count in values.value_counts().items():
                if count < settings.min_failures:
                    continue
                test = _over_representation(weak.loc[side_rows, column].astype(str) == value,
                                            in_class[column].astype(str) == value, tests)
                if test["lift"] >= settings.min_lift and test["p_adjusted"] < settings.max_p:
                    # Weighted relative accuracy: the share of the side's weak rows the value would take
                    # minus its share of the class, so a broad value (a board) does not beat the
                    # narrower one (a label on that board) that explains the same failures.
                    quality = count / len(side_rows) - float((in_class[column].astype(str) == value).mean())
                    if best is None or quality > best[0]:
                        best = (quality, column, value, test)
        if best is None:
            return found
        _, column, value, test = best
        mode_id = f"{side}:{column}={value}"
        members = unassigned[weak.loc[unassigned, column].astype(str) == value]
        weak.loc[members, "failure_mode"] = mode_id
        found.append({"id": mode_id, "side": side, "kind": "metadata", "definition": {column: value}, **test})


def _over_representation(in_weak: pd.Series, in_class: pd.Series, tests: int) -> dict:
    """Lift of a value among a side's weak rows vs all rows of that class, its hypergeometric p-value
    and that p-value Bonferroni-adjusted for ``tests`` values tried."""
    weak_n, weak_hits = len(in_weak), int(in_weak.sum())
    class_n, class_hits = len(in_class), int(in_class.sum())
    if weak_n == 0 or class_hits == 0:
        return {"lift": 0.0, "p_value": 1.0, "p_adjusted": 1.0}
    lift = (weak_hits / weak_n) / (class_hits / class_n)
    # P(at least weak_hits of the value among weak_n rows drawn from the class at random).
    from scipy.stats import hypergeom  # here, not at the top: scipy.stats costs ~1 s to import in every DEFT rule

    p_value = float(hypergeom.sf(weak_hits - 1, class_n, class_hits, weak_n))
    return {"lift": float(lift), "p_value": p_value, "p_adjusted": min(1.0, p_value * max(tests, 1))}


def _embeddings_for(weak, embeddings, keys) -> np.ndarray | None:
    if embeddings is None or keys is None:
        return None
    index = {key: i for i, key in enumerate(keys)}
    missing = [key for key in weak["row_key"] if key not in index]
    if missing:
        raise InputError(f"the KPI embeddings have no row for {missing[:3]}: they were computed from another "
                         "CSV; delete the embeddings folder of this iteration and rerun.")
    vectors = np.asarray(embeddings, dtype=np.float64)[[index[key] for key in weak["row_key"]]]
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


MIN_SILHOUETTE = 0.25  # below this mean silhouette the weak rows have no cluster structure worth naming


def silhouette(vectors: np.ndarray, assignment: np.ndarray) -> float:
    """Mean silhouette with cosine distance (vectors are unit length); 0 for a single cluster."""
    labels = np.unique(assignment)
    if len(labels) < 2:
        return 0.0
    distance = 1.0 - vectors @ vectors.T
    values = []
    for i, own in enumerate(assignment):
        same = assignment == own
        if same.sum() == 1:
            values.append(0.0)
            continue
        a = distance[i, same].sum() / (same.sum() - 1)
        b = min(distance[i, assignment == other].mean() for other in labels if other != own)
        values.append((b - a) / max(a, b, 1e-12))
    return float(np.mean(values))


def best_clustering(vectors: np.ndarray, max_clusters: int, seed: int) -> np.ndarray | None:
    """k-means assignment with the k in 2..max_clusters of best silhouette; None without clear structure."""
    best, best_score = None, MIN_SILHOUETTE
    for k in range(2, max_clusters + 1):
        from scipy.cluster.vq import kmeans2  # only RCA clusters: see hypergeom above

        _, assignment = kmeans2(vectors, k, minit="++", seed=seed)
        score = silhouette(vectors, assignment)
        if score > best_score:
            best, best_score = assignment, score
    return best


def _cluster_modes(weak, rest, vectors, side, settings) -> list[dict]:
    """k-means clusters of the unexplained weak rows; small clusters go to the side's residual mode."""
    found = []
    max_clusters = min(settings.max_clusters, len(rest) // settings.min_failures)
    assignment = None
    if vectors is not None and max_clusters >= 2:
        assignment = best_clustering(vectors[rest], max_clusters, settings.seed)
    if assignment is not None:
        for cluster in np.unique(assignment):
            members = rest[assignment == cluster]
            if len(members) >= settings.min_failures:
                mode_id = f"{side}:cluster{len(found) + 1}"
                weak.loc[members, "failure_mode"] = mode_id
                found.append({"id": mode_id, "side": side, "kind": "embedding_cluster",
                              "definition": {"cluster": len(found) + 1}})
    leftover = rest[weak.loc[rest, "failure_mode"] == ""]
    if len(leftover):
        mode_id = f"{side}:{RESIDUAL}"
        weak.loc[leftover, "failure_mode"] = mode_id
        found.append({"id": mode_id, "side": side, "kind": RESIDUAL, "definition": {}})
    return found


def mode_record(definition: dict, weak: pd.DataFrame, operating: dict, columns: list[str],
                settings: ModeSettings) -> dict:
    """Size, shares, routing weight, labels, dominant metadata and example rows of one mode."""
    members = weak[weak["failure_mode"] == definition["id"]]
    side = definition["side"]
    side_total = int((weak["side"] == side).sum())
    if weak["side"].nunique() == 1:
        side_part = 1.0
    else:
        side_part = settings.missed_weight if side == MISSED else 1.0 - settings.missed_weight
    share = len(members) / side_total
    dominant = {}
    for column in columns:
        counts = members[column].astype(str).value_counts()
        if len(counts):
            dominant[column] = {"value": str(counts.index[0]), "fraction": float(counts.iloc[0] / len(members))}
    examples = members.head(settings.examples)
    return {
        **definition,
        "description": describe(definition),
        "size": len(members),
        "share": share,
        "false_alarm_share": share if side == FALSE_ALARM else 0.0,
        "missed_share": share if side == MISSED else 0.0,
        "weight": share * side_part,
        "labels": {str(k): int(v) for k, v in members["label"].value_counts().sort_index().items()},
        "mean_weakness": float(members["weakness"].mean()),
        "mean_severity": None if side == FALSE_ALARM else float(members["severity"].mean()),
        "dominant": dominant,
        "examples": [{"row_key": r.row_key, "label": r.label, "score": float(getattr(r, SCORE_COLUMN)),
                      "input_path": r.input_path, "golden_path": r.golden_path, "object_name": r.object_name}
                     for r in examples.itertuples()],
    }


def describe(definition: dict) -> str:
    what = "false alarms" if definition["side"] == FALSE_ALARM else "missed defects"
    if definition["kind"] == "metadata":
        (column, value), = definition["definition"].items()
        return f"{what} with {column} = {value}"
    if definition["kind"] == "embedding_cluster":
        return f"{what}, embedding cluster {definition['definition']['cluster']}"
    return f"{what} not explained by a metadata value or a cluster"


def write_modes(result: FailureModes, out_dir: str | Path, settings: ModeSettings) -> None:
    """``failure_modes.json`` and ``failure_mode_targets.parquet`` beside TAO's RCA outputs."""
    out = Path(out_dir)
    fsutil.write_json(out / MODES_FILE, {**result.as_json(), "settings": asdict(settings)})
    fsutil.write_parquet(out / TARGETS_FILE, result.targets)


def read_modes(out_dir: str | Path) -> tuple[list[dict], pd.DataFrame]:
    out = Path(out_dir)
    return fsutil.read_json(out / MODES_FILE)["modes"], pd.read_parquet(out / TARGETS_FILE)
