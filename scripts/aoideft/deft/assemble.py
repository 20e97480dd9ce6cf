"""Assemble and validate iteration N's training CSV: the previous training CSV + this iteration's rows.

The combined CSV grows monotonically (rows are only appended; a row whose key is already present is
skipped and counted) and uses ``<run>/images`` as its images_dir, so each row's paths carry a source
prefix: ``workspace/`` (base rows), ``pool/`` (mined rows), ``sdg/iter<N>/...`` (synthetic rows, as
SDG writes them). A provenance CSV has one row per combined row, same order: key, source,
iteration_added, with source in {base_train, previous_iter_train, mining_pool, sdg}. Carried rows stay
``base_train`` and ``sdg``, so the synthetic rows of the provenance are every synthetic row of the
training set (the share the cap in ``trim_to_budget`` limits); carried mined rows become
``previous_iter_train``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from aoideft import csvdata, fsutil
from aoideft.errors import InputError

REQUIRED_COLUMNS = csvdata.REQUIRED_COLUMNS
PROVENANCE_COLUMNS = ("key", "source", "iteration_added")
BASE, PREVIOUS, MINED, SYNTHETIC = "base_train", "previous_iter_train", "mining_pool", "sdg"
NEW_SOURCES = (MINED, SYNTHETIC)  # appended in this order
SOURCE_PREFIX = {BASE: "workspace", MINED: "pool"}  # SDG rows already live under <run>/images/sdg


SKIPPED = "skipped_duplicates"  # provenance.attrs key: per new source, rows skipped as already present


def rebase(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """Prefix ``input_path``/``golden_path`` of rows read from a workspace or pool CSV with ``prefix/``.

    Unconditional on purpose: a user's own folder may well be called ``pool/`` or ``workspace/``, so
    whether a row is already rebased is known from where it came from, never guessed from its path.
    """
    rebased = frame.copy()
    marker = prefix.rstrip("/") + "/"
    for column in ("input_path", "golden_path"):
        rebased[column] = marker + rebased[column].astype(str)
    return rebased


def trim_to_budget(sdg_rows: pd.DataFrame, mined: pd.DataFrame, *, max_new_rows: int, max_synthetic_share: float,
                   previous_rows: int, previous_synthetic_rows: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The one guard on what an iteration adds, whatever routed it: at most ``max_new_rows`` new rows and
    a synthetic share of the combined CSV of at most ``max_synthetic_share``. Surplus is dropped from the
    end (SDG: pre-generated pairs come last; mining: least similar last); returns what was dropped, in words."""
    notes = []
    mined_kept = len(mined)
    sdg_kept = len(sdg_rows)
    if max_synthetic_share < 1.0:
        room = (max_synthetic_share * (previous_rows + mined_kept) - previous_synthetic_rows) / (1 - max_synthetic_share)
        sdg_kept = min(sdg_kept, max(0, math.floor(room + 1e-9)))
        if sdg_kept < len(sdg_rows):
            notes.append(f"dropped {len(sdg_rows) - sdg_kept} synthetic row(s): the synthetic share would exceed "
                         f"{max_synthetic_share:.0%}")
    over = sdg_kept + mined_kept - max_new_rows
    if over > 0:
        cut_sdg = min(over, sdg_kept)
        sdg_kept -= cut_sdg
        mined_kept -= over - cut_sdg
        notes.append(f"dropped {over} row(s) over the budget of {max_new_rows} new rows "
                     f"({cut_sdg} synthetic, {over - cut_sdg} mined)")
    return sdg_rows.iloc[:sdg_kept], mined.iloc[:mined_kept], notes


def assemble(
    previous: pd.DataFrame,
    new_rows: dict[str, pd.DataFrame],
    *,
    iteration: int,
    previous_is_base: bool,
    previous_provenance: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(combined, provenance): previous rows (in order) + new ``mining_pool`` then ``sdg`` rows not yet present.

    ``previous_is_base``: ``previous`` is the workspace's base training CSV (gets the ``workspace/``
    prefix); otherwise it is iteration N-1's combined CSV and ``previous_provenance`` (required then)
    its provenance CSV, which carries each row's source and iteration_added forward.
    ``provenance.attrs["skipped_duplicates"]`` counts, per new source, the rows skipped as present.
    """
    unknown = sorted(set(new_rows) - set(NEW_SOURCES))
    if unknown:
        raise ValueError(f"unknown new-row source(s) {unknown}; expected {NEW_SOURCES}")
    previous = previous.reset_index(drop=True)
    if previous_is_base:
        base = rebase(previous, SOURCE_PREFIX[BASE])
        provenance = [_provenance(base, BASE, 0)]
    else:
        base = previous
        provenance = [_carried_provenance(previous, previous_provenance)]
    parts = [base]
    present = set(csvdata.row_key(base))
    skipped = {}
    for source in NEW_SOURCES:
        frame = new_rows.get(source)
        if frame is None or frame.empty:
            skipped[source] = 0
            continue
        if source in SOURCE_PREFIX:
            frame = rebase(frame, SOURCE_PREFIX[source])
        keys = csvdata.row_key(frame.reset_index(drop=True))
        duplicate = keys.isin(present) | keys.duplicated()
        skipped[source] = int(duplicate.sum())
        kept = frame.reset_index(drop=True)[~duplicate.to_numpy()]
        present.update(keys[~duplicate])
        parts.append(kept)
        provenance.append(_provenance(kept, source, iteration))
    combined = pd.concat(parts, ignore_index=True)
    provenance_frame = pd.concat(provenance, ignore_index=True)
    provenance_frame.attrs[SKIPPED] = skipped
    return combined, provenance_frame


def _provenance(frame: pd.DataFrame, source: str, iteration: int) -> pd.DataFrame:
    return pd.DataFrame({"key": csvdata.row_key(frame).to_numpy(), "source": source, "iteration_added": iteration})


def _carried_provenance(previous: pd.DataFrame, previous_provenance: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of the previous combined CSV: base and synthetic rows keep their source, the rest become
    previous_iter_train."""
    if previous_provenance is None:
        raise ValueError("assemble on a previous combined CSV needs its provenance (previous_provenance=...)")
    keys = csvdata.row_key(previous)
    same_keys = (previous_provenance["key"].astype(str).to_numpy() == keys.to_numpy()).all()
    if len(previous_provenance) != len(previous) or not same_keys:
        raise InputError("the previous combined CSV and its provenance CSV do not list the same rows in the same order; "
                         "re-run the previous iteration's assemble stage.")
    source = previous_provenance["source"].astype(str)
    return pd.DataFrame({
        "key": keys.to_numpy(),
        "source": source.where(source.isin([BASE, SYNTHETIC]), PREVIOUS).to_numpy(),
        "iteration_added": previous_provenance["iteration_added"].astype(int).to_numpy(),
    })


