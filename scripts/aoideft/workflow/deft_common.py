"""What the DEFT loop's rule jobs share: iteration labels, the incumbent, the workspace's lights, the
loop's CSV and embedding readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import csvdata, fsutil, state
from .settings import RunSettings


def prev_label(n: int) -> str:
    return state.iteration_label(n - 1)


def incumbent_before(settings: RunSettings, n: int) -> str:
    """The model iteration n builds on: the incumbent after iteration n - 1's decision (with the gate
    off, or when n - 1 was accepted, that is iteration n - 1 itself)."""
    return fsutil.read_json(settings.run_dir / prev_label(n) / "decision.json")["incumbent"]


def lights_and_ext(settings: RunSettings) -> tuple[tuple[str, ...], str]:
    record = fsutil.read_json(settings.run_dir / "inputs" / "workspace.json")
    return tuple(record["lights"]), record["image_ext"]


def read_pairs(csv_path: Path, images_dir: Path, settings: RunSettings, source: str,
               check_files: bool = False) -> pd.DataFrame:
    lights, ext = lights_and_ext(settings)
    return csvdata.read_pairs_csv(csv_path, images_dir=images_dir, lights=lights, image_ext=ext,
                                  check_files=check_files, source=source)


def read_embeddings(npy: Path) -> tuple[np.ndarray, pd.Series]:
    """Memory-mapped embeddings (the k-NN reads them in chunks) and their row keys."""
    keys = pd.read_csv(csvdata.embedding_keys_path(npy), dtype=str, keep_default_na=False)
    return np.load(npy, mmap_mode="r", allow_pickle=False), csvdata.row_key(keys)


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"
