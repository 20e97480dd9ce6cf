"""Checks of the user's workspace: spec, CSVs, images and leakage, before any compute is spent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import csvdata, fsutil, spec as tao_spec
from ..errors import InputError
from .settings import RunSettings

# Pairs that must never share a row (contract section 2): a hard stop.
LEAKAGE_PAIRS = [("train", "validation"), ("train", "kpi"), ("validation", "kpi")]


@dataclass
class WorkspaceReport:
    spec: dict[str, Any]
    spec_notes: list[str]
    lights: tuple[str, ...]
    image_ext: str
    frames: dict[str, pd.DataFrame] = field(repr=False)
    pool_overlaps: dict[str, int] = field(default_factory=dict)

    def dataset_table(self) -> list[dict[str, Any]]:
        rows = []
        for name, frame in self.frames.items():
            defects = csvdata.defect_labels(frame)
            labels = frame["label"].value_counts().to_dict()
            rows.append(
                {
                    "dataset": name,
                    "rows": int(len(frame)),
                    "pass": int((defects == 0).sum()),
                    "defect": int((defects == 1).sum()),
                    "labels": {str(k): int(v) for k, v in sorted(labels.items())},
                }
            )
        return rows


def csv_sources(settings: RunSettings) -> dict[str, tuple[Path, Path]]:
    return {
        "train": (settings.train_csv, settings.images_dir),
        "validation": (settings.validation_csv, settings.images_dir),
        "kpi": (settings.kpi_csv, settings.images_dir),
        "pool": (settings.pool_csv, settings.pool_images_dir),
    }


def check_workspace(settings: RunSettings, *, check_files: bool = True) -> WorkspaceReport:
    """Validate everything a run reads; raise one InputError naming the file, row or key."""
    if not settings.workspace.is_dir():
        raise InputError(
            f"workspace {settings.workspace} does not exist: set `workspace` in the config to your "
            "TAO AOI workspace, or set demo.generate: true to generate the embedded demo there"
        )
    if not settings.spec_path.is_file():
        raise InputError(f"{settings.spec_path}: spec file not found (config key `spec`)")
    spec = tao_spec.load_spec(settings.spec_path)
    notes = tao_spec.validate_spec(spec, str(settings.spec_path))
    train = tao_spec.train_settings(spec)
    frames = {}
    for name, (csv_path, images_dir) in csv_sources(settings).items():
        frames[name] = csvdata.read_pairs_csv(
            csv_path,
            images_dir=images_dir,
            lights=train.lights,
            image_ext=train.image_ext,
            check_files=check_files,
            source=f"{name} CSV",
        )
    for name in ("validation", "kpi"):
        defects = csvdata.defect_labels(frames[name])
        if defects.sum() == 0 or (defects == 0).sum() == 0:
            raise InputError(
                f"{csv_sources(settings)[name][0]}: the {name} CSV needs both PASS and defect rows "
                "to measure FAR at 100% recall"
            )
    csvdata.check_no_leakage(frames, LEAKAGE_PAIRS)
    # Pool rows that repeat validation/KPI rows are excluded by mining; report them, don't stop.
    pool_overlaps = {
        name: int(len(csvdata.find_overlap(frames[name], frames["pool"])))
        for name in ("validation", "kpi")
    }
    return WorkspaceReport(
        spec=spec,
        spec_notes=notes,
        lights=tuple(train.lights),
        image_ext=train.image_ext,
        frames=frames,
        pool_overlaps=pool_overlaps,
    )


def fingerprint(settings: RunSettings) -> dict[str, str]:
    """Content hashes of the spec and CSVs, to notice a workspace edited under a running study."""
    files = {"spec": settings.spec_path}
    files.update({name: path for name, (path, _) in csv_sources(settings).items()})
    return {name: fsutil.sha256_file(path) for name, path in files.items() if path.is_file()}
