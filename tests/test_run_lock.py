"""Two runs on one run directory: the second is refused by Snakemake's lock, with a message that
names the directory, and it removes nothing of the first run's."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import yaml

from conftest import REPO, SNAKEMAKE, run_snakemake, tiny_config


def test_a_second_run_on_the_same_run_directory_is_refused(tmp_path, tiny_workspace):
    run_dir = tmp_path / "run"
    config = tiny_config(tiny_workspace, run_dir)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    first = subprocess.Popen([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path),
                              "--cores", "1", "--resources", "gpu=1"],
                             cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "AOIDEFT_GPU_LOCK_DIR": str(tmp_path / "gpu-locks")})
    try:
        while first.poll() is None and not (run_dir / "preflight" / "checks.json").exists():
            time.sleep(0.1)
        assert first.poll() is None, "the first run ended before the second could start"
        second = run_snakemake(config, tmp_path / "config2.yaml", check=False)
        assert first.poll() is None, "the refused run must not stop the first one"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    out = second.stdout + second.stderr
    assert second.returncode != 0
    assert "Directory cannot be locked" in out and str(run_dir) in out
    assert (run_dir / "preflight" / "checks.json").exists()
    # The killed run left its lock behind: the next run says how to clear it, and --unlock does.
    stale = run_snakemake(config, tmp_path / "config2.yaml", "preflight/checks.json", check=False)
    assert stale.returncode != 0 and "--unlock" in stale.stdout + stale.stderr
    run_snakemake(config, tmp_path / "config2.yaml", extra=("--unlock",))
    run_snakemake(config, tmp_path / "config2.yaml", "preflight/checks.json")
