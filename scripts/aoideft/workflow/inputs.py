"""Checks of the user's workspace: spec, CSVs, images and leakage, before any compute is spent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import csvdata, fsutil, pair_content, spec as tao_spec, spec_settings
from ..decode_cache import SIXTEEN_BIT_MODES
from ..errors import InputError
from ..pair_content import LEAKAGE_PAIRS, PoolContent
from .settings import RunSettings

PINNED_SOURCE = "config automl.pinned"


@dataclass
class WorkspaceReport:
    spec: dict[str, Any]
    spec_notes: list[str]
    lights: tuple[str, ...]
    image_ext: str
    frames: dict[str, pd.DataFrame] = field(repr=False)
    # By content and path (None when the image files were not read: check_files=False).
    pool: PoolContent | None = None
    notes: list[str] = field(default_factory=list)  # what the pre-flight changed or noticed, for any backend

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
    """Validate everything a run reads; raise one InputError naming the file, row or key.

    With ``check_files`` every image file is read (not decoded): the image checks, leakage and
    duplicates by content (pair_content) and the pool's exclusions.
    """
    if not settings.workspace.is_dir():
        raise InputError(
            f"workspace {settings.workspace} does not exist: set `workspace` in the config to your "
            "TAO AOI workspace, or set demo.generate: true to generate the embedded demo there"
        )
    if not settings.spec_path.is_file():
        raise InputError(f"{settings.spec_path}: spec file not found (config key `spec`)")
    spec = tao_spec.load_spec(settings.spec_path)
    spec_notes = tao_spec.validate_spec(spec, str(settings.spec_path))
    train, notes = run_spec_settings(settings, spec)
    frames, images = {}, {}
    sources = {name: f"{name} CSV ({csv_path})" for name, (csv_path, _) in csv_sources(settings).items()}
    for name, (csv_path, images_dir) in csv_sources(settings).items():
        frames[name] = csvdata.read_pairs_csv(csv_path, images_dir=images_dir, lights=train.lights,
                                              image_ext=train.image_ext, check_files=False, source=f"{name} CSV")
        if check_files:
            images[name] = csvdata.check_image_files(frames[name], images_dir=images_dir, lights=train.lights,
                                                     image_ext=train.image_ext, source=sources[name])
    for name in ("validation", "kpi"):
        defects = csvdata.defect_labels(frames[name])
        if defects.sum() == 0 or (defects == 0).sum() == 0:
            raise InputError(
                f"{csv_sources(settings)[name][0]}: the {name} CSV needs both PASS and defect rows "
                "to measure FAR at 100% recall"
            )
    csvdata.check_no_leakage(frames, LEAKAGE_PAIRS)
    pool = None
    if check_files:
        notes += bit_depth_notes(settings, images, sources)
        pool = pair_content.check_content(frames, {name: check.pair_keys for name, check in images.items()}, sources)
        notes += pool.notes
    return WorkspaceReport(
        spec=spec,
        spec_notes=spec_notes,
        lights=tuple(train.lights),
        image_ext=train.image_ext,
        frames=frames,
        pool=pool,
        notes=notes,
    )


def run_spec_settings(settings: RunSettings, spec: dict[str, Any]) -> tuple[spec_settings.TrainSettings, list[str]]:
    """The settings every Phase 1 job trains with (the spec with ``automl.pinned`` applied) and the
    pre-flight's notes on it. A pinned value is checked against TAO's schema like a spec value, and
    the merged spec like a spec (``train.num_epochs: 0`` would otherwise fail every trial later)."""
    pinned = settings.automl["pinned"]
    nested: dict[str, Any] = {}
    for key, value in pinned.items():
        tao_spec.set_dotted(nested, key, value)
    tao_spec.validate_spec(nested, PINNED_SOURCE)
    merged = tao_spec.deep_merge(spec, pinned)
    clamped = tao_spec.clamp_checkpoint_interval(merged)  # what with_overrides does to every job spec
    source = f"{settings.spec_path} with {PINNED_SOURCE}" if pinned else str(settings.spec_path)
    return spec_settings.train_settings(merged, source=source), [clamped] if clamped else []


def bit_depth_notes(settings: RunSettings, images: dict[str, csvdata.ImageCheck], sources: dict[str, str]) -> list[str]:
    """16-bit greyscale images: scaled to 8 bits by the embedded backend (a note); refused for backend
    tao, whose data loader's PIL convert clips every value above 255 to white."""
    counts = {name: sum(n for mode, n in check.modes.items() if mode in SIXTEEN_BIT_MODES)
              for name, check in images.items()}
    found = {name: n for name, n in counts.items() if n}
    if not found:
        return []
    listed = ", ".join(f"{sources[name]} {n}" for name, n in found.items())
    if settings.config["backend"] == "tao":
        raise InputError(f"16-bit greyscale image files ({listed}): TAO's data loader converts them with PIL, "
                         "which clips every value above 255 to white, so TAO would train on blank frames; export "
                         "them as 8-bit (value x 255 / 65535), or use backend embedded, which scales them")
    return [f"16-bit greyscale image files ({listed}): scaled to 8 bits (value x 255 / 65535) when decoded"]


def pool_exclusions(settings: RunSettings) -> set[str]:
    """Row keys of the pool rows mining skips: repeats of a train/validation/KPI pair or of an earlier
    pool pair, by path or content, as workspace_ready recorded them (pair_content)."""
    path = settings.run_dir / "inputs" / "workspace.json"
    record = fsutil.read_json(path)
    if "pool" not in record:
        raise InputError(f"{path} predates the pool's content check, so mining cannot tell which pool rows copy "
                         "a train/validation/KPI pair: start a new run_dir")
    return set(PoolContent.from_json(record["pool"]).excluded)


def fingerprint(settings: RunSettings) -> dict[str, str]:
    """Content hashes of the spec and CSVs, to notice a workspace edited under a running study."""
    files = {"spec": settings.spec_path}
    files.update({name: path for name, (path, _) in csv_sources(settings).items()})
    return {name: fsutil.sha256_file(path) for name, path in files.items() if path.is_file()}
