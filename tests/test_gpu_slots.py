"""Concurrent model jobs on one machine take different GPUs (simulated with CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

HOLDER = """
import os, sys, time
from pathlib import Path
from aoideft.workflow import gpu_slots
slot = gpu_slots.acquire(gpu_slots.allocation_lock_dir(Path(sys.argv[1])), wait_seconds=float(sys.argv[3]))
print(slot.device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[2]))
"""


def start(lock_dir, hold, wait=30.0, devices="0,1,2", slurm_job=None):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_JOB_ID"}
    env["CUDA_VISIBLE_DEVICES"] = devices
    if slurm_job is not None:
        env["SLURM_JOB_ID"] = slurm_job
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), str(hold), str(wait)],
                            env=env, stdout=subprocess.PIPE, text=True)


def test_three_concurrent_jobs_get_three_devices(tmp_path):
    procs = [start(tmp_path, hold=3) for _ in range(3)]
    lines = [p.stdout.readline().split() for p in procs]
    for p in procs:
        p.wait(timeout=30)
    devices = sorted(line[0] for line in lines)
    assert devices == ["0", "1", "2"]
    assert all(line[0] == line[1] for line in lines), "CUDA_VISIBLE_DEVICES pinned to the claimed device"


def test_a_fourth_job_waits_and_a_killed_job_frees_its_slot(tmp_path):
    holders = [start(tmp_path, hold=60) for _ in range(3)]
    taken = {p: p.stdout.readline().split()[0] for p in holders}
    waiter = start(tmp_path, hold=0, wait=30)
    time.sleep(1.5)
    assert waiter.poll() is None, "no free device: the fourth job must wait"
    victim = holders[1]
    victim.kill()  # the kernel drops its flock
    victim.wait()
    assert waiter.stdout.readline().split()[0] == taken[victim]
    waiter.wait(timeout=30)
    for p in holders:
        p.kill()
        p.wait()


def test_no_gpu_means_a_cpu_slot(tmp_path):
    from aoideft.workflow import gpu_slots

    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        slot = gpu_slots.acquire(tmp_path)
        assert slot.device is None
    finally:
        if saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def test_slurm_jobs_that_each_see_their_gpu_as_0_do_not_wait_on_each_other(tmp_path):
    """With device cgroups SLURM numbers every job's GPU from 0: slots are per allocation."""
    first = start(tmp_path, hold=30, devices="0", slurm_job="101")
    assert first.stdout.readline().split() == ["0", "0"]
    second = start(tmp_path, hold=0, wait=5, devices="0", slurm_job="102")
    assert second.stdout.readline().split() == ["0", "0"], "the second allocation's GPU is its own"
    assert second.wait(timeout=30) == 0
    same_allocation = start(tmp_path, hold=0, wait=1, devices="0", slurm_job="101")
    assert same_allocation.wait(timeout=30) != 0, "inside one allocation the slot is still exclusive"
    first.kill()
    first.wait()


def test_placement_lines_round_trip_and_the_last_attempt_wins():
    from aoideft.workflow import gpu_slots

    first = gpu_slots.GpuSlot(device="1", acquired_at=10.0)
    retry = gpu_slots.GpuSlot(device="0", acquired_at=20.0)
    log = "\n".join([
        "[automl_train] " + gpu_slots.placement_line(first),
        "Traceback (most recent call last): ...",
        "[automl_train] " + gpu_slots.placement_line(retry),
        "[automl_train] " + gpu_slots.released_line(),
        "[automl_train] finished in 3.0s",
    ])
    placement = gpu_slots.parse_placement(log)
    assert placement["slot_device"] == "0" and placement["acquired_at"] == 20.0
    assert placement["released_at"] >= 20.0
    assert placement["torch_device"] == "cpu" or placement["torch_device"].startswith("cuda:0")
    assert gpu_slots.parse_placement("[deft_route] finished in 0.1s") is None
