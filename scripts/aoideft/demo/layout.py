"""Where a demo workspace keeps its files, and its splits: the names the generator, its manifest and
the tests share (``workspace.py`` writes them, ``manifest.py`` documents them)."""

from __future__ import annotations

from dataclasses import dataclass

PASS_LABEL = "PASS"
IMAGE_EXT = ".jpg"
IMAGES_DIR = "images"
SPEC_PATH = "specs/baseline_spec.yaml"
TRUTH_PATH = "demo_truth.csv"
MANIFEST_PATH = "demo_manifest.json"
GAPS_DOC_PATH = "DEMO_GAPS.md"
SYNTHETIC_DIR = "augmentation/synthetic"
SYNTHETIC_TEST_DIR, SYNTHETIC_GOLDEN_DIR = "reconstructed_image", "original_image"
CSV_COLUMNS = ("input_path", "golden_path", "label", "object_name", "boardname", "comp_name", "comp_type_1",
               "part_type", "number_of_pins")


@dataclass(frozen=True)
class Split:
    name: str
    split_id: int  # second seed word of its rows
    csv: str | None  # CSV path in the workspace (None: synthetic pairs)
    gap_level: float  # 0 = base-training distribution, 1 = full gap content
    description: str
    pass_share: float | None = None  # None: DemoConfig.pass_share


SPLITS = (
    Split("train", 0, "train/base/training_set.csv", 0.0, "base training set"),
    Split("val", 1, "train/base/validation_set.csv", 0.5, "validation set (AutoML scoring)"),
    Split("kpi", 2, "kpi/testing_set.csv", 1.0, "KPI test set"),
    Split("pool", 3, "augmentation/mining_pool/mining_pool.csv", 1.0, "labelled mining pool"),
)
SYNTHETIC = Split("synthetic", 4, None, 1.0, "pre-generated synthetic NG/OK pairs", pass_share=0.25)
