#!/usr/bin/env bash
# Installs what the SLURM integration test (tests/test_slurm_cluster.py) starts: Debian's
# slurm-wlm (slurmctld, slurmd, client commands) and munge. Does nothing when they are present;
# without root or apt-get it says so and the test skips (CI sets AOIDEFT_REQUIRE_SLURM=1, where
# a missing SLURM fails instead).
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_slurm.sh: not root or no apt-get; the SLURM integration test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
echo "install_slurm.sh: installed $(slurmctld -V) and munge"
