"""Customer pre-generated pairs (``augmentation/synthetic/``): ``reconstructed_image/`` (the defect test
image) and ``original_image/`` (the golden), paired by file stem, labels in ``manifest.csv``; copied
into the iteration's SDG folders once each (history: what earlier iterations ingested)."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from aoideft import csvdata, fsutil
from aoideft.errors import InputError

from .sdg_layout import MANDATORY_COLUMNS, NOT_METADATA, SDG_COLUMNS, sdg_dirs

PREGENERATED_TEST_DIR = "reconstructed_image"
PREGENERATED_GOLDEN_DIR = "original_image"
PREGENERATED_MANIFEST = "manifest.csv"
INGEST_REPORT = "ingest_report"  # key of the ingestion report in the returned frame's ``attrs``


def ingested_before(run_images_root: str | Path, iteration: int, *, lights, image_ext: str) -> set[str]:
    """Object names whose test images earlier iterations wrote under ``sdg/iter<M>/test`` (M < iteration)."""
    names: set[str] = set()
    for test_dir in Path(run_images_root).glob("sdg/iter*/test"):
        match = re.fullmatch(r"iter(\d+)", test_dir.parent.name)
        if match and int(match.group(1)) < iteration:
            names.update(name for name, _ in _split_stems(test_dir, lights, image_ext)[0])
    return names


def pregenerated_to_ingest(
    synthetic_dir: str | Path,
    *,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    history: Collection[str],
    max_pairs: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """(manifest rows of the complete pairs not ingested yet, up to ``max_pairs``; the ingest report).

    The report: ingested (count), already_ingested (names), incomplete ({name: missing files}),
    unlisted (stems without a manifest row), deferred (names beyond ``max_pairs``).
    """
    root = Path(synthetic_dir)
    manifest = _read_manifest(root / PREGENERATED_MANIFEST)
    test_pairs, test_other = _split_stems(root / PREGENERATED_TEST_DIR, lights, image_ext)
    golden_pairs, golden_other = _split_stems(root / PREGENERATED_GOLDEN_DIR, lights, image_ext)
    listed = set(manifest["object_name"])
    unlisted = sorted({f"{n}_{light}" for n, light in test_pairs | golden_pairs if n not in listed} | test_other | golden_other)
    chosen: list = []  # manifest index labels
    skipped, incomplete, deferred = [], {}, []
    for index, entry in manifest.iterrows():
        name = entry["object_name"]
        if name in history:
            skipped.append(name)
            continue
        missing = [f"{folder}/{name}_{light}{image_ext}" for light in lights
                   for folder, present in ((PREGENERATED_TEST_DIR, test_pairs), (PREGENERATED_GOLDEN_DIR, golden_pairs))
                   if (name, light) not in present]
        if missing:
            incomplete[name] = missing
        elif max_pairs is not None and len(chosen) >= max_pairs:
            deferred.append(name)
        else:
            chosen.append(index)
    report = {"ingested": len(chosen), "already_ingested": skipped, "incomplete": incomplete,
              "unlisted": unlisted, "deferred": deferred}
    return manifest.loc[chosen].reset_index(drop=True), report


def ingest_pregenerated(
    synthetic_dir: str | Path,
    *,
    lights: list[str] | tuple[str, ...],
    image_ext: str,
    out_images_root: str | Path,
    iteration: int,
    history: Collection[str] | None = None,
    max_pairs: int | None = None,
) -> pd.DataFrame:
    """Copy complete new pre-generated pairs into ``sdg/iter<N>/`` and return their CSV rows.

    ``history``: object names ingested by earlier iterations (default: found under ``out_images_root``).
    ``max_pairs`` caps one iteration's intake (the rest is deferred to later iterations). What was
    skipped is in ``rows.attrs["ingest_report"]`` (see ``pregenerated_to_ingest``).
    """
    root = Path(synthetic_dir)
    if history is None:
        history = ingested_before(out_images_root, iteration, lights=lights, image_ext=image_ext)
    entries, report = pregenerated_to_ingest(root, lights=lights, image_ext=image_ext, history=history,
                                             max_pairs=max_pairs)
    test_dir, golden_dir = sdg_dirs(iteration)
    out_root = Path(out_images_root)
    rows = []
    for _, entry in entries.iterrows():
        name = entry["object_name"]
        for light in lights:
            for folder, out_dir in ((PREGENERATED_TEST_DIR, test_dir), (PREGENERATED_GOLDEN_DIR, golden_dir)):
                data = csvdata.image_file(root, folder, name, light, image_ext).read_bytes()
                fsutil.write_bytes(csvdata.image_file(out_root, out_dir, name, light, image_ext), data)
        rows.append({**entry.to_dict(), "input_path": test_dir, "golden_path": golden_dir,
                     "sdg_source": f"{PREGENERATED_GOLDEN_DIR}/{name}", "sdg_target": "", "sdg_method": "pregenerated"})
    metadata = [c for c in entries.columns if c not in NOT_METADATA]
    frame = pd.DataFrame(rows, columns=[*MANDATORY_COLUMNS, *metadata, *SDG_COLUMNS])
    frame.attrs[INGEST_REPORT] = report
    return frame


def _read_manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path} does not exist; pre-generated pairs need a manifest.csv with columns object_name,label.")
    manifest = pd.read_csv(path, dtype={"object_name": str, "label": str}, keep_default_na=False)
    missing = [c for c in ("object_name", "label") if c not in manifest.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; the manifest needs object_name,label (+ metadata).")
    for row, (name, label) in enumerate(zip(manifest["object_name"], manifest["label"]), start=1):
        if not name.strip() or not label.strip():
            raise InputError(f"{path} row {row}: empty object_name or label; fill it in or remove the row.")
    duplicated = manifest["object_name"][manifest["object_name"].duplicated()]
    if len(duplicated):
        raise InputError(f"{path}: object_name {duplicated.iloc[0]!r} is listed twice; object names must be unique.")
    return manifest


def _split_stems(folder: Path, lights, image_ext: str) -> tuple[set[tuple[str, str]], set[str]]:
    """(object_name, light) pairs of ``<object_name>_<light><ext>`` files, and stems naming no light."""
    pairs: set[tuple[str, str]] = set()
    other: set[str] = set()
    if not folder.is_dir():
        return pairs, other
    for path in folder.iterdir():
        if path.suffix.lower() != image_ext.lower() or not path.is_file():
            continue
        light = next((light for light in lights if path.stem.endswith(f"_{light}")), None)
        if light is None:
            other.add(path.stem)
        else:
            pairs.add((path.stem[: -len(light) - 1], light))
    return pairs, other
