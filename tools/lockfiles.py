"""The pinned environments, derived from the lock files: `make lock` runs this after pip-compile.

requirements.lock (pip-compile of pyproject.toml's dependencies) is the one source of every pin:
- pip-compile writes the local version of the wheel it resolved here (torch's CPU build,
  ``torch==2.13.0+cpu``); ``torch==2.13.0`` matches that wheel here and the CUDA build elsewhere,
  so the locks keep the public version;
- envs/aoideft.yaml, the conda environment of every rule (``snakemake --sdm conda``), is
  Python 3.11 and pip from conda-forge plus exactly the pins of requirements.lock.

    python tools/lockfiles.py            rewrite the locks' local versions and envs/aoideft.yaml
    python tools/lockfiles.py --check    exit 1 when either is out of date
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_LOCK, DEV_LOCK, CONDA_ENV = REPO / "requirements.lock", REPO / "requirements-dev.lock", REPO / "envs" / "aoideft.yaml"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
PYTHON = "3.11"

CONDA_HEADER = f"""\
# The software environment of every rule: `snakemake --sdm conda` builds it (README: software
# environments). Written by `make lock` from requirements.lock; edit the dependencies in
# pyproject.toml, not this file. Self-contained, so it still works once Snakemake has copied it
# into .snakemake/conda/: no relative -r or -e. The rule scripts import this checkout's package
# from scripts/, which Snakemake puts on their path, so the code a job runs is the Snakefile's own.
name: aoideft
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python={PYTHON}
  - pip
  - pip:
"""


def public_versions(lock_text: str) -> str:
    """The lock with local version labels dropped (``torch==2.13.0+cpu`` -> ``torch==2.13.0``)."""
    return re.sub(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s+;#]+)\+[^\s;#]+", r"\1", lock_text, flags=re.MULTILINE)


def pins(lock_text: str) -> dict[str, str]:
    """name -> version of every pinned line of a requirements file (names as written)."""
    return {m.group(1): m.group(2) for m in map(PIN.match, lock_text.splitlines()) if m}


def conda_env(lock_text: str) -> str:
    return CONDA_HEADER + "".join(f"      - {name}=={version}\n" for name, version in sorted(pins(lock_text).items()))


def expected() -> dict[Path, str]:
    runtime = public_versions(RUNTIME_LOCK.read_text())
    return {RUNTIME_LOCK: runtime, DEV_LOCK: public_versions(DEV_LOCK.read_text()), CONDA_ENV: conda_env(runtime)}


def main(argv: list[str]) -> int:
    stale = [path for path, text in expected().items() if not path.is_file() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(REPO)} is out of date: run `make lock`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
