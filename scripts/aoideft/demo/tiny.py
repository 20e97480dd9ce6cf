"""The smallest workflow config that still runs every stage of all three phases, on the tiny demo
preset: what the tests run end to end, and what benchmarks/determinism.py runs twice."""

from __future__ import annotations

from pathlib import Path


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
            "budget": {"new_rows_fraction": 0.5},  # 30 of the tiny preset's 60 rows: room for every source
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
