"""The KPI set's split into a targeting half and a held-out half the DEFT loop never reads.

TAO's loop chooses checkpoints and targets its data on the KPI set, so after one iteration the KPI
figure is no longer a clean test. With ``deft.kpi_holdout`` = f > 0 the KPI rows are split once,
deterministically: a row (or, with ``deft.kpi_holdout_group``, every row of a group such as a
board) is held out when a hash of its key falls below f. RCA, routing and mining see only the
targeting rows; the held-out rows are scored and reported, and nothing in the loop reads them.
The hash (BLAKE2b of the key's text) depends on nothing but the key, so every machine, rerun and
tool splits the same CSV the same way.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from aoideft import csvdata
from aoideft.errors import InputError

TARGETING, HELD_OUT = "targeting", "held_out"


def _unit_interval(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def held_out_mask(frame: pd.DataFrame, fraction: float, group_column: str | None = None,
                  source: str = "KPI CSV") -> np.ndarray:
    """True for the held-out rows of ``frame`` (row key, or ``group_column``'s value, hashed)."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"deft.kpi_holdout must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return np.zeros(len(frame), dtype=bool)
    if group_column is not None and group_column not in frame.columns:
        raise InputError(f"{source} has no column {group_column!r} (deft.kpi_holdout_group); use one of "
                         f"{', '.join(map(str, frame.columns))}, or null to split by row")
    keys = frame[group_column].astype(str) if group_column else csvdata.row_key(frame)
    cut = {key: _unit_interval(key) < fraction for key in pd.unique(keys)}
    return keys.map(cut).to_numpy(dtype=bool)


def split_counts(frame: pd.DataFrame, held_out: np.ndarray) -> dict[str, dict[str, int]]:
    """Rows, PASS and defect rows per half (for the pre-flight and the report)."""
    is_pass = (frame["label"].astype(str) == csvdata.PASS_LABEL).to_numpy()
    return {name: {"rows": int(mask.sum()), "pass": int((mask & is_pass).sum()), "defect": int((mask & ~is_pass).sum())}
            for name, mask in ((TARGETING, ~held_out), (HELD_OUT, held_out))}
