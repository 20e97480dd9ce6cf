"""Resuming after a kill: what killed jobs left under their output names is removed before
Snakemake builds its DAG, so that those jobs run again.

Snakemake marks a job's outputs incomplete while it runs (`.snakemake/incomplete/`, the output path
in urlsafe base64, long ones split into "@" segments) and drops the marks when the job finishes; a
kill leaves them. `--rerun-incomplete` should then rerun the job, but Snakemake 9.27 only checks
the jobs it sees when it first builds the DAG, and a job behind a pending checkpoint (the DEFT loop)
is added later: a killed `deft_assemble` whose CSVs were written but whose summary was not was kept
as finished (found by tests/test_crash_resume.py). Removing the marked outputs makes them missing,
which every Snakemake reruns.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from .. import state
from .state_hooks import LOG_FILE, STATE_FILE


def marked_outputs(run_dir: Path) -> list[Path]:
    """Outputs of jobs a previous run started and did not finish, written yet or not."""
    marks = run_dir / ".snakemake" / "incomplete"
    found = []
    for mark in sorted(marks.rglob("*")) if marks.is_dir() else []:
        if not mark.is_file():
            continue
        encoded = "".join(part.lstrip("@") for part in mark.relative_to(marks).parts)
        try:
            output = run_dir / base64.urlsafe_b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            continue  # not one of Snakemake's marks
        found.append(output)
    return found


def clear_incomplete_outputs(run_dir: Path) -> list[Path]:
    """Remove the outputs of unfinished jobs, unless a lock says a run may be live (Snakemake then
    refuses to start and says how to unlock). Returns what was removed."""
    if _maybe_live(run_dir):
        return []
    removed = [output for output in marked_outputs(run_dir) if output.exists() or output.is_symlink()]
    for output in removed:
        if output.is_dir() and not output.is_symlink():
            shutil.rmtree(output)
        else:
            output.unlink()
    return removed


def repair_state_log(run_dir: Path) -> bool:
    """The log one commit behind the state after a kill is rewritten from it (``state.repair_log``),
    unless a lock says a run may be live."""
    if _maybe_live(run_dir):
        return False
    return state.repair_log(run_dir / STATE_FILE, run_dir / LOG_FILE)


def _maybe_live(run_dir: Path) -> bool:
    """A lock in the run directory: a run may be live (Snakemake refuses to start and says how to unlock)."""
    locks = run_dir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())
