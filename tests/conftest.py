"""Shared fixtures: a tiny demo workspace and a tiny end-to-end workflow run, each made once per
test session (they are expensive) and copied by tests that change them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def tiny_config(workspace: Path, run_dir: Path, **overrides) -> dict:
    """The smallest config that still runs every stage of all three phases."""
    config = {
        "run_dir": str(run_dir),
        "workspace": str(workspace),
        "demo": {"generate": True, "preset": "tiny", "seed": 3},
        "kpi": {"target_far_pct": 0.0, "bootstrap": 50},
        "automl": {
            "algorithm": "bayesian",
            "seed": 5,
            "phase1": {"max_recommendations": 2, "max_concurrent": 2},
            "phase3": {"max_recommendations": 2, "max_concurrent": 2, "num_epochs": 1},
            "pinned": {"train.num_epochs": 2, "dataset.classify.batch_size": 16},
            "search_space": [{"parameter": "train.optim.lr", "valid_min": 0.0005, "valid_max": 0.005}],
        },
        "deft": {
            "max_iterations": 2,
            "retrain_epochs": 1,
            "top_k_per_label": 10,
            "sdg": {"num_sdg": 6},
            "mining": {"top_k_per_target": 3, "min_similarity": -1.0},
        },
        "embedded": {"base_width": 8},
        "resources": {"gpu": {"threads": 1}},
    }
    for key, value in overrides.items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return config


def run_snakemake(config: dict, config_path: Path, *targets: str, extra: tuple[str, ...] = (),
                  check: bool = True) -> subprocess.CompletedProcess:
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AOIDEFT_GPU_LOCK_DIR": str(config_path.parent / "gpu-locks")}
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "--cores", "2",
           "--resources", "gpu=2", "--rerun-incomplete", *extra, *targets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory) -> Path:
    from aoideft.demo.workspace import DemoConfig, generate_workspace

    out = tmp_path_factory.mktemp("ws") / "workspace"
    generate_workspace(out, DemoConfig.from_preset("tiny", seed=3))
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_workspace) -> tuple[Path, dict]:
    """One complete tiny three-phase run (max_iterations 2, KPI unreachable so both iterations run)."""
    base = tmp_path_factory.mktemp("run")
    config = tiny_config(tiny_workspace, base / "run")
    run_snakemake(config, base / "config.yaml")
    return base / "run", config
