"""What every rule script does the same way: log to the rule's log file, claim a GPU slot for
model jobs, turn bad input into one clear line instead of a traceback."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
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
    slot = None
    try:
        if uses_model:
            slot = gpu_slots.acquire()  # inside the try: an unusable lock folder is one line too
            _limit_threads(smk.threads)
            print(f"[{smk.rule}] {gpu_slots.placement_line(slot)}")
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


def _limit_threads(threads: int) -> None:
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch.set_num_threads(max(1, int(threads)))


def outputs(smk) -> dict[str, Path]:
    """The rule's named outputs as absolute paths (jobs run inside the run directory)."""
    return {name: Path(value).resolve() for name, value in smk.output.items()}
