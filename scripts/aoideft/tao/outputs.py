"""TAO's outputs read back into the files the embedded backend writes.

Formats, from NVIDIA's tao_pytorch_backend sources (nvidia_tao_pytorch/core/loggers/api_logging.py,
core/callbacks/loggers.py, core/callbacks/model_checkpoint.py and Visual ChangeNet's classify
Lightning module cn_pl_model.py):

- ``<results_dir>/status.json``: one JSON object per line with ``date, time, status, verbosity,
  message`` and, once set, a ``kpi`` dict that the logger repeats on every later line until it is set
  again. Classify training sets ``{train_loss, train_acc, train_fpr}`` at each epoch's end and
  ``{val_loss, val_acc, val_fpr}`` after each validation; the status callback adds lines with
  ``epoch`` (1-based count) and ``max_epoch``. ``status`` ends as ``SUCCESS`` or ``FAILURE``.
- checkpoints ``model_epoch_<EEE>_step_<SSS>.pth`` (0-based epoch, global step), plus a
  ``*_latest.pth`` link to the newest.
- inference: ``<results_dir>/inference.csv`` = the input CSV's rows + ``siamese_score``.
TAO's ``val_fpr`` is a false-alarm rate at ``eval_margin``, not our FAR at 100% recall: it is kept
as ``tao_val_fpr`` and never mixed with ``val_far_pct``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import fsutil
from ..checkpoint import CHECKPOINT_NAME
from ..inference import SCORE_COLUMN

STATUS_FILE = "status.json"
# TAO's kpi names -> the names of the embedded trainer's metrics.jsonl
TRAIN_KEYS = {"train_loss": "loss", "train_acc": "accuracy", "train_fpr": "tao_train_fpr"}
VAL_KEYS = {"val_loss": "val_loss", "val_acc": "val_accuracy", "val_fpr": "tao_val_fpr"}
ROW_KEYS = ("input_path", "object_name")


class TaoRunError(RuntimeError):
    """A TAO action failed or left outputs this workflow cannot read; the message names the files."""


def read_status(path: Path) -> list[dict[str, Any]]:
    """The records of a TAO status.json (blank or cut-off lines, e.g. of a killed job, are skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def final_status(records: list[dict[str, Any]]) -> tuple[str | None, str]:
    """(status, message) of the last record: TAO's verdict on the action."""
    if not records:
        return None, ""
    return records[-1].get("status"), str(records[-1].get("message", ""))


def epoch_history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trained epoch: ``epoch`` (0-based), loss/accuracy and, after a validation, val_*.

    Training metrics close an epoch; a validation inside an epoch belongs to the epoch still open.
    Lines of the epoch callback and a kpi the logger merely repeats are not new measurements.
    """
    rows: list[dict[str, Any]] = []
    pending_val: dict[str, Any] = {}
    last_kpi: dict[str, Any] | None = None
    for record in records:
        kpi = record.get("kpi")
        if "epoch" in record or not isinstance(kpi, dict) or kpi == last_kpi:
            continue
        last_kpi = kpi
        if "train_loss" in kpi:
            row = {"epoch": len(rows), **{ours: kpi[theirs] for theirs, ours in TRAIN_KEYS.items() if theirs in kpi}}
            rows.append({**row, **pending_val})
            pending_val = {}
        elif "val_loss" in kpi:
            pending_val = {ours: kpi[theirs] for theirs, ours in VAL_KEYS.items() if theirs in kpi}
    return rows


def epochs_counted(records: list[dict[str, Any]]) -> int:
    """The epoch callback's own count of finished epochs (0 when it wrote none)."""
    return max((int(r["epoch"]) for r in records if isinstance(r.get("epoch"), int)), default=0)


@dataclass(frozen=True)
class TaoCheckpoint:
    path: Path
    epoch: int
    step: int


def find_checkpoints(results_dir: Path) -> list[TaoCheckpoint]:
    """TAO's epoch checkpoints in ``results_dir`` (regular files; the ``*_latest`` links are skipped),
    oldest first."""
    found = []
    for path in Path(results_dir).iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append(TaoCheckpoint(path, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda c: (c.step, c.epoch))


def attach_scores(rows: pd.DataFrame, tao_csv: Path, out_csv: Path) -> pd.DataFrame:
    """``out_csv`` = ``rows`` (the input CSV, as the embedded backend reads it) + TAO's siamese_score.

    TAO writes the rows it read in their order; a different count or a row that does not match is a
    TAO-side problem and stops here rather than pairing a score with the wrong image.
    """
    if not tao_csv.is_file():
        raise TaoRunError(f"TAO inference wrote no {tao_csv}; see this job's log and "
                          f"{tao_csv.parent / STATUS_FILE}")
    scored = pd.read_csv(tao_csv, dtype=str, keep_default_na=False)
    if SCORE_COLUMN not in scored.columns:
        raise TaoRunError(f"{tao_csv} has no {SCORE_COLUMN} column (columns: {', '.join(scored.columns)})")
    if len(scored) != len(rows):
        raise TaoRunError(f"{tao_csv} has {len(scored)} rows but its input CSV has {len(rows)}")
    for column in ROW_KEYS:
        if column in scored.columns:
            theirs, ours = scored[column].str.strip(), rows[column].str.strip()
            # TAO reads the CSV with pandas' type guessing: "007" comes back as "7", the same row.
            as_numbers = pd.to_numeric(theirs, errors="coerce") == pd.to_numeric(ours, errors="coerce")
            differs = np.flatnonzero(~((theirs == ours) | as_numbers).to_numpy())
            if len(differs):
                row = int(differs[0])
                raise TaoRunError(f"{tao_csv} row {row + 1}: {column} {scored[column].iloc[row]!r} does not match "
                                  f"the input CSV's {rows[column].iloc[row]!r}; TAO reordered or changed rows")
    out = rows.copy()
    out[SCORE_COLUMN] = pd.to_numeric(scored[SCORE_COLUMN], errors="coerce").to_numpy(dtype=float)
    fsutil.write_csv(out_csv, out)
    return out

