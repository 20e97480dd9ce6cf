"""One GPU per job when several jobs share a machine.

Snakemake's local executor only counts GPUs (`--resources gpu=N`); it never sets
CUDA_VISIBLE_DEVICES, so without this every concurrent job would land on GPU 0. A job takes the
first free slot among the visible devices by holding an exclusive, non-blocking `flock` on a
per-device lock file for its whole life; the kernel drops the lock when the process dies, so a
killed job never leaves a slot taken. Under SLURM, `--gpus=1` already narrows
CUDA_VISIBLE_DEVICES to the allocated device and the same code simply takes that one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LOCK_DIR = Path(os.environ.get("AOIDEFT_GPU_LOCK_DIR", "/tmp/aoideft-gpu-slots"))


def visible_devices() -> list[str]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


@dataclass
class GpuSlot:
    device: str | None
    handle: object | None = None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def acquire(lock_dir: Path = DEFAULT_LOCK_DIR, wait_seconds: float = 3600.0) -> GpuSlot:
    """Claim one visible device and pin CUDA_VISIBLE_DEVICES to it; no GPU -> a CPU slot."""
    devices = visible_devices()
    if not devices:
        return GpuSlot(device=None)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        for device in devices:
            handle = open(lock_dir / f"gpu{device}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            os.environ["CUDA_VISIBLE_DEVICES"] = device
            return GpuSlot(device=device, handle=handle)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU among {devices} after {wait_seconds:.0f}s")
        time.sleep(1.0)
