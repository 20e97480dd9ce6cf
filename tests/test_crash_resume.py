"""Crash-safe resume: the whole workflow (its process group) is SIGKILLed at eleven moments spread
over the three phases of the tiny run, and rerun after each (`--unlock`, then the same command).

After every kill: no file under its final name is partial (every JSON, JSONL, CSV, Parquet, YAML,
NumPy array and checkpoint parses) and `loop_log.jsonl` is exactly the state file's events. At the
end: the run completed, nothing that had finished before a kill was redone (its files keep their
mtimes), the log has one entry per (iteration, stage), every file the state names exists, a
credential in the environment never reached a file, and the results equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aoideft.workflow.resume import marked_outputs
from conftest import REPO, SNAKEMAKE, tiny_config

# (moment, glob under the run dir whose first match means the moment has come)
MOMENTS = [
    ("Phase 1 planned, after the pre-flight", "preflight/checks.json"),
    ("a Phase 1 trial mid-training", "phase1_automl/rec*/train/metrics.jsonl"),
    ("Phase 1 winner selected", "phase1_automl/best.pth"),
    ("baseline inference half written", "baseline/inference/best_val/inference.csv"),
    ("baseline embeddings half written", "baseline/embeddings/kpi.npy"),
    ("iteration 1 routed", "iter1/routing/routing_plan.json"),
    ("iteration 1 SDG verifying candidates", "iter1/sdg/verify/candidates.csv"),
    ("iteration 1 retrain started", "iter1/train/spec.yaml"),
    ("iteration 2 dataset assembled", "iter2/dataset/train_combined_iter2.csv"),
    ("Phase 3 planned", "final_automl/round0/proposals.json"),
    ("a Phase 3 trial mid-training", "final_automl/rec*/spec.yaml"),
]
SECRET = "aoideft-crash-test-secret-0451"
SKIPPED_TOP = {".snakemake", "logs", "benchmarks", "images", "cache"}
# Rewritten in place as the loop goes on (state, its log, the report), so their mtimes move.
IN_PLACE = {"deft_state.json", "loop_log.jsonl", "DEFT_Loop_Report.html", "deft_state.json.lock"}
# Wall-clock readings, and what differs by design: the crash run sets a credential (SET vs UNSET);
# checkpoint files hold their epoch's seconds, so their SHA-256 differs while their tensors
# (compared separately) are equal; a log entry's `seq` counts commits, so a stage committed again
# after a kill takes the next number (tests/test_state.py), leaving a gap.
VOLATILE_KEYS = {"ts", "started_at", "checked_at", "duration_sec", "seconds", "train_seconds", "decode_seconds", "decode_cache",
                 "pairs_per_second", "credentials", "checkpoint_sha256", "seq"}


def _env(config_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "NGC_API_KEY": SECRET,
            "AOIDEFT_GPU_LOCK_DIR": str(config_path.parent / "gpu-locks")}


def _command(config_path: Path, *extra: str) -> list[str]:
    return [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "--cores", "2",
            "--resources", "gpu=2", "--rerun-incomplete", *extra]


def _artifacts(run_dir: Path):
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if path.is_file() and rel.parts[0] not in SKIPPED_TOP and not path.name.startswith("."):
            yield rel, path


def _parse(path: Path) -> None:
    """Raise if the file is not whole."""
    suffix = path.suffix
    if suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".jsonl":
        [json.loads(line) for line in path.read_text().splitlines()]
    elif suffix == ".csv":
        pd.read_csv(path)
    elif suffix == ".parquet":
        pd.read_parquet(path)
    elif suffix in (".yaml", ".yml"):
        yaml.safe_load(path.read_text())
    elif suffix == ".npy":
        np.load(path, mmap_mode="r")
    elif suffix == ".pth":
        torch.load(path, map_location="cpu", weights_only=True)


def _incomplete_dirs(run_dir: Path) -> set[str]:
    """Folders of the outputs Snakemake marked incomplete (jobs running at the kill), written yet or
    not (a trial's side files appear before its result.json): what a rerun may rewrite."""
    return {str(path.parent.relative_to(run_dir)) for path in marked_outputs(run_dir)}


@dataclass
class CrashRun:
    run_dir: Path
    kills: list[str]
    outputs: list[str]
    finished_before_kill: dict[str, int]


@pytest.fixture(scope="module")
def crash_run(tiny_workspace, tmp_path_factory) -> CrashRun:
    base = tmp_path_factory.mktemp("crash")
    run_dir = base / "run"
    config_path = base / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(tiny_workspace, run_dir)))
    kills, outputs, finished = [], [], {}
    for moment, pattern in MOMENTS:
        proc = subprocess.Popen(_command(config_path), cwd=REPO, env=_env(config_path), start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None and not list(run_dir.glob(pattern)):
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills.append(moment)
        outputs.append(proc.communicate()[0])
        _check_whole(run_dir, moment)
        may_change = _incomplete_dirs(run_dir)
        for rel, path in _artifacts(run_dir):
            if rel.name not in IN_PLACE and not any(str(rel).startswith(d + "/") for d in may_change):
                finished.setdefault(str(rel), path.stat().st_mtime_ns)
        subprocess.run(_command(config_path, "--unlock"), cwd=REPO, env=_env(config_path), check=True,
                       capture_output=True)
    final = subprocess.run(_command(config_path), cwd=REPO, env=_env(config_path), capture_output=True, text=True)
    outputs.append(final.stdout + final.stderr)
    assert final.returncode == 0, outputs[-1][-4000:]
    return CrashRun(run_dir, kills, outputs, finished)


def _check_whole(run_dir: Path, moment: str) -> None:
    for rel, path in _artifacts(run_dir):
        try:
            _parse(path)
        except (ValueError, OSError, EOFError, RuntimeError, pickle.UnpicklingError, yaml.YAMLError) as error:
            raise AssertionError(f"after a kill at '{moment}': {rel} is not whole: {error}") from error
    state, log = run_dir / "deft_state.json", run_dir / "loop_log.jsonl"
    if state.exists():
        # The state is written first and the log derived from it: a kill between the two leaves the log
        # one commit behind, which the next run rewrites (state.repair_log); never anything else.
        events = json.loads(state.read_text())["events"]
        logged = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        assert logged in (events, events[:-1]), moment


def test_the_workflow_was_killed_at_least_ten_times_across_all_phases(crash_run):
    assert len(crash_run.kills) >= 10, crash_run.kills
    assert {"a Phase 1 trial mid-training", "iteration 1 retrain started", "a Phase 3 trial mid-training"} <= set(crash_run.kills)


def test_nothing_finished_before_a_kill_was_redone(crash_run):
    changed = [rel for rel, mtime in crash_run.finished_before_kill.items()
               if (crash_run.run_dir / rel).stat().st_mtime_ns != mtime]
    assert len(crash_run.finished_before_kill) > 100
    assert changed == []


def test_the_log_has_one_entry_per_stage_and_the_state_matches_the_disk(crash_run):
    log = [json.loads(line) for line in (crash_run.run_dir / "loop_log.jsonl").read_text().splitlines()]
    stages = [(e["iter"], e["stage"]) for e in log]
    assert len(stages) == len(set(stages))
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    state = json.loads((crash_run.run_dir / "deft_state.json").read_text())
    assert state["status"] == "complete"
    named = [value for entry in state["iterations"].values() for value in entry.values()
             if isinstance(value, str) and value.endswith((".pth", ".csv", ".parquet", ".json", ".yaml"))]
    assert len(named) > 10
    assert [p for p in named if not (crash_run.run_dir / p).exists()] == []


def test_a_credential_never_reaches_a_file_or_the_output(crash_run):
    for path in crash_run.run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path
    assert not any(SECRET in out for out in crash_run.outputs)
    assert "NGC_API_KEY: SET" in (crash_run.run_dir / "preflight" / "summary.md").read_text()


def _normalised_json(value, run_dir: str | None = None):
    if isinstance(value, dict):
        return {k: _normalised_json(v, run_dir) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        items = [_normalised_json(v, run_dir) for v in value]
        if items and all(isinstance(v, dict) and {"iter", "stage"} <= v.keys() for v in items):
            # Log entries: one per (iteration, stage); concurrent stages (mining, SDG) may commit
            # in either order, and a rerun moves a stage's entry to the end.
            items.sort(key=lambda e: (e["iter"], e["stage"]))
        return items
    if isinstance(value, str) and run_dir:
        return value.replace(run_dir, "<RUN>")
    return value


def _close(a, b, where: str, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            problems.append(f"{where}: keys differ")
        for key in a.keys() & b.keys():
            _close(a[key], b[key], f"{where}.{key}", problems)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]", problems)
    elif isinstance(a, float) and isinstance(b, (int, float)):
        if not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
            problems.append(f"{where}: {a} != {b}")
    elif a != b:
        problems.append(f"{where}: {str(a)[:80]} != {str(b)[:80]}")


def _load_json(path: Path):
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines()] if path.suffix == ".jsonl" else json.loads(text)


def test_the_results_equal_an_uninterrupted_run(crash_run, tiny_run):
    """CSVs, Parquet, NumPy, YAML and text byte for byte (run paths normalised), JSON value for value
    (wall-clock readings dropped, floats to 1e-6), checkpoints tensor for tensor: the run killed
    eleven times computed exactly what the clean run did. This is also the CPU determinism check:
    two runs of one config and seed."""
    clean_dir, _ = tiny_run
    ours, theirs = dict(_artifacts(crash_run.run_dir)), dict(_artifacts(clean_dir))
    assert sorted(map(str, ours)) == sorted(map(str, theirs))
    problems: list[str] = []
    for rel, path in ours.items():
        other = theirs[rel]
        if path.suffix in (".json", ".jsonl"):
            _close(_normalised_json(_load_json(path), str(crash_run.run_dir)),
                   _normalised_json(_load_json(other), str(clean_dir)), str(rel), problems)
        elif path.suffix == ".pth":
            a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (path, other))
            if a["state_dict"].keys() != b["state_dict"].keys() or not all(
                    torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]):
                problems.append(f"{rel}: weights differ")
            _close(_normalised_json(a["metrics"]), _normalised_json(b["metrics"]), f"{rel}:metrics", problems)
        elif path.suffix not in (".html", ".md"):  # the report and pre-flight summary carry times and SET/UNSET
            a = path.read_bytes().replace(str(crash_run.run_dir).encode(), b"<RUN>")
            b = other.read_bytes().replace(str(clean_dir).encode(), b"<RUN>")
            if a != b:
                problems.append(f"{rel}: bytes differ")
    assert problems == []
