"""What a person needs when a run stops: which jobs failed and how (with the SLURM job state when
a cluster ran them), where their logs are, and that the same command resumes.

Snakemake prints an "Error in rule" block per failed attempt, spread over a long log; this reads
those blocks back from the run's log file and keeps the last attempt of each job. With
`show-failed-logs` the log also quotes each failed job's log files, and a SLURM job's log is the
output of the Snakemake inside the job, with error blocks of its own: quoted logs are skipped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

_BLOCK = re.compile(r"^Error in rule (?P<rule>\w+):\n(?P<body>(?:[ \t]+\S.*\n?)+)", re.MULTILINE)
_FIELD = re.compile(r"^[ \t]+(?P<key>\w+): (?P<value>.*)$", re.MULTILINE)
_SLURM = re.compile(r"SLURM-job '(?P<job>[^']+)' failed, SLURM status is: '(?P<state>\w+)'")
_LOG_NOTE = " (check log file(s) for error details)"
_QUOTED_LOG = re.compile(r"^Logfile [^\n]*:\n(={80})\n.*?^\1$\n?", re.MULTILINE | re.DOTALL)


def without_quoted_logs(log_text: str) -> str:
    """The main process's own lines: the job logs that `show-failed-logs` quotes are cut out."""
    return _QUOTED_LOG.sub("", log_text)


@dataclass(frozen=True)
class FailedJob:
    rule: str
    output: str
    logs: tuple[str, ...]
    attempts: int
    slurm_job: str | None = None
    slurm_state: str | None = None

    def describe(self) -> str:
        how = (f"SLURM job {self.slurm_job} ended {self.slurm_state}" if self.slurm_state
               else "the job exited with an error")
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        logs = f"; logs: {', '.join(self.logs)}" if self.logs else ""
        return f"{self.rule} -> {self.output or '(no output)'}: {how}{tries}{logs}"


def failed_jobs(log_text: str) -> list[FailedJob]:
    """The failed jobs of a Snakemake log, one entry per job (its last attempt), in log order."""
    attempts: dict[str, list[dict[str, str]]] = {}
    for block in _BLOCK.finditer(without_quoted_logs(log_text)):
        fields = {m["key"]: m["value"].strip() for m in _FIELD.finditer(block["body"])}
        fields["rule"] = block["rule"]
        key = f"{block['rule']}|{fields.get('output', '')}|{fields.get('jobid', '')}"
        attempts.setdefault(key, []).append(fields)
    jobs = []
    for tries in attempts.values():
        last = tries[-1]
        slurm = _SLURM.search(last.get("message", ""))
        logs = last.get("log", "").removesuffix(_LOG_NOTE)
        jobs.append(FailedJob(
            rule=last["rule"],
            output=last.get("output", ""),
            logs=tuple(part.strip() for part in logs.split(",") if part.strip()),
            attempts=len(tries),
            slurm_job=slurm["job"] if slurm else None,
            slurm_state=slurm["state"] if slurm else None,
        ))
    return jobs


def stop_summary(log_text: str, argv: list[str]) -> str:
    """The closing lines of a stopped run: what failed, and the command that resumes it."""
    jobs = failed_jobs(log_text)
    rule = "=" * 78
    lines = ["", rule, f"The run stopped: {len(jobs)} job{'s' if len(jobs) != 1 else ''} failed."]
    lines += [f"  {job.describe()}" for job in jobs]
    if any(job.slurm_state == "CANCELLED" for job in jobs):
        lines.append("  CANCELLED: someone ran scancel, or the job was preempted and not requeued.")
    lines += ["Everything that finished is kept. To resume, run the same command again; only the "
              "failed jobs and what depends on them run:",
              f"  {shlex.join(argv)}", rule]
    return "\n".join(lines)
