"""A real one-node SLURM for integration tests: munged, slurmctld and slurmd from Debian's
slurm-wlm, with fake GPU devices, all in one private directory.

The daemons read the config named by `-f`, the client commands the one in SLURM_CONF, and munge
uses its own key and socket. One system path is needed: the SLURM executor's job step strips
SLURM_CONF before it calls `srun` inside the job, so srun only finds the config at its compiled-in
place, /etc/slurm/slurm.conf. The cluster links it there for its lifetime, and refuses to start
on a machine that has a SLURM config of its own. The daemons run in the foreground as our own
child processes, so stopping the cluster kills exactly the pids it started. GPUs without hardware
need character devices for slurmd to accept `Gres=gpu`, hence `mknod` and root.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

GPU_MODEL = "fake"
PARTITION = "gpu"
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
ROOT_PREFIX = "aoideft-slurm-"


def _ours(link: Path) -> bool:
    """A link this harness made (possibly left by a killed test run)."""
    return link.is_symlink() and Path(os.readlink(link)).parent.name.startswith(ROOT_PREFIX)


def missing_requirements() -> str | None:
    """Why a local SLURM cannot start here, or None when it can."""
    absent = [name for name in BINARIES if shutil.which(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (Debian: apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmd with fake GPU devices needs root (mknod)"
    if (SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink()) and not _ours(SYSTEM_CONF):
        return f"this machine has its own SLURM config ({SYSTEM_CONF}); the test will not replace it"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _available_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


class LocalSlurm:
    """Start with `start()`, stop with `stop()`; `env` is what a client command needs."""

    def __init__(self, gpus: int = 2, gpu_type: str = GPU_MODEL, partition: str = PARTITION):
        self.gpus = gpus
        self.gpu_type = gpu_type
        self.partition = partition
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.memory_mb = int(_available_memory_mb() * 0.8)
        # munged insists that every directory above its socket is world-executable: a private
        # pytest tmp dir (0700) will not do, so the cluster gets its own directory under /tmp.
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX))
        self.root.chmod(0o711)
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60.0) -> None:
        reason = missing_requirements()
        if reason:
            raise RuntimeError(reason)
        self._write_config()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.unlink(missing_ok=True)  # only ever a stale link of ours (checked above)
        SYSTEM_CONF.symlink_to(self.conf)
        self._spawn("munged", ["munged", "--foreground", f"--socket={self.root / 'munge' / 'munge.sock'}",
                               f"--key-file={self.root / 'munge' / 'munge.key'}",
                               f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                               f"--seed-file={self.root / 'munge' / 'seed'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait_for(lambda: (self.root / "munge" / "munge.sock").exists(), timeout, "munged's socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self._wait_for(lambda: self.command("scontrol", "ping", check=False).returncode == 0, timeout,
                       "slurmctld to answer")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self._wait_for(lambda: self.node_state() == "idle", timeout, "the node to become idle")

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons this object started, by their pids."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.command("scancel", "--full", f"--partition={self.partition}", check=False)
            self._wait_for(lambda: not self.active_job_ids(), 30.0, "jobs to end", fail=False)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if _ours(SYSTEM_CONF) and Path(os.readlink(SYSTEM_CONF)) == self.conf:
            SYSTEM_CONF.unlink()
        shutil.rmtree(self.root, ignore_errors=True)

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def node_state(self) -> str:
        result = self.command("sinfo", "-h", "-N", "-o", "%T", check=False)
        return result.stdout.strip().rstrip("*")

    def active_job_ids(self) -> list[str]:
        result = self.command("squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING", "-o", "%i", check=False)
        return result.stdout.split()

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (MinJobAge keeps finished ones for an hour)."""
        out = self.command("scontrol", "show", "job", "-o").stdout
        return [_parse_record(line) for line in out.splitlines() if line.startswith("JobId=")]

    def log(self, daemon: str) -> str:
        path = self.root / "log" / f"{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")
        self.processes[name] = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def _wait_for(self, ready, timeout: float, what: str, fail: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}) while waiting for {what}:\n"
                                       f"{self.log(name)[-3000:]}")
            if ready():
                return
            time.sleep(0.3)
        if fail:
            raise RuntimeError(f"timed out waiting for {what}; slurmd log:\n{self.log('slurmd')[-3000:]}")

    def _write_config(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "log", "dev"):
            (root / sub).mkdir()
        (root / "munge").chmod(0o711)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        for index in range(self.gpus):
            os.mknod(root / "dev" / f"nvidia{index}", 0o600 | 0o020000, os.makedev(195, index))
        last = self.gpus - 1
        gres = f"gpu:{self.gpu_type}:{self.gpus}"
        self.conf.write_text("\n".join([
            "ClusterName=aoideft-ci",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge' / 'munge.sock'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "GresTypes=gpu",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            # Finished jobs stay visible to squeue/scontrol: no accounting database here.
            "MinJobAge=3600",
            "DefMemPerCPU=1000",
            "ReturnToService=2",
            "SchedulerParameters=sched_interval=1",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} "
            f"Gres={gres} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        (root / "gres.conf").write_text(
            f"NodeName={self.node} Name=gpu Type={self.gpu_type} File={root / 'dev'}/nvidia[0-{last}]\n"
        )


def user_profile(dest: Path, init_seconds: int) -> Path:
    """profiles/slurm as a user edits it: partition and GPU model set, the account line deleted
    (this cluster has no accounting)."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = PARTITION
    del profile["default-resources"]["slurm_account"]
    for resources in profile["set-resources"].values():
        resources["gpu_model"] = GPU_MODEL
    # The test's jobs last 10-20 s; the plugin checks after init_seconds, then 10 s later each
    # time nothing finished, so 5 s catches most of them at the second check.
    profile["slurm-init-seconds-before-status-checks"] = init_seconds
    assert "<" not in yaml.safe_dump(profile), "a placeholder was left in the test's profile"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


def _parse_record(line: str) -> dict[str, str]:
    """`scontrol show job -o` prints `Key=Value` pairs; values may hold spaces only in Command."""
    return dict(re.findall(r"(\w[\w:/]*)=(\S*)", line))
