"""The execution profiles and the container setting, seen through `snakemake -n` (no cluster)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEMAKE, run_snakemake, tiny_config
from local_slurm import GPU_MODEL, PARTITION, user_profile


def _dry_run(tmp_path: Path, workspace: Path, *args: str, **overrides) -> subprocess.CompletedProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config(workspace, tmp_path / "run", **overrides)))
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "-n", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SLURM_CONF": str(tmp_path / "absent.conf")})


def test_an_unedited_slurm_profile_is_refused_before_anything_runs(tmp_path, tiny_workspace):
    proc = _dry_run(tmp_path, tiny_workspace, "--profile", str(REPO / "profiles" / "slurm"))
    assert proc.returncode != 0
    assert ("PRE-FLIGHT FAILED: profile setting slurm_partition (default-resources) is still the placeholder "
            "<PARTITION>") in proc.stderr
    assert not (tmp_path / "run" / "preflight").exists()


def test_the_dry_run_shows_each_model_job_with_its_slurm_request(tmp_path, tiny_workspace):
    profile = user_profile(tmp_path / "profile", init_seconds=20)
    proc = _dry_run(tmp_path, tiny_workspace, "--profile", str(profile))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert f"(partition {PARTITION}, GPU model {GPU_MODEL})" in out

    def resources(rule: str) -> list[str]:
        return re.search(r"resources: (.*)", out[out.index(f"rule {rule}:"):]).group(1).split(", ")

    for rule in ("automl_train", "deft_infer"):
        assert {"gpu=1", f"gpu_model={GPU_MODEL}", "runtime=60", f"slurm_partition={PARTITION}"} <= set(resources(rule))
    for rule in ("automl_suggest", "deft_evaluate", "deft_rca"):
        assert not [r for r in resources(rule) if r.startswith("gpu")], resources(rule)


@pytest.mark.parametrize(("trials", "line"), [
    (2, "torch threads 2 on 1 reserved core(s) (OMP_WAIT_POLICY=PASSIVE)"),
    (1, "torch threads 2 on 2 reserved core(s)\n"),  # a round of one: its cores, libgomp's default
])
def test_a_trial_sharing_the_cores_computes_with_the_configured_threads(tmp_path, tiny_workspace, trials, line):
    """Two trials a round on 2 cores: each reserves one, so they run side by side, and still computes
    with resources.gpu.threads torch threads (on the CPU the count changes the figures), sleeping
    rather than spinning while idle. A trial alone in its round reserves them all."""
    config = tiny_config(tiny_workspace, tmp_path / "run", **{"resources.gpu.threads": 2,
                                                              "automl.phase1.max_recommendations": trials})
    run_snakemake(config, tmp_path / "config.yaml", "phase1_automl/rec0/result.json")
    log = (tmp_path / "run" / "logs" / "phase1_automl" / "rec0.log").read_text()
    assert f"[automl_train] {line}" in log
    summary = json.loads((tmp_path / "run" / "phase1_automl" / "rec0" / "train" / "train_summary.json").read_text())
    assert summary["threads"] == 2


@pytest.mark.skipif(bool(shutil.which("apptainer") or shutil.which("singularity")),
                    reason="apptainer is installed: this test relies on Snakemake refusing without it")
def test_a_container_is_what_jobs_run_in_under_apptainer(tmp_path, tiny_workspace):
    without = _dry_run(tmp_path / "a", tiny_workspace, "--sdm", "apptainer")
    assert without.returncode == 0, without.stderr[-2000:]
    image = "docker://registry.example.com/aoideft:1"
    proc = _dry_run(tmp_path / "b", tiny_workspace, "--sdm", "apptainer", container=image)
    assert proc.returncode != 0
    assert "The apptainer or singularity command has to be available" in proc.stdout + proc.stderr
