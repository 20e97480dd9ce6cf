"""The pinned environments: the conda environment is self-contained and pins exactly the runtime lock
(tools/lockfiles.py)."""

from __future__ import annotations

import re
import sys

import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import lockfiles  # noqa: E402


def test_the_conda_environment_parses_and_pins_exactly_the_runtime_lock():
    """conda is not installable from the registries this project reaches, so `--sdm conda` is not run
    here: the file is checked instead, as conda reads it."""
    env = yaml.safe_load(lockfiles.CONDA_ENV.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda, pip = env["dependencies"][:-1], env["dependencies"][-1]["pip"]
    assert conda == [f"python={lockfiles.PYTHON}", "pip"]
    # Snakemake copies the file into .snakemake/conda/: no requirement may point at a path.
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][^\s+/]*", line) for line in pip), pip
    locked = lockfiles.pins(lockfiles.RUNTIME_LOCK.read_text())
    assert dict(line.split("==") for line in pip) == locked
    assert {"snakemake", "torch", "optuna", "pulp"} <= set(locked)


def test_the_dev_lock_holds_the_runtime_lock_and_the_checks_tools():
    runtime, dev = (lockfiles.pins(path.read_text()) for path in (lockfiles.RUNTIME_LOCK, lockfiles.DEV_LOCK))
    assert runtime.items() <= dev.items()
    assert {"pytest", "ruff", "mypy", "snakefmt", "pip-tools"} <= set(dev)


def test_local_version_labels_are_dropped_and_the_environment_is_derived_from_the_lock():
    lock = "torch==2.13.0+cpu\n    # via -r pyproject.toml\nnumpy==2.4.6\n"
    assert lockfiles.public_versions(lock) == "torch==2.13.0\n    # via -r pyproject.toml\nnumpy==2.4.6\n"
    env = yaml.safe_load(lockfiles.conda_env(lockfiles.public_versions(lock)))
    assert env["dependencies"][-1]["pip"] == ["numpy==2.4.6", "torch==2.13.0"]

