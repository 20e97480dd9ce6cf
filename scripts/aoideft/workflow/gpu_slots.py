"""One GPU per job when several jobs share a machine or an allocation.

Snakemake's local executor only counts GPUs (`--resources gpu=N`); it never sets
CUDA_VISIBLE_DEVICES, so without this every concurrent job would land on GPU 0. A job takes the
first free slot among the visible devices by holding an exclusive, non-blocking `flock` on a
per-device lock file for its whole life; the kernel drops the lock when the process dies, so a
killed job never leaves a slot taken.

Under SLURM the scheduler has already chosen: `--gpus=1` narrows CUDA_VISIBLE_DEVICES to the
job's own device, and with device cgroups every job on a node may see its GPU as "0". Slots are
therefore kept per allocation (a lock directory per SLURM job id), so two SLURM jobs never wait
on each other's "gpu0" and a job holding several GPUs still spreads its work across them.

The lock folder is shared by every user of the machine (GPUs are the machine's, not a user's): it is
made world-writable with the sticky bit, like /tmp (anyone may add a lock file, only its owner may
remove it), and each lock file is readable and writable by all. A user's job opens a lock file
another user created without O_CREAT (Linux's protected_regular refuses that in sticky folders) and
falls back to a read-only descriptor, which flock accepts as well.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

DEFAULT_LOCK_DIR = Path(os.environ.get("AOIDEFT_GPU_LOCK_DIR", "/tmp/aoideft-gpu-slots"))
SHARED_DIR_MODE = 0o1777  # rwx for all, sticky: the mode of /tmp
SHARED_FILE_MODE = 0o666
PLACEMENT_TAG = "placement"
RELEASED_TAG = "slot-released"


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


def allocation_lock_dir(base: Path = DEFAULT_LOCK_DIR) -> Path:
    """Where this process's slot locks live: one directory per SLURM allocation, else `base`."""
    job_id = os.environ.get("SLURM_JOB_ID")
    return base / f"slurm-job-{job_id}" if job_id else base


@dataclass
class GpuSlot:
    device: str | None
    handle: object | None = None
    acquired_at: float = field(default_factory=time.time)

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def placement(self) -> dict:
        """Where this job runs, for its log: slot, scheduler job and what torch will use."""
        return {
            "host": socket.gethostname(),
            "slot_device": self.device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "torch_device": _torch_device(),
            "acquired_at": round(self.acquired_at, 3),
        }


def _torch_device() -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    props = torch.cuda.get_device_properties(0)  # the physical card: its UUID, as nvidia-smi -L lists it
    return f"cuda:0 {props.name} GPU-{getattr(props, 'uuid', '?')}"


def placement_line(slot: GpuSlot) -> str:
    """One log line a person can read and a test can parse: `placement {json}`."""
    return f"{PLACEMENT_TAG} {json.dumps(slot.placement(), sort_keys=True)}"


def released_line() -> str:
    return f"{RELEASED_TAG} {json.dumps({'released_at': round(time.time(), 3)})}"


def parse_placement(log_text: str) -> dict | None:
    """The placement a job's log recorded (with `released_at` once the slot was given back), or
    None when it ran without a slot. A retried job's log holds several: the last one wins."""
    placement = None
    for line in log_text.splitlines():
        for tag in (PLACEMENT_TAG, RELEASED_TAG):
            _, found, payload = line.partition(f"{tag} ")
            if found and payload.startswith("{"):
                record = json.loads(payload)
                placement = record if tag == PLACEMENT_TAG else {**(placement or {}), **record}
    return placement


def acquire(lock_dir: Path | None = None, wait_seconds: float = 3600.0) -> GpuSlot:
    """Claim one visible device and pin CUDA_VISIBLE_DEVICES to it; no GPU -> a CPU slot."""
    devices = visible_devices()
    if not devices:
        return GpuSlot(device=None)
    lock_dir = allocation_lock_dir() if lock_dir is None else lock_dir
    prepare_lock_dir(lock_dir)
    deadline = time.monotonic() + wait_seconds
    while True:
        for device in devices:
            handle = open_lock_file(lock_dir / f"gpu{device}.lock")
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


def prepare_lock_dir(lock_dir: Path) -> None:
    """Create ``lock_dir`` (and missing parents) shared by every user: the folders this user owns
    get mode 1777 whatever the umask; folders of other users are left as they are."""
    missing = [folder for folder in (lock_dir, *lock_dir.parents) if not folder.exists()]
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except PermissionError as error:
        raise _unusable(Path(error.filename or lock_dir), "chmod 1777") from None
    for folder in [*missing, lock_dir]:
        info = folder.stat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != SHARED_DIR_MODE:
            os.chmod(folder, SHARED_DIR_MODE)


def open_lock_file(path: Path) -> BinaryIO:
    """A descriptor of the lock file to flock, created (mode 0666) if missing."""
    while True:
        try:
            return _open_existing(path)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, SHARED_FILE_MODE)
        except FileExistsError:
            continue  # another job created it in between: open it as it is
        except PermissionError:
            raise _unusable(path.parent, "chmod 1777") from None
        os.fchmod(fd, SHARED_FILE_MODE)  # the umask must not keep other users' jobs out
        return os.fdopen(fd, "r+b")


def _open_existing(path: Path) -> BinaryIO:
    """Read-write where allowed, else read-only: a lock file another user made before lock files
    were shared (0644) still takes a flock."""
    try:
        return open(path, "r+b")
    except PermissionError:
        pass
    try:
        return open(path, "rb")
    except PermissionError:
        raise _unusable(path, "chmod 666") from None


def _unusable(path: Path, fix: str) -> InputError:
    try:
        owner = pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError):
        owner = "another user"
    return InputError(f"GPU-slot lock {path} (owner {owner}) cannot be used by this user: ask its owner to run "
                      f"`{fix} {path}` (GPU slots are shared by every user's jobs on a machine), or set "
                      "AOIDEFT_GPU_LOCK_DIR to a folder of your own (then your jobs do not see other users' slots)")
