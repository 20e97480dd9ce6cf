"""The embedded demo AOI workspace in TAO's layout, with deliberate, documented distribution gaps.

Two worlds (``DemoConfig.kind``): ``smt``, assembled boards under two AOI lights (``smt.py``), and
``bare_board``, bare copper under one light (``bare_board.py``); each in a tiny, default and large
preset. ``generate_workspace(out_dir, DemoConfig.from_preset("default", seed=7))`` (or ``aoideft demo
--out DIR [--kind bare_board]``) writes::

    specs/baseline_spec.yaml                    TAO keys; dataset paths relative to the workspace
    train/base/training_set.csv                 small base training set
    train/base/validation_set.csv               follows the base distribution + half the gap rate
    kpi/testing_set.csv                         KPI test set (full gap content)
    augmentation/mining_pool/mining_pool.csv    larger labelled mining pool (full gap content)
    augmentation/synthetic/{reconstructed_image,original_image}/<object_name>_<light>.jpg + manifest.csv
    images/<split>/<board>/{test,golden}/<object_name>_<light>.jpg
    demo_truth.csv                              per-row ground truth (NOT a training CSV)
    demo_manifest.json, DEMO_GAPS.md            sizes, counts and the gap definitions

Every split is planned exactly (label, component type and nuisance counts by largest remainder,
then shuffled) and every row is rendered from its own generator ``default_rng([seed, split_id,
row])``, so the output is bitwise identical for one seed and config whatever the worker count. The
workspace is generated in ``<out>.tmp-XXXX`` and renamed into place when complete.

``misregistration_px`` > 0 gives the misregistered variant of the same rows: every golden shifted by up
to that many pixels, with mild gain and blur (golden misregistration, the everyday AOI nuisance).
"""

from __future__ import annotations

import argparse
import copy
import csv
import ctypes
import io
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import fsutil
from ..errors import InputError
from ..workers import can_fork, map_forked
from . import bare_board, sensor, smt
from .layout import (
    CSV_COLUMNS,
    GAPS_DOC_PATH,
    IMAGE_EXT,
    IMAGES_DIR,
    MANIFEST_PATH,
    PASS_LABEL,
    SPEC_PATH,
    SPLITS,
    SYNTHETIC,
    SYNTHETIC_DIR,
    SYNTHETIC_GOLDEN_DIR,
    SYNTHETIC_TEST_DIR,
    TRUTH_PATH,
    Split,
)
from .manifest import build_manifest, gaps_markdown
from .world import World

WORLDS: dict[str, World] = {world.kind: world for world in (smt.WORLD, bare_board.WORLD)}
_PLAN_STREAM = 1000  # second seed word of the split plans (row streams have their split id there)
_GOLDEN_STREAM = 1  # fourth seed word: a row's golden misregistration, apart from its other draws
_CHUNK_ROWS = 40
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt() options
_API_ONLY_SETTINGS = frozenset({"pass_share", "preset"})  # DemoConfig fields without a CLI option


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    kind: str = "smt"  # a key of WORLDS
    preset: str = "default"
    lights: int = 2  # the first N of the world's light order
    image_size: int = 64
    train: int = 400
    val: int = 200
    kpi: int = 400
    pool: int = 1500
    synthetic_pairs: int = 16
    pass_share: float = 0.8
    misregistration_px: float = 0.0  # > 0: every golden shifted by up to this many pixels (+ mild gain, blur)
    workers: int = 2  # processes (0: every core); the output does not depend on it

    @classmethod
    def from_preset(cls, name: str, kind: str = "smt", **overrides: Any) -> DemoConfig:
        if kind not in WORLDS:
            raise InputError(f"unknown demo kind {kind!r}; choose one of {', '.join(WORLDS)}")
        if name not in PRESETS:
            raise InputError(f"unknown demo preset {name!r}; choose one of {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown demo setting(s) {unknown}; known: {', '.join(sorted(known))}")
        preset = {**PRESETS[name], "lights": WORLDS[kind].default_lights}
        config = cls(**{**preset, **overrides, "preset": name, "kind": kind})
        config.validate()
        return config

    @property
    def world(self) -> World:
        return WORLDS[self.kind]

    @property
    def light_names(self) -> tuple[str, ...]:
        return self.world.light_order[: self.lights]

    @property
    def processes(self) -> int:
        return self.workers or os.cpu_count() or 1

    def split_size(self, split: str) -> int:
        return {"train": self.train, "val": self.val, "kpi": self.kpi, "pool": self.pool,
                "synthetic": self.synthetic_pairs}[split]

    def validate(self) -> None:
        def fail(setting: str, why: str) -> InputError:
            option = "" if setting in _API_ONLY_SETTINGS else f" (--{setting.replace('_', '-')})"
            return InputError(f"demo setting {setting}{option} {why}")

        if self.seed < 0:
            raise fail("seed", f"must be >= 0, got {self.seed}")
        if self.kind not in WORLDS:
            raise fail("kind", f"must be one of {', '.join(WORLDS)}, got {self.kind!r}")
        order = self.world.light_order
        if not 1 <= self.lights <= len(order):
            raise fail("lights", f"must be 1 to {len(order)} ({', '.join(order)}) for {self.kind}, got {self.lights}")
        if not 16 <= self.image_size <= 512:
            raise fail("image_size", f"must be 16 to 512 pixels, got {self.image_size}")
        for split in ("train", "val", "kpi", "pool"):
            if self.split_size(split) < 10:
                raise fail(split, f"must be at least 10 rows (for PASS and defect rows), got {self.split_size(split)}")
        if self.synthetic_pairs < 0:
            raise fail("synthetic_pairs", f"must be >= 0, got {self.synthetic_pairs}")
        if not 0.5 <= self.pass_share < 1.0:
            raise fail("pass_share", f"must be in [0.5, 1), got {self.pass_share}")
        if not 0.0 <= self.misregistration_px <= 8.0:
            raise fail("misregistration_px", f"must be 0 to 8 pixels, got {self.misregistration_px}")
        if self.workers < 0:
            raise fail("workers", f"must be >= 0 (0: every core), got {self.workers}")


