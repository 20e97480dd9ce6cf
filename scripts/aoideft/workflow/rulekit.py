"""What every rule script does the same way: log to the rule's log file, claim a GPU slot for
model jobs, turn bad input into one clear line instead of a traceback."""

from __future__ import annotations

import contextlib
import cProfile
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError
from . import gpu_slots
from .settings import RunSettings, from_snakemake


def run_rule(smk, body: Callable[[RunSettings], None], *, uses_model: bool = False) -> None:
    """Run ``body(settings)`` with stdout/stderr going to the rule's log file."""
    log_file = Path(smk.log[0]) if smk.log else None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_file, "a", buffering=1, encoding="utf-8")
        sys.stdout = sys.stderr = stream
    started = time.time()
    age = process_age_s()
    if age is not None:  # the job's start cost: interpreter, Snakemake's script preamble, imports
        print(f"[{smk.rule}] body starts {age:.2f}s after its process")
    slot = None
    try:
        if uses_model:
            slot = gpu_slots.acquire()  # inside the try: an unusable lock folder is one line too
            # Before anything imports torch (the placement line does): libgomp reads its wait policy once, when it loads.
            threads_line = _set_model_threads(granted=smk.threads, configured=smk.config["resources"]["gpu"]["threads"])
            print(f"[{smk.rule}] {gpu_slots.placement_line(slot)}")
            print(f"[{smk.rule}] {threads_line}")
        with profiled((log_file.with_suffix("").as_posix() if log_file else smk.rule).replace("/", "--")):
            body(from_snakemake(smk))
    except InputError as error:
        # Bad input: one clear line (here and in Snakemake's output), no traceback. Anything else
        # is a bug and propagates, so its traceback lands in the log Snakemake points at.
        message = f"ERROR in rule {smk.rule}: {error}"
        print(message)
        sys.__stderr__.write(message + "\n")
        sys.exit(1)
    finally:
        if slot is not None:
            slot.release()
            print(f"[{smk.rule}] {gpu_slots.released_line()}")
    print(f"[{smk.rule}] finished in {time.time() - started:.1f}s")


@contextlib.contextmanager
def profiled(name: str) -> Iterator[None]:
    """With AOIDEFT_PROFILE_DIR set, a cProfile of the block in ``$AOIDEFT_PROFILE_DIR/<name>.prof``
    (a developer's profile of each job's body, benchmarks/README.md); else nothing."""
    profile_dir = os.environ.get("AOIDEFT_PROFILE_DIR")
    if not profile_dir:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(Path(profile_dir) / f"{name}.prof")


def process_age_s() -> float | None:
    """Seconds since this process started (Linux; None elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def _set_model_threads(*, granted: int, configured: int) -> str:
    """A model job computes with ``resources.gpu.threads`` torch threads whatever Snakemake granted it:
    on the CPU the count changes the figures, so they must not depend on ``--cores``. A job granted
    fewer cores shares them with another (an AutoML round's trials side by side on a small machine):
    its OpenMP threads then sleep while idle rather than spin (libgomp reads OMP_WAIT_POLICY once, as
    torch brings it in); two spinning 2-thread trials on 2 cores ran at 0.57x the speed of one after
    the other, sleeping ones at 1.27x (benchmarks/README.md, "make run's time on 2 CPU cores").
    Returns the log line saying so."""
    policy = wait_policy(granted=granted, configured=configured)
    if policy is not None:
        if "torch" in sys.modules:
            raise RuntimeError("torch was imported before the model job's threads were set: they would spin on "
                               "shared cores")
        os.environ.setdefault("OMP_WAIT_POLICY", policy)  # a user's own setting wins
    import torch

    torch.set_num_threads(configured)
    line = f"torch threads {configured} on {granted} reserved core(s)"
    return f"{line} (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']})" if policy is not None else line


def wait_policy(*, granted: int, configured: int) -> str | None:
    """OpenMP's wait policy for a model job given ``granted`` cores for ``configured`` threads (None:
    libgomp's default, spinning a while before sleeping, fastest when the job has its cores)."""
    return "PASSIVE" if granted < configured else None


def outputs(smk) -> dict[str, Path]:
    """The rule's named outputs as absolute paths (jobs run inside the run directory)."""
    return {name: Path(value).resolve() for name, value in smk.output.items()}
