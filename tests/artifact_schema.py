"""The shape of a run directory's artifacts, to compare runs made different ways (local vs SLURM):
which files exist, JSON/YAML key trees and value types, CSV/Parquet columns and checkpoint keys.
Values are not compared: only what a downstream reader depends on. Numbers in names are folded
(iter1, rec0, step_00013 -> iterN, recN, step_N), so runs with different loop lengths or dataset
sizes compare stage by stage, and an empty list fits any list. Tables keyed by data (labels, sources,
reasons: DATA_KEYED) are compared as mappings, since which keys they have depends on the rows."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import torch
import yaml

# Per-run bookkeeping, not artifacts: Snakemake's metadata, logs, timings, linked image roots.
SKIPPED_TOP = {".snakemake", "logs", "benchmarks", "images", "cache"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
LOCK_SUFFIX = ".lock"
DIGITS = re.compile(r"\d+")
# Count tables whose keys are values from the data: one run's iteration adds no synthetic rows or
# mines no BRIDGE rows where another does, and that is not a change of schema.
DATA_KEYED = {"rows_added_by_source", "per_label", "per_method", "reject_reasons", "quotas", "accepted_per_mode"}
MAPPING = "mapping"


def _fold(name: str) -> str:
    return DIGITS.sub("N", name)


def _shape(value):
    if isinstance(value, dict):
        return {_fold(str(key)): MAPPING if key in DATA_KEYED and isinstance(item, dict) else _shape(item)
                for key, item in value.items()}
    if isinstance(value, list):
        shapes = []
        for item in value:
            shape = _shape(item)
            if shape not in shapes:
                shapes.append(shape)
        return shapes
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def file_shape(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _shape(json.loads(path.read_text()))
    if suffix == ".jsonl":
        return [_shape(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    if suffix in (".yaml", ".yml"):
        return _shape(yaml.safe_load(path.read_text()))
    # Column and key lists are tuples: they must match exactly, not element by element.
    if suffix == ".csv":
        with open(path, newline="") as handle:
            return tuple(next(csv.reader(handle), []))
    if suffix == ".parquet":
        return tuple(pd.read_parquet(path).columns)
    if suffix == ".pth":
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return tuple(sorted(checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
    return "file"


def run_schema(run_dir: Path) -> dict[str, list]:
    """{relative path with iterations folded: the distinct shapes found there} under run_dir."""
    schema: dict[str, list] = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if (rel.parts[0] in SKIPPED_TOP or not path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES
                or path.name.endswith(LOCK_SUFFIX)):
            continue
        shapes = schema.setdefault(_fold(rel.as_posix()), [])
        shape = file_shape(path)
        if shape not in shapes:
            shapes.append(shape)
    return schema


def _fits(shape, reference) -> bool:
    """Whether `shape` is one `reference` allows: same keys, list items each like some item."""
    if isinstance(reference, dict):
        return (isinstance(shape, dict) and shape.keys() == reference.keys()
                and all(_fits(shape[key], reference[key]) for key in reference))
    if isinstance(reference, list):
        return isinstance(shape, list) and all(any(_fits(item, ref) for ref in reference) for item in shape)
    return shape == reference


def schema_differences(reference: dict[str, list], other: dict[str, list]) -> list[str]:
    """What `other` lacks, adds, or shapes differently from `reference`; empty when it matches."""
    problems = [f"missing: {p}" for p in sorted(set(reference) - set(other))]
    problems += [f"unexpected: {p}" for p in sorted(set(other) - set(reference))]
    problems += [f"shape differs: {p}" for p in sorted(set(reference) & set(other))
                 if not all(any(_fits(shape, ref) for ref in reference[p]) for shape in other[p])]
    return problems
