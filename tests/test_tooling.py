"""The pinned environments and the checks CI runs besides the tests: the conda environment every rule
declares is self-contained and pins exactly the runtime lock (tools/lockfiles.py), and the mypy
baseline only shrinks (tools/mypy_baseline.py)."""

from __future__ import annotations

import re
import sys
from collections import Counter

import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import lockfiles  # noqa: E402
import mypy_baseline  # noqa: E402


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


MYPY_OUTPUT = """\
scripts/aoideft/a.py:10: error: Incompatible types in assignment (expression has type "int", variable has type "str")  [x]
scripts/aoideft/a.py:20:5: error: Incompatible types in assignment (expression has type "int", variable has type "str")  [x]
scripts/aoideft/a.py:21: note: See https://mypy.readthedocs.io
scripts/aoideft/b.py:3: error: Name "x" is not defined  [name-defined]
Found 3 errors in 2 files (checked 2 source files)
"""


def test_the_mypy_baseline_ignores_line_numbers_and_counts_repeats():
    current = mypy_baseline.normalise(MYPY_OUTPUT)
    assigned = 'scripts/aoideft/a.py: [x] Incompatible types in assignment (expression has type "int", ' \
               'variable has type "str")'
    assert current == Counter({assigned: 2, 'scripts/aoideft/b.py: [name-defined] Name "x" is not defined': 1})
    # The same errors on other lines: nothing new, nothing fixed.
    assert mypy_baseline.compare(current, mypy_baseline.read_baseline(f"# header\n{assigned}\n{assigned}\n"
                                 'scripts/aoideft/b.py: [name-defined] Name "x" is not defined\n')) == ([], [])
    # A third error of a kind the baseline holds twice is new; a baseline error mypy no longer reports is fixed.
    new, fixed = mypy_baseline.compare(current + Counter({assigned: 1}), Counter({assigned: 2, "gone: [misc] x": 1}))
    assert new == [assigned, 'scripts/aoideft/b.py: [name-defined] Name "x" is not defined'] and fixed == ["gone: [misc] x"]
