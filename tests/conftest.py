"""Shared fixtures: a tiny demo workspace and a tiny end-to-end workflow run, each made once per
test session - once for all xdist workers together - (they are expensive) and copied by tests that
change them."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aoideft.demo.tiny import tiny_config  # noqa: F401 - the tests' config, shared with benchmarks

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def run_snakemake(config: dict, config_path: Path, *targets: str, extra: tuple[str, ...] = (),
                  check: bool = True, gpus: int = 2, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AOIDEFT_GPU_LOCK_DIR": str(config_path.parent / "gpu-locks"),
           **(env or {})}
    cmd = [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "--cores", str(max(2, gpus)),
           "--resources", f"gpu={gpus}", "--rerun-incomplete", *extra, *targets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=1200)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def built_once(tmp_path_factory, name: str, build) -> Path:
    """`build(directory)` once per test session, shared by all xdist workers: the first worker to
    ask builds under a file lock, the others wait and reuse it. A failed build is retried."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above every worker's own
    target, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            build(target)
            done.touch()
    return target


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory) -> Path:
    from aoideft.demo.workspace import DemoConfig, generate_workspace

    base = built_once(tmp_path_factory, "tiny-ws",
                      lambda out: generate_workspace(out / "workspace", DemoConfig.from_preset("tiny", seed=3)))
    return base / "workspace"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_workspace) -> tuple[Path, dict]:
    """One complete tiny three-phase run (max_iterations 2, KPI unreachable so both iterations run)."""
    def build(base: Path) -> None:
        run_snakemake(tiny_config(tiny_workspace, base / "run"), base / "config.yaml")

    base = built_once(tmp_path_factory, "tiny-run", build)
    config = tiny_config(tiny_workspace, base / "run")
    return base / "run", config


def pytest_terminal_summary(terminalreporter):
    """Paths of what tests kept for a person to look at (``record_property("artifact", path)``), at the
    end of the run's output, also with xdist (properties travel with the reports)."""
    kept = [value for reports in terminalreporter.stats.values() for report in reports
            for name, value in getattr(report, "user_properties", ()) if name == "artifact"]
    if kept:
        terminalreporter.write_sep("-", "test artifacts")
        for path in dict.fromkeys(kept):
            terminalreporter.write_line(str(path))
