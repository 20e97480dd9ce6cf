"""The workflow on a real SLURM: slurmctld and slurmd from Debian's slurm-wlm with two fake GPUs,
driven through the repository's own profiles/slurm with its placeholders filled in as a user would.

One scenario, checked from several sides:
  run 1  the tiny three-phase config with one DEFT iteration (every stage and phase still runs;
         a second iteration would only add SLURM round trips). While a Phase 3 trial trains, it is cancelled with scancel;
         the profile's `retries: 1` resubmits it, it is cancelled again, and the run stops.
  run 2  the same command resumes: only the cancelled trial and what depends on it run again.

Without slurm-wlm and munge (or root, for the fake GPU device nodes) the module is skipped,
unless AOIDEFT_REQUIRE_SLURM=1 (set by .ci/run), where that is a failure instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from aoideft.workflow.failures import without_quoted_logs
from artifact_schema import run_schema, schema_differences
from conftest import REPO, SNAKEMAKE, tiny_config
from local_slurm import GPU_MODEL, PARTITION, LocalSlurm, missing_requirements, user_profile

GPU_RULES = {"automl_train", "deft_train", "deft_infer", "final_infer", "deft_sdg"}
MEM_MB, RUNTIME_MIN = 1500, 30
CANCELLED_PHASE = "final_automl"


def _require_slurm() -> None:
    reason = missing_requirements()
    if reason is None:
        return
    if os.environ.get("AOIDEFT_REQUIRE_SLURM") == "1":
        pytest.fail(f"AOIDEFT_REQUIRE_SLURM=1 but no local SLURM can start: {reason}")
    pytest.skip(f"no local SLURM: {reason}")


@dataclass
class SlurmObservations:
    """What a background poller saw in squeue, and the jobs it cancelled."""

    running_together: list[set[str]] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)


class Poller(threading.Thread):
    """Polls squeue twice a second; cancels the first Phase 3 trial twice once it is training."""

    def __init__(self, cluster: LocalSlurm, run_dir: Path, cancel_attempts: int):
        super().__init__(daemon=True)
        self.cluster, self.run_dir, self.cancel_attempts = cluster, run_dir, cancel_attempts
        self.seen = SlurmObservations()
        self.stop_event = threading.Event()
        self.target_comment: str | None = None
        self.last_cancel_at = 0.0

    def run(self) -> None:
        while not self.stop_event.is_set():
            out = self.cluster.command("squeue", "-h", "-t", "all", "-o", "%i|%T|%k", check=False).stdout
            running = set()
            for line in out.splitlines():
                job_id, state, comment = line.split("|", 2)
                self.seen.comments[job_id] = comment
                if state == "RUNNING":
                    running.add(job_id)
                    self._maybe_cancel(job_id, comment)
            if len(running) > 1:
                self.seen.running_together.append(running)
            time.sleep(0.5)

    def _maybe_cancel(self, job_id: str, comment: str) -> None:
        if len(self.seen.cancelled) >= self.cancel_attempts or job_id in self.seen.cancelled:
            return
        if self.target_comment is None and comment.startswith(f"rule_automl_train_wildcards_{CANCELLED_PHASE}_"):
            self.target_comment = comment
        if comment != self.target_comment:
            return
        # Cancel only once this attempt's training has started: its rule log names the slot.
        rec = comment.rsplit("_", 1)[1]
        log = self.run_dir / "logs" / CANCELLED_PHASE / f"rec{rec}.log"
        placement = _placement(log)
        if placement and placement["slurm_job_id"] == job_id:
            self.cluster.command("scancel", job_id)
            self.seen.cancelled.append(job_id)


def _placement(log: Path) -> dict | None:
    from aoideft.workflow.gpu_slots import parse_placement

    return parse_placement(log.read_text(errors="replace")) if log.exists() else None


@dataclass
class SlurmScenario:
    run_dir: Path
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    first_seen: SlurmObservations
    second_seen: SlurmObservations
    mtimes_before_resume: dict[str, int]
    jobs: list[dict[str, str]]


def _mtimes(run_dir: Path) -> dict[str, int]:
    return {p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns
            for p in run_dir.rglob("*") if p.is_file() and not p.is_symlink()
            and p.relative_to(run_dir).parts[0] not in {".snakemake", "logs"}}


def _run(cluster: LocalSlurm, profile: Path, config_path: Path, run_dir: Path, cancel_attempts: int):
    poller = Poller(cluster, run_dir, cancel_attempts)
    poller.start()
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "AOIDEFT_GPU_LOCK_DIR": str(config_path.parent / "gpu-locks")}
    try:
        proc = subprocess.run([SNAKEMAKE, "--profile", str(profile), "-s", str(REPO / "Snakefile"),
                               "--configfile", str(config_path)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:
        poller.stop_event.set()
        poller.join()
    return proc, poller.seen


@pytest.fixture(scope="module")
def cluster():
    _require_slurm()
    slurm = LocalSlurm(gpus=2, gpu_type=GPU_MODEL, partition=PARTITION)
    slurm.start()
    yield slurm
    slurm.stop()
    for name, process in slurm.processes.items():
        assert process.poll() is not None, f"{name} still running after stop()"


@pytest.fixture(scope="module")
def scenario(cluster, tiny_workspace, tmp_path_factory) -> SlurmScenario:
    base = tmp_path_factory.mktemp("slurm")
    run_dir = base / "run"
    config = tiny_config(tiny_workspace, run_dir, **{"deft.max_iterations": 1, "resources.gpu.mem_mb": MEM_MB,
                                                      "resources.gpu.runtime": RUNTIME_MIN})
    config_path = base / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    profile = user_profile(base / "profile", init_seconds=5)
    first, first_seen = _run(cluster, profile, config_path, run_dir, cancel_attempts=2)
    mtimes = _mtimes(run_dir)
    second, second_seen = _run(cluster, profile, config_path, run_dir, cancel_attempts=0)
    for name, proc in (("run1", first), ("run2", second)):  # kept for reading a failure
        (base / f"{name}.out").write_text(_output(proc))
    return SlurmScenario(run_dir, first, second, first_seen, second_seen, mtimes, cluster.jobs())


def _output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def _jobs_by_id(scenario: SlurmScenario) -> dict[str, dict[str, str]]:
    return {job["JobId"]: job for job in scenario.jobs}


def _rule_of(comment: str) -> str:
    return re.match(r"rule_(\w+?)(?:_wildcards_|$)", comment).group(1)


def test_every_model_job_was_a_slurm_job_with_one_gpu_and_the_rules_resources(scenario):
    jobs = scenario.jobs
    rules = {_rule_of(job["Comment"]) for job in jobs}
    assert rules == GPU_RULES, f"SLURM ran {rules}"
    submitted = sum(_output(p).count("has been submitted with SLURM jobid") for p in (scenario.first, scenario.second))
    assert len(jobs) == submitted
    for job in jobs:
        assert job["TresPerJob"] == f"gres:gpu:{GPU_MODEL}:1", job
        assert job["TimeLimit"] == f"00:{RUNTIME_MIN}:00" and job["MinMemoryNode"] == f"{MEM_MB}M", job
        assert job["NumCPUs"] == "1" and job["Partition"] == PARTITION, job
    # The jobs' own logs: each ran in its SLURM job, pinned to the single GPU SLURM gave it.
    for log in (scenario.run_dir / "logs").rglob("*.log"):
        placement = _placement(log)
        if placement is not None:
            assert placement["slurm_job_id"] in _jobs_by_id(scenario), (log, placement)
            assert placement["cuda_visible_devices"] in {"0", "1"}, (log, placement)


def test_bookkeeping_rules_ran_on_the_submit_host_and_asked_slurm_for_nothing(scenario):
    # Quoted job logs are cut: inside its SLURM job, a model rule runs as a "localrule".
    text = without_quoted_logs(_output(scenario.first) + _output(scenario.second))
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):", text, re.MULTILINE))
    remote = set(re.findall(r"^(?:rule|checkpoint) (\w+):", text, re.MULTILINE))
    assert {"preflight", "automl_suggest", "automl_select", "deft_rca", "deft_route", "deft_mine",
            "deft_assemble", "deft_decide", "deft_report"} <= local
    assert remote == GPU_RULES and not local & GPU_RULES


def test_concurrent_automl_trials_ran_on_different_gpus(scenario):
    comments = scenario.first_seen.comments
    trial_ids = {job_id for job_id, c in comments.items() if c.startswith("rule_automl_train_wildcards_phase1_automl")}
    together = [ids & trial_ids for ids in scenario.first_seen.running_together if len(ids & trial_ids) == 2]
    assert together, "the two Phase 1 trials of round 0 were never RUNNING at the same time"
    placements = [_placement(scenario.run_dir / "logs" / "phase1_automl" / f"rec{k}.log") for k in (0, 1)]
    assert {p["slurm_job_id"] for p in placements} == together[0]
    assert {p["cuda_visible_devices"] for p in placements} == {"0", "1"}, placements


def test_a_cancelled_trial_is_retried_then_the_stop_is_reported_clearly(scenario):
    assert len(scenario.first_seen.cancelled) == 2, "the poller cancelled the trial and its retry"
    assert scenario.first.returncode != 0
    out = _output(scenario.first)
    for job_id in scenario.first_seen.cancelled:
        assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in out
    assert "Trying to restart job" in out
    rec = scenario.first_seen.comments[scenario.first_seen.cancelled[0]].rsplit("_", 1)[1]
    summary = out[out.index("The run stopped"):]
    assert (f"automl_train -> {CANCELLED_PHASE}/rec{rec}/result.json: SLURM job "
            f"{scenario.first_seen.cancelled[-1]} ended CANCELLED (after 2 attempts)") in summary
    assert "To resume, run the same command again" in summary and "--profile" in summary


def test_the_rerun_resumes_without_redoing_finished_jobs(scenario):
    assert scenario.second.returncode == 0, _output(scenario.second)[-3000:]
    cancelled_comment = scenario.first_seen.comments[scenario.first_seen.cancelled[0]]
    # squeue still lists run 1's finished jobs (MinJobAge): run 2's are the ones run 1 never saw.
    rerun = sorted(c for job_id, c in scenario.second_seen.comments.items() if job_id not in scenario.first_seen.comments)
    # Only the cancelled trial trains again; then the winner's KPI inference.
    assert rerun == sorted([cancelled_comment, "rule_final_infer"]), rerun
    now = _mtimes(scenario.run_dir)
    cancelled_rec = f"{CANCELLED_PHASE}/rec{cancelled_comment.rsplit('_', 1)[1]}/"
    kept = [p for p in scenario.mtimes_before_resume
            if p.startswith(("phase1_automl/", "baseline/", "iter1/", f"{CANCELLED_PHASE}/rec"))
            and not p.startswith(cancelled_rec)]
    assert len(kept) > 50
    assert [p for p in kept if now.get(p) != scenario.mtimes_before_resume[p]] == []


def test_slurm_logs_are_kept_under_the_run_directory(scenario):
    slurm_logs = scenario.run_dir / ".snakemake" / "slurm_logs"
    for job in scenario.jobs:
        log = Path(job["StdOut"])
        assert log.is_relative_to(slurm_logs) and log.exists(), job["StdOut"]


# The pool pass of a loop iteration: none in the last iteration the loop may run (loop.embeds_pool).
POOL_PASS = {f"iterN/embeddings/{name}" for name in ("pool.npy", "pool.keys.csv", "pool_scores.csv")}


def test_artifacts_match_a_local_run_in_schema(scenario, tiny_run):
    """Same files per stage and phase, same JSON keys and types, columns and checkpoint keys as the
    local tiny run (which has two iterations: iterations are compared stage by stage). The SLURM run's
    one iteration is its last, so it has no pool pass, which the local run's first iteration has."""
    local_run, _ = tiny_run
    reference, cluster = run_schema(local_run), run_schema(scenario.run_dir)
    assert POOL_PASS <= set(reference) and not POOL_PASS & set(cluster)
    assert schema_differences({path: shapes for path, shapes in reference.items() if path not in POOL_PASS},
                              cluster) == []
