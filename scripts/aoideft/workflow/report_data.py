"""What the report reads of one evaluated model: its evaluate/best.json, the evaluation's metrics per
row set, and its scores on the KPI and validation rows (with the held-out mask), read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import fsutil, holdout, kpi, kpi_report
from .deft_eval_jobs import kpi_halves
from .settings import RunSettings

# Row sets of an evaluation: (key, name in the report, sub-folder of evaluate/<kind>/ holding its metrics).
VALIDATION, WHOLE = "validation", "whole"
SETS = ((VALIDATION, "validation", "validation"), (holdout.TARGETING, "targeting KPI half", holdout.TARGETING),
        (holdout.HELD_OUT, "held-out KPI half", holdout.HELD_OUT), (WHOLE, "whole KPI set", ""))


def maybe_json(path: Path) -> dict[str, Any] | None:
    return fsutil.read_json(path) if path.is_file() else None


@dataclass
class Evaluated:
    """One evaluated model (baseline, iter<N>, final_automl) of a run."""

    settings: RunSettings
    label: str
    best: dict[str, Any]
    _metrics: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: RunSettings, label: str) -> Evaluated | None:
        best = maybe_json(settings.run_dir / label / "evaluate" / "best.json")
        return cls(settings, label, best) if best else None

    @property
    def run(self) -> Path:
        return self.settings.run_dir

    @property
    def has_halves(self) -> bool:
        return bool(self.best.get("kpi_halves"))

    @property
    def basis(self) -> str:
        """The rows every judgement of this run uses: the held-out half, or the whole KPI set."""
        return holdout.HELD_OUT if self.has_halves else WHOLE

    @property
    def deploy_threshold(self) -> float:
        """The threshold this model would ship with: validation-calibrated, or TAO's KPI-set one."""
        if self.best.get("selection_basis") == "validation" and self.best.get("deployable_threshold") is not None:
            return float(self.best["deployable_threshold"])
        return float(self.best["threshold"])

    def metrics(self, set_key: str) -> dict[str, Any] | None:
        """metrics.json of one row set (SETS), None when the evaluation has no such set."""
        if set_key not in self._metrics:
            folder = dict((key, sub) for key, _, sub in SETS)[set_key]
            self._metrics[set_key] = maybe_json(self.run / self.best["evaluation_dir"] / folder / kpi_report.METRICS_FILE)
        return self._metrics[set_key]

    @cached_property
    def kpi_frame(self) -> pd.DataFrame:
        return pd.read_csv(self.run / self.best["inference_csv"], dtype=str, keep_default_na=False)

    @cached_property
    def kpi_scores(self) -> tuple[np.ndarray, np.ndarray]:
        frame = self.kpi_frame
        source = self.best["inference_csv"]
        return kpi.defect_mask(frame["label"], source=source), kpi.parse_scores(frame[kpi.SCORE_COLUMN], source=source)

    @cached_property
    def held_out(self) -> np.ndarray:
        if not self.has_halves:
            return np.zeros(len(self.kpi_frame), dtype=bool)
        return kpi_halves(self.settings, self.kpi_frame)

    @cached_property
    def validation_scores(self) -> tuple[np.ndarray, np.ndarray]:
        source = self.best["validation_inference_csv"]
        frame = pd.read_csv(self.run / source, dtype=str, keep_default_na=False)
        return kpi.defect_mask(frame["label"], source=source), kpi.parse_scores(frame[kpi.SCORE_COLUMN], source=source)

    def rows(self, set_key: str) -> np.ndarray:
        """Mask of the KPI rows of a set (not for validation)."""
        if set_key == holdout.HELD_OUT:
            return self.held_out
        if set_key == holdout.TARGETING:
            return ~self.held_out
        return np.ones(len(self.kpi_frame), dtype=bool)

    def scores_of(self, set_key: str) -> tuple[np.ndarray, np.ndarray]:
        """(is_defect, scores) of a row set."""
        if set_key == VALIDATION:
            return self.validation_scores
        mask = self.rows(set_key)
        is_defect, scores = self.kpi_scores
        return is_defect[mask], scores[mask]

    def set_keys(self) -> list[str]:
        return [key for key, _, _ in SETS if key in (VALIDATION, WHOLE) or self.has_halves]


def set_name(set_key: str) -> str:
    return dict((key, name) for key, name, _ in SETS)[set_key]


def same_rows(a: Evaluated, b: Evaluated) -> bool:
    """Both models scored the same KPI rows in the same order (the KPI CSV's)."""
    return a.kpi_frame["object_name"].equals(b.kpi_frame["object_name"]) and \
        a.kpi_frame["input_path"].equals(b.kpi_frame["input_path"])
