"""Golden/test pictures for the report: a row's light images side by side, as base64 PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .. import csvdata
from ..decode_cache import eight_bit
from ..report import png_base64
from .deft_common import lights_and_ext
from .settings import RunSettings

MAX_SAMPLES_PER_KIND = 3


def _light_strip(images_dir: Path, rel_dir: str, object_name: str, lights: Sequence[str], ext: str) -> np.ndarray:
    tiles = [np.asarray(eight_bit(Image.open(csvdata.image_file(images_dir, rel_dir, object_name, light, ext))).convert("RGB"))
             for light in lights]
    height = min(t.shape[0] for t in tiles)
    return np.concatenate([t[:height] for t in tiles], axis=1)


def pair_images(images_dir: Path, row: Any, lights: Sequence[str], ext: str, caption: str) -> dict[str, str] | None:
    """Golden and test light strips of one row as base64 PNGs; None (with a warning) if an image is gone."""
    try:
        golden = _light_strip(images_dir, row["golden_path"], row["object_name"], lights, ext)
        test = _light_strip(images_dir, row["input_path"], row["object_name"], lights, ext)
    except OSError as error:  # an image removed since the run: skip the picture, not the report
        print(f"WARNING: report: no picture for {caption}: {error}")
        return None
    lights_text = f" (lights left to right: {', '.join(lights)})" if len(lights) > 1 else ""
    return {"caption": caption + lights_text, "golden_png_b64": png_base64(golden), "test_png_b64": png_base64(test)}


def sample_pairs(settings: RunSettings, labels: list[str]) -> list[dict[str, Any]]:
    """A few KPI failures of the baseline and what the first iteration added (synthetic, mined)."""
    run = settings.run_dir
    lights, ext = lights_and_ext(settings)
    samples: list[dict[str, Any]] = []

    def add(frame: pd.DataFrame, images_dir: Path, kind: str, caption: str) -> None:
        for _, row in frame.head(MAX_SAMPLES_PER_KIND).iterrows():
            pair = pair_images(images_dir, row, lights, ext, f"{caption}: {row['label']} {row['object_name']}")
            if pair:
                samples.append({**pair, "kind": kind})

    gaps = run / "baseline" / "rca" / "kpi_gaps.parquet"
    if gaps.is_file():
        weak = pd.read_parquet(gaps)
        weak = weak[weak["misclassified"]] if "misclassified" in weak else weak
        weak = weak.drop_duplicates(subset=["input_path", "object_name"]).sort_values("weakness", ascending=False)
        add(weak, settings.images_dir, "real", "KPI failure at baseline")
    first = next((label for label in labels if label != "baseline"), None)
    if first:
        sdg = run / first / "sdg" / "sdg_rows.csv"
        if sdg.is_file():
            add(pd.read_csv(sdg, dtype=str, keep_default_na=False), settings.run_images, "synthetic", f"SDG {first}")
        mined = run / first / "mining" / "mined_rows.csv"
        if mined.is_file():
            add(pd.read_csv(mined, dtype=str, keep_default_na=False), settings.pool_images_dir, "mined", f"mined {first}")
    return samples
