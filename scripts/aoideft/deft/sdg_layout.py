"""Where SDG writes and what its rows carry: the iteration's folders and object names, the columns of
a synthetic row, the metadata it takes from its source row."""

from __future__ import annotations

import pandas as pd

PASS_LABEL = "PASS"
MANDATORY_COLUMNS = ("input_path", "golden_path", "label", "object_name")
SDG_COLUMNS = ("sdg_source", "sdg_target", "sdg_method", "sdg_donor", "sdg_mode", "sdg_strength", "sdg_change")
# Metadata a synthetic row must not inherit from its source row (per-stage outputs, not sample facts).
NOT_METADATA = frozenset(MANDATORY_COLUMNS) | frozenset(SDG_COLUMNS) | {
    "row_key", "siamese_score", "weakness", "misclassified", "filepath", "light",
    "similarity", "target_key", "target_label", "drop_reason", "failure_mode", "side", "severity", "mode_quota",
}


def sdg_dirs(iteration: int) -> tuple[str, str]:
    """(input_path, golden_path) of iteration N's synthetic rows, relative to ``<run>/images``."""
    return f"sdg/iter{iteration}/test", f"sdg/iter{iteration}/golden"


def sdg_object_name(iteration: int, index: int) -> str:
    return f"sdg_iter{iteration}_{index:04d}"


def metadata(source: pd.Series) -> dict:
    """The sample facts (component type, board, ...) a synthetic row takes from its source row."""
    return {column: value for column, value in source.items() if column not in NOT_METADATA}


def as_rows(rows: list[dict], sources: pd.DataFrame) -> pd.DataFrame:
    """Synthetic rows as a frame: the mandatory columns, the sources' metadata columns, SDG's columns."""
    carried = [c for c in sources.columns if c not in NOT_METADATA]
    return pd.DataFrame(rows, columns=[*MANDATORY_COLUMNS, *carried, *SDG_COLUMNS])