# Sizes per preset (both worlds); lights default to the world's (SMT 2, bare board 1).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(image_size=32, train=60, val=40, kpi=60, pool=120, synthetic_pairs=4, workers=1),
    "default": dict(image_size=64, train=400, val=200, kpi=400, pool=1500, synthetic_pairs=16, pass_share=0.8,
                    workers=2),
    # GPU scale, about a real workspace's size; generated on every core.
    "large": dict(image_size=64, train=6000, val=4500, kpi=15000, pool=20000, synthetic_pairs=64, pass_share=0.9,
                  workers=0),
}


def apportion(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer counts summing to ``total`` (largest remainder; ties in ``shares`` order)."""
    positive = {k: v for k, v in shares.items() if v > 0}
    norm = sum(positive.values())
    quotas = {k: total * v / norm for k, v in positive.items()}
    counts = {k: int(math.floor(q + 1e-9)) for k, q in quotas.items()}
    by_remainder = sorted(positive, key=lambda k: -(quotas[k] - counts[k]))
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    return {k: counts.get(k, 0) for k in shares}


@dataclass(frozen=True)
class RowPlan:
    split: str
    split_id: int
    index: int
    label: str
    comp_type: str
    nuisance: str
    board: str
    comp_name: str
    part_type: str
    pins: int
    object_name: str
    image_root: str  # workspace-relative root of input_path/golden_path
    input_path: str
    golden_path: str
    gap_content: tuple[str, ...]

    def csv_row(self) -> dict[str, Any]:
        return {"input_path": self.input_path, "golden_path": self.golden_path, "label": self.label,
                "object_name": self.object_name, "boardname": self.board, "comp_name": self.comp_name,
                "comp_type_1": self.comp_type, "part_type": self.part_type, "number_of_pins": self.pins}


def _expand(counts: dict[str, int]) -> list[str]:
    return [value for value, n in counts.items() for _ in range(n)]


def _fix_compatibility(world: World, labels: list[str], comps: list[str]) -> None:
    """Give every defect a component type it is physical for, by swapping types with other rows
    (keeps the planned counts); a type is replaced only when no swap exists."""
    ok = world.compatible
    for i, label in enumerate(labels):
        if ok(label, comps[i]):
            continue
        partner = next((j for j in range(len(labels)) if ok(label, comps[j]) and ok(labels[j], comps[i])), None)
        if partner is None:
            comps[i] = next(c for c in world.base_shares["comp_type_1"] if ok(label, c))
        else:
            comps[i], comps[partner] = comps[partner], comps[i]


def plan_split(split: Split, config: DemoConfig) -> list[RowPlan]:
    """The rows of one split: labels, component types and nuisances in their planned numbers."""
    world = config.world
    n = config.split_size(split.name)
    rng = np.random.default_rng([config.seed, _PLAN_STREAM, split.split_id])
    pass_share = config.pass_share if split.pass_share is None else split.pass_share
    n_pass = int(round(n * pass_share))
    labels = [PASS_LABEL] * n_pass + _expand(apportion(world.target_shares("label", split.gap_level), n - n_pass))
    comps = _expand(apportion(world.target_shares("comp_type_1", split.gap_level), n))
    nuisances = _expand(apportion(world.target_shares("nuisance", split.gap_level), n))
    labels, comps, nuisances = ([values[i] for i in rng.permutation(n)] for values in (labels, comps, nuisances))
    _fix_compatibility(world, labels, comps)
    plans = []
    for index in range(n):
        board = world.boards[int(rng.integers(len(world.boards)))]
        info = world.components[comps[index]]
        comp_name = f"{info.designator}{int(rng.integers(1, 80))}"
        if split.csv is None:
            root, test_dir, golden_dir = SYNTHETIC_DIR, SYNTHETIC_TEST_DIR, SYNTHETIC_GOLDEN_DIR
        else:
            root, test_dir, golden_dir = IMAGES_DIR, f"{split.name}/{board}/test", f"{split.name}/{board}/golden"
        gaps = world.gap_content({"label": labels[index], "comp_type_1": comps[index], "nuisance": nuisances[index]})
        plans.append(RowPlan(split.name, split.split_id, index, labels[index], comps[index], nuisances[index], board,
                             comp_name, info.part_type, info.pins, f"{board}_{comp_name}_{split.name}{index:05d}",
                             root, test_dir, golden_dir, tuple(gaps)))
    return plans


# --------------------------------------------------------------------------------------------------
# Rendering rows
# --------------------------------------------------------------------------------------------------


def render_row(plan: RowPlan, config: DemoConfig) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Encoded images ({workspace-relative path: JPEG bytes}) and the ground-truth record of a row."""
    rng = np.random.default_rng([config.seed, plan.split_id, plan.index])
    golden_rng = np.random.default_rng([config.seed, plan.split_id, plan.index, _GOLDEN_STREAM])
    row = config.world.render(plan, config, rng, golden_rng)
    files = {}
    for images, quality, rel_dir in ((row.golden, row.golden_quality, plan.golden_path),
                                     (row.test, row.test_quality, plan.input_path)):
        for light, image in images.items():
            files[f"{plan.image_root}/{rel_dir}/{plan.object_name}_{light}{IMAGE_EXT}"] = sensor.encode_jpeg(image, quality)
    truth = {
        "object_name": plan.object_name,
        "split": plan.split,
        "input_path": plan.input_path,
        "golden_path": plan.golden_path,
        "label": plan.label,
        "comp_type_1": plan.comp_type,
        "boardname": plan.board,
        "nuisance": plan.nuisance,
        "gap_content": ";".join(plan.gap_content),
        **row.truth,
    }
    return files, truth


def _render_chunk(plans: list[RowPlan], config: DemoConfig, root: str) -> list[dict[str, Any]]:
    """Render rows and write their images under ``root`` (a fresh temp workspace; rows never share
    a file, so workers write directly)."""
    truths = []
    for plan in plans:
        files, truth = render_row(plan, config)
        for rel, data in files.items():
            with open(os.path.join(root, rel), "wb") as handle:
                handle.write(data)
        truths.append(truth)
    return truths


def _keep_freed_heap() -> None:
    """Worker initializer: stop glibc from handing freed heap back to the OS after every row.

    The renderer's ~128 KiB numpy temporaries otherwise sit at the mmap/trim thresholds, and each
    row page-faults its memory in afresh (about 15% of a worker's time, as system time). Only the
    short-lived worker processes are tuned; elsewhere (no glibc) this does nothing."""
    try:
        libc = ctypes.CDLL(None)
        for option in (_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD):
            libc.mallopt(option, 256 << 20)
    except (OSError, AttributeError):
        pass


def _render_all(plans: list[RowPlan], config: DemoConfig, root: Path) -> list[dict[str, Any]]:
    for directory in sorted({f"{p.image_root}/{d}" for p in plans for d in (p.input_path, p.golden_path)}):
        (root / directory).mkdir(parents=True, exist_ok=True)
    chunks = [plans[i : i + _CHUNK_ROWS] for i in range(0, len(plans), _CHUNK_ROWS)]
    render = partial(_render_chunk, config=config, root=str(root))
    if not can_fork(config.processes, len(chunks)):
        return [truth for chunk in chunks for truth in render(chunk)]
    return [truth for chunk in map_forked(render, chunks, config.processes, initializer=_keep_freed_heap)
            for truth in chunk]


# --------------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------------

# The workspace spec: TAO's AOI baseline spec with values for the embedded CPU model. Dataset paths
# are relative to the workspace root; build_spec fills in the lights and the image size.
SPEC_TEMPLATE: dict[str, Any] = {
    "encryption_key": "tlt_encode",
    "task": "classify",
    "train": {
        "resume_training_checkpoint_path": None,
        "pretrained_model_path": None,
        "classify": {"loss": "ce", "cls_weight": [1.0, 10.0]},
        "num_epochs": 10,
        "num_nodes": 1,
        "validation_interval": 1,
        "checkpoint_interval": 5,
        "optim": {"lr": 1e-3, "optim": "adamw", "policy": "linear", "momentum": 0.9, "weight_decay": 0.01},
        "results_dir": "${results_dir}/train",
        "tensorboard": {"enabled": False, "infrequent_logging_frequency": 1},
    },
    "results_dir": "results",
    "model": {
        "backbone": {"type": "fan_tiny_8_p4_hybrid", "pretrained_backbone_path": None, "freeze_backbone": False},
        "classify": {"train_margin_euclid": 2.0, "eval_margin": 0.3, "embedding_vectors": 5, "embed_dec": 30,
                     "difference_module": "learnable", "learnable_difference_modules": 4},
        "decode_head": {"feature_strides": [4, 8, 16, 32]},
    },
    "dataset": {
        "classify": {
            "train_dataset": {"csv_path": SPLITS[0].csv, "images_dir": IMAGES_DIR},
            "validation_dataset": {"csv_path": SPLITS[1].csv, "images_dir": IMAGES_DIR},
            "test_dataset": {"csv_path": SPLITS[1].csv, "images_dir": IMAGES_DIR},
            "infer_dataset": {"csv_path": SPLITS[2].csv, "images_dir": IMAGES_DIR},
            "image_ext": IMAGE_EXT,
            "batch_size": 32,
            "workers": 0,
            "fpratio_sampling": 0.2,
            "num_input": 2,
            "input_map": {"SolderLight": 0, "UniformLight": 1},
            "concat_type": "linear",
            "grid_map": {"x": 2, "y": 2},
            "image_width": 64,
            "image_height": 64,
            "augmentation_config": {
                "rgb_input_mean": [0.485, 0.456, 0.406],
                "rgb_input_std": [0.229, 0.224, 0.225],
                "random_flip": {"vflip_probability": 0.5, "hflip_probability": 0.5, "enable": True},
                "random_rotate": {"rotate_probability": 0.5, "angle_list": [90, 180, 270], "enable": True},
                "random_color": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.1, "enable": True},
                "with_scale_random_crop": {"enable": False},
                "with_random_crop": False,
                "with_random_blur": False,
                "augment": True,
            },
            "num_classes": 2,
        }
    },
    "evaluate": {"checkpoint": "", "trt_engine": "", "batch_size": "${dataset.classify.batch_size}"},
    "inference": {"checkpoint": "", "trt_engine": "", "batch_size": "${dataset.classify.batch_size}"},
    "export": {
        "gpu_id": 0,
        "checkpoint": "",
        "onnx_file": "${results_dir}/export/changenet-classify.onnx",
        "input_width": 64,
        "input_height": 64,
        "batch_size": "${dataset.classify.batch_size}",
    },
}
SPEC_HEADER = """\
# Visual ChangeNet (classify) spec of the aoideft demo workspace, in TAO's keys.
# Dataset csv_path/images_dir are relative to the workspace root (the directory that holds specs/):
# resolve them against it (`aoideft spec SPEC --base-dir WORKSPACE`; the workflow sets them from its
# config). Replace them with absolute paths to hand the spec to TAO itself.
# model.backbone.type is a TAO enum value; the embedded ChangeNet-lite model replaces the backbone.
"""


