"""SDG verification: the current model scores and embeds the candidates; those that teach nothing
are rejected (and their images deleted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aoideft import csvdata

PASS_LABEL = "PASS"


@dataclass(frozen=True)
class VerifyRules:
    """When a synthetic pair teaches nothing: see ``verify``."""

    pass_threshold: float  # the KPI threshold (100% recall): PASS pairs far below it are already right
    defect_threshold: float  # the target-FAR threshold: defects far above it are already caught
    margin: float = 0.15
    near_duplicate_cosine: float = 0.995
    min_change: float = 0.5  # mean |test - golden| in grey levels, worst light


def verify(candidates: pd.DataFrame, scores: np.ndarray, embeddings: np.ndarray, rules: VerifyRules,
           quotas: dict[str, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accepted, rejected + reject_reason/reject_detail) in candidate order, scored by the current model.

    Rejected, in this order: no visible change; a defect the model scores ``margin`` above the
    defect threshold or a PASS pair ``margin`` below the PASS threshold (the model already gets it
    right with a wide margin); a near-duplicate (embedding cosine >= ``near_duplicate_cosine``) of
    an accepted pair; surplus beyond its mode's quota (``quotas`` by ``sdg_mode``).
    """
    if len(candidates) != len(scores) or len(candidates) != len(embeddings):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores and {len(embeddings)} embeddings")
    frame = candidates.reset_index(drop=True).assign(sdg_score=np.asarray(scores, dtype=float))
    vectors = np.asarray(embeddings, dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    is_pass = (frame["label"] == PASS_LABEL).to_numpy()
    accepted: list[int] = []
    taken: dict[str, int] = {}
    rejected: dict[int, tuple[str, str]] = {}  # row -> (reason code, detail)
    for i, row in frame.iterrows():
        score, mode, change = float(row["sdg_score"]), str(row.get("sdg_mode", "")), float(row["sdg_change"])
        similarity = vectors[accepted] @ vectors[i] if accepted else np.zeros(1)
        if change < rules.min_change:
            rejected[i] = ("no_visible_change", f"mean |test - golden| {change:.2f} < {rules.min_change}")
        elif is_pass[i] and score <= rules.pass_threshold - rules.margin:
            rejected[i] = ("already_passed", f"score {score:.3f} <= {rules.pass_threshold - rules.margin:.3f}")
        elif not is_pass[i] and score >= rules.defect_threshold + rules.margin:
            rejected[i] = ("already_flagged", f"score {score:.3f} >= {rules.defect_threshold + rules.margin:.3f}")
        elif similarity.max() >= rules.near_duplicate_cosine:
            twin = frame.at[accepted[int(similarity.argmax())], "object_name"]
            rejected[i] = ("near_duplicate", f"of {twin} (cosine {similarity.max():.4f})")
        elif quotas is not None and taken.get(mode, 0) >= quotas.get(mode, 0):
            rejected[i] = ("surplus", f"mode {mode} already has its {quotas.get(mode, 0)} pair(s)")
        else:
            accepted.append(i)
            taken[mode] = taken.get(mode, 0) + 1
    order = sorted(rejected)
    rejected_rows = frame.loc[order].assign(reject_reason=[rejected[i][0] for i in order],
                                           reject_detail=[rejected[i][1] for i in order])
    return frame.loc[accepted].drop(columns="sdg_score").reset_index(drop=True), rejected_rows.reset_index(drop=True)


def delete_pairs(rows: pd.DataFrame, *, run_images_root: str | Path, lights, image_ext: str) -> None:
    """Remove the images of synthetic ``rows`` (rejected candidates) from this iteration's SDG folders."""
    for row in rows.itertuples():
        for rel_dir in (row.input_path, row.golden_path):
            for light in lights:
                csvdata.image_file(run_images_root, rel_dir, row.object_name, light, image_ext).unlink(missing_ok=True)
