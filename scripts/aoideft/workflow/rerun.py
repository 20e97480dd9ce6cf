"""What each rule's results depend on, declared so that Snakemake's rerun triggers rerun exactly the
affected jobs: the workspace files a rule reads become its inputs (Snakemake records their checksums,
so an edit reruns the rule and a mere touch does not), the config values it reads become one
``params:`` entry (the params trigger). Loaded at parse time: no heavy imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .settings import RunSettings

# Input names in the rules, so a rule's inputs say which workspace file they are.
SPEC, TRAIN, VALIDATION, KPI, POOL, SYNTHETIC = (
    "workspace_spec", "train_csv", "validation_csv", "kpi_csv", "pool_csv", "synthetic_manifest")
SYNTHETIC_MANIFEST = "manifest.csv"

# Settings that place or speed up a job without changing its results: never a rerun trigger.
PLACEMENT_KEYS = {"embedded": ("device", "compile"), "tao": ("gpu_memory_gb", "docker_args")}


def demo_pending(settings: RunSettings) -> bool:
    """The embedded demo is still to be generated into the (absent) workspace: rule demo_workspace
    makes the workspace files the other rules read."""
    return settings.config["demo"]["generate"] and not settings.workspace.exists()


def workspace_files(settings: RunSettings) -> dict[str, Path]:
    """The workspace's spec and CSVs by input name; the pre-generated pairs' manifest only where it
    exists (or where the demo about to be generated writes one)."""
    files = {SPEC: settings.spec_path, TRAIN: settings.train_csv, VALIDATION: settings.validation_csv,
             KPI: settings.kpi_csv, POOL: settings.pool_csv}
    manifest = settings.synthetic_dir / SYNTHETIC_MANIFEST
    if manifest.is_file() or (demo_pending(settings) and _demo_writes_synthetic(settings)):
        files[SYNTHETIC] = manifest
    return files


def _demo_writes_synthetic(settings: RunSettings) -> bool:
    from ..demo.workspace import DemoConfig

    demo = settings.config["demo"]
    return DemoConfig.from_preset(demo["preset"], demo["kind"], seed=demo["seed"]).synthetic_pairs > 0


def config_values(config: dict[str, Any], keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The values of dotted config keys ("deft.budget", "kpi.target_far_pct"), in the given order.

    A key the config lacks is a bug in the rule's declaration and fails at parse time."""
    values = {}
    for key in keys:
        node: Any = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"rule params name config key {key!r}, which the config does not have")
            node = node[part]
        values[key] = node
    return values


def model_keys(config: dict[str, Any]) -> list[str]:
    """The config keys a model job's results depend on: the backend and its model settings, less
    what only places the job (device, GPU memory, docker options)."""
    backend = config["backend"]
    section = "tao" if backend == "tao" else "embedded"
    return ["backend", *(f"{section}.{key}" for key in config[section] if key not in PLACEMENT_KEYS[section])]