def build_spec(config: DemoConfig) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC_TEMPLATE)
    classify = spec["dataset"]["classify"]
    lights = config.light_names
    classify["input_map"] = {light: i for i, light in enumerate(lights)}
    classify["num_input"] = len(lights)
    classify["image_width"] = classify["image_height"] = config.image_size
    spec["export"]["input_width"] = spec["export"]["input_height"] = config.image_size
    return spec


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """CSV with a header; the stdlib writer keeps the generator free of pandas' import time."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    fsutil.write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------
# Workspace
# --------------------------------------------------------------------------------------------------


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory; choose another --out")
    # Empty folders do not count: Snakemake makes those of rule demo_workspace's outputs first.
    if out.is_dir() and not force and any(not path.is_dir() for path in out.rglob("*")):
        raise InputError(f"{out} exists and is not empty; choose another --out, or pass --force "
                         "(force=True) to replace it")


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def generate_workspace(out_dir: str | os.PathLike, config: DemoConfig | None = None, *,
                       force: bool = False) -> dict[str, Any]:
    """Write the demo workspace to ``out_dir`` (atomically) and return a summary.

    Refuses an existing non-empty ``out_dir`` unless ``force`` (then it is replaced as a whole)."""
    config = config or DemoConfig()
    config.validate()
    out = Path(out_dir).absolute()
    _check_target(out, force)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        splits = [*SPLITS, SYNTHETIC] if config.synthetic_pairs else list(SPLITS)
        plans = {split.name: plan_split(split, config) for split in splits}
        truths = _render_all([p for split_plans in plans.values() for p in split_plans], config, tmp)
        by_split = {name: [t for t in truths if t["split"] == name] for name in plans}
        for split in SPLITS:
            _write_csv(tmp / split.csv, [p.csv_row() for p in plans[split.name]], CSV_COLUMNS)
        if config.synthetic_pairs:
            manifest_columns = ("object_name", "label", *CSV_COLUMNS[4:])
            _write_csv(tmp / SYNTHETIC_DIR / "manifest.csv", [p.csv_row() for p in plans["synthetic"]],
                       manifest_columns)
        _write_csv(tmp / TRUTH_PATH, truths, list(truths[0]))
        fsutil.write_text(tmp / SPEC_PATH, SPEC_HEADER + yaml.safe_dump(build_spec(config), sort_keys=False))
        manifest = build_manifest(config, by_split)
        fsutil.write_json(tmp / MANIFEST_PATH, manifest)
        fsutil.write_text(tmp / GAPS_DOC_PATH, gaps_markdown(manifest))
        _check_target(out, force)  # nothing appeared there meanwhile
        _move_into_place(tmp, out)
    finally:  # after a successful move nothing is left at tmp; after a failure, no half workspace
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "out_dir": str(out),
        "seed": config.seed,
        "preset": config.preset,
        "lights": list(config.light_names),
        "image_size": config.image_size,
        "rows": {name: s["rows"] for name, s in manifest["splits"].items()},
        "pass_share": {name: s["pass_share"] for name, s in manifest["splits"].items()},
        "images": sum(s["rows"] for s in manifest["splits"].values()) * 2 * config.lights,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """``aoideft demo --out DIR``: generate the embedded demo AOI workspace."""
    parser = argparse.ArgumentParser(prog="aoideft demo", description=main.__doc__)
    parser.add_argument("--out", required=True, help="workspace directory to create")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="size preset (tiny: for tests, default: the demo run, large: GPU scale)")
    parser.add_argument("--seed", type=int, help="generator seed (default 7)")
    parser.add_argument("--kind", choices=sorted(WORLDS), default="smt",
                        help="demo world: smt (assembled boards, 2 lights) or bare_board (bare copper, 1 light)")
    parser.add_argument("--lights", type=int, help="number of lights, taken in the world's light order")
    parser.add_argument("--misregistration-px", type=float,
                        help="shift every golden by up to this many pixels (the misregistered variant)")
    parser.add_argument("--image-size", type=int, help="image width = height in pixels")
    for split in ("train", "val", "kpi", "pool"):
        parser.add_argument(f"--{split}", type=int, help=f"rows in the {split} split")
    parser.add_argument("--synthetic-pairs", type=int, help="pre-generated synthetic NG/OK pairs")
    parser.add_argument("--workers", type=int, help="worker processes, 0 = every core (output does not depend on it)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    settings = ("seed", "lights", "image_size", "train", "val", "kpi", "pool", "synthetic_pairs", "misregistration_px",
                "workers")
    overrides = {k: getattr(args, k) for k in settings if getattr(args, k) is not None}
    try:
        config = DemoConfig.from_preset(args.preset, kind=args.kind, **overrides)
        summary = generate_workspace(args.out, config, force=args.force)
    except InputError as exc:
        print(f"aoideft demo: {exc}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{name} {n} ({summary['pass_share'][name]:.0%} PASS)" for name, n in summary["rows"].items())
    print(f"demo workspace written to {summary['out_dir']} in {summary['seconds']:.1f} s: {rows}; "
          f"{summary['images']} images; see {GAPS_DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