def validate_combined(
    combined: pd.DataFrame,
    *,
    images_dir: str | Path,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    validation: pd.DataFrame,
    kpi: pd.DataFrame,
    validation_images_dir: str | Path | None = None,
    kpi_images_dir: str | Path | None = None,
    source: str = "combined training CSV",
) -> None:
    """Hard stop (InputError) unless the combined CSV is complete, its images exist and nothing leaks.

    Leakage compares rows by their resolved image directory + object_name, so a ``workspace/...`` or
    ``pool/...`` row and a raw validation/KPI row match when they name the same files (the validation
    and KPI CSVs' images_dir defaults to ``<images_dir>/workspace``).
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in combined.columns]
    if missing:
        raise InputError(f"hard stop: {source} lacks required column(s) {missing}; re-run assemble.")
    for column in REQUIRED_COLUMNS:
        empty = combined[column].isna() | (combined[column].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(f"hard stop: {source} row {int(empty.to_numpy().argmax()) + 1} has an empty {column}; "
                             f"fix the rows that stage produced.")
    keys = csvdata.row_key(combined)
    if keys.duplicated().any():
        raise InputError(f"hard stop: {source} lists row {keys[keys.duplicated()].iloc[0]} twice; re-run assemble.")
    csvdata.check_image_files(combined, images_dir=images_dir, lights=lights, image_ext=image_ext, source=source)
    workspace = Path(images_dir) / SOURCE_PREFIX[BASE]
    frames = {
        source: _resolved(combined, images_dir),
        "validation CSV": _resolved(validation, validation_images_dir or workspace),
        "KPI CSV": _resolved(kpi, kpi_images_dir or workspace),
    }
    csvdata.check_no_leakage(frames, [(source, "validation CSV"), (source, "KPI CSV")])


def _resolved(frame: pd.DataFrame, images_dir: str | Path) -> pd.DataFrame:
    """``frame`` with ``input_path`` replaced by its real absolute directory (links followed)."""
    # The root resolved once and each distinct folder once: the same answers as resolving every
    # row's whole path (realpath resolves left to right), without an lstat per component per row.
    root = os.path.realpath(images_dir)
    real: dict[str, str] = {}
    for folder in frame["input_path"]:
        if folder not in real:
            real[folder] = os.path.realpath(os.path.join(root, str(folder)))
    resolved = frame.copy()
    resolved["input_path"] = [real[folder] for folder in frame["input_path"]]
    return resolved


def dataset_paths(out_dir: str | Path, iteration: int) -> tuple[Path, Path]:
    """(combined CSV, provenance CSV) of iteration N under ``out_dir`` (``<run>/iter<N>/dataset``)."""
    out = Path(out_dir)
    return out / f"train_combined_iter{iteration}.csv", out / f"train_combined_iter{iteration}_provenance.csv"


def write_dataset(
    combined: pd.DataFrame,
    provenance: pd.DataFrame,
    out_dir: str | Path,
    iteration: int,
) -> None:
    """The combined CSV, its provenance CSV and ``assemble_summary.json`` (rows per source, skipped rows)."""
    if len(combined) != len(provenance):
        raise ValueError("combined and provenance must have one row each")
    csv_path, provenance_path = dataset_paths(out_dir, iteration)
    fsutil.write_csv(csv_path, combined)
    fsutil.write_csv(provenance_path, provenance[list(PROVENANCE_COLUMNS)])
    added = provenance["iteration_added"] == iteration
    fsutil.write_json(Path(out_dir) / "assemble_summary.json", {
        "iteration": iteration,
        "rows": len(combined),
        "rows_per_source": {s: int((provenance["source"] == s).sum()) for s in (BASE, PREVIOUS, MINED, SYNTHETIC)},
        "added_this_iteration": int(added.sum()),
        "synthetic_rows": int((provenance["key"].astype(str).str.startswith("sdg/")).sum()),
        "skipped_duplicates": provenance.attrs.get(SKIPPED, {}),
    })
