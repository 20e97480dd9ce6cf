"""Shared set-up for the benchmark scripts: a demo workspace and its spec with absolute paths."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from aoideft import spec as tao_spec
from aoideft.demo.workspace import DemoConfig, generate_workspace


def demo_workspace(root: Path, preset: str, seed: int) -> Path:
    workspace = root / f"demo_{preset}_{seed}"
    if not workspace.exists():
        generate_workspace(workspace, DemoConfig.from_preset(preset, seed=seed))
    return workspace


def workspace_spec(workspace: Path, **overrides) -> dict:
    """The workspace's spec with its dataset paths made absolute, plus dotted-key overrides."""
    spec = tao_spec.load_spec(workspace / "specs" / "baseline_spec.yaml")
    paths = {
        "dataset.classify.train_dataset.csv_path": workspace / "train/base/training_set.csv",
        "dataset.classify.train_dataset.images_dir": workspace / "images",
        "dataset.classify.validation_dataset.csv_path": workspace / "train/base/validation_set.csv",
        "dataset.classify.validation_dataset.images_dir": workspace / "images",
    }
    return tao_spec.deep_merge(spec, {**{k: str(v) for k, v in paths.items()}, **overrides})


def machine() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()}: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
            f"{device}, torch {torch.__version__}")
