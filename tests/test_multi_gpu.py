"""Local multi-GPU: with N GPUs visible, N concurrent model jobs train on N different devices.

The machine's GPUs are simulated with CUDA_VISIBLE_DEVICES (the CPU build of torch ignores it; the
slot code does not): each job claims a device, pins CUDA_VISIBLE_DEVICES to it before torch
touches CUDA, and writes the claim to its log.
"""

from __future__ import annotations

from aoideft.workflow.gpu_slots import parse_placement
from conftest import run_snakemake, tiny_config

DEVICES = ["0", "1", "2"]


def test_three_concurrent_trials_take_three_devices(tmp_path, tiny_workspace):
    trials = len(DEVICES)
    config = tiny_config(tiny_workspace, tmp_path / "run", **{
        "automl.phase1": {"max_recommendations": trials, "max_concurrent": trials},
    })
    run_snakemake(config, tmp_path / "config.yaml", "phase1_automl/best_rec.json",
                  gpus=trials, env={"CUDA_VISIBLE_DEVICES": ",".join(DEVICES)})
    placements = [parse_placement((tmp_path / "run" / "logs" / "phase1_automl" / f"rec{k}.log").read_text())
                  for k in range(trials)]
    assert sorted(p["slot_device"] for p in placements) == DEVICES
    assert all(p["cuda_visible_devices"] == p["slot_device"] for p in placements), placements
    # They ran at the same time: otherwise one device could have served them all in turn.
    assert max(p["acquired_at"] for p in placements) < min(p["released_at"] for p in placements), placements
