"""Progress lines for long jobs (decoding, training epochs, inference, embedding, SDG).

Every line starts with a local timestamp and is flushed at once, so a job's log (the rule's log
file, where ``rulekit.run_rule`` points stdout) shows what the job is doing while it runs:

    [2026-05-04 09:12:03] decoding kpi/testing_set.csv: 40,000 rows x 4 lights
    [2026-05-04 09:12:41] decoding kpi/testing_set.csv: 10,000/40,000 rows (25%) in 38s, 263 rows/s, ETA 1m54s
    [2026-05-04 09:14:35] decoding kpi/testing_set.csv: done, 40,000 rows in 2m32s (263 rows/s)

``Progress`` counts rows and prints every ``every`` rows (a few thousand by default); ``log`` is one
timestamped line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

PROGRESS_EVERY = 2000  # rows between two progress lines


def stamp(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def log(message: str) -> None:
    """One timestamped line on the current stdout (looked up per call: run_rule redirects it)."""
    print(f"[{stamp()}] {message}", flush=True)


def fmt_duration(seconds: float | None) -> str:
    """12.3s, 4m05s, 2h07m; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Time left at the average pace so far; None before anything is done."""
    if done <= 0 or elapsed <= 0:
        return None
    return max(0.0, (total - done) * elapsed / done)


class Progress:
    """Counts the rows of one job step and logs a line every ``every`` rows, plus start and end."""

    def __init__(self, what: str, total: int, *, unit: str = "rows", every: int | None = None,
                 emit: Callable[[str], None] = log, clock: Callable[[], float] = time.perf_counter):
        every = PROGRESS_EVERY if every is None else int(every)
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.what, self.total, self.unit, self.every = what, int(total), unit, every
        self.emit, self.clock = emit, clock
        self.done = 0
        self.started = clock()

    def start(self, detail: str = "") -> Progress:
        self.started = self.clock()
        self.emit(f"{self.what}: {self.total:,} {self.unit}{' ' + detail if detail else ''}")
        return self

    def advance(self, count: int = 1) -> None:
        before, self.done = self.done, self.done + int(count)
        if self.done < self.total and self.done // self.every > before // self.every:
            elapsed = self.clock() - self.started
            share = f" ({self.done / self.total:.0%})" if self.total else ""
            self.emit(f"{self.what}: {self.done:,}/{self.total:,} {self.unit}{share} in {fmt_duration(elapsed)}, "
                      f"{self._rate(elapsed)}, ETA {fmt_duration(eta_seconds(self.done, self.total, elapsed))}")

    def finish(self, detail: str = "") -> float:
        """Logs the end line; returns the seconds since start."""
        elapsed = self.clock() - self.started
        self.emit(f"{self.what}: done, {self.done:,} {self.unit} in {fmt_duration(elapsed)} ({self._rate(elapsed)})"
                  + (f"; {detail}" if detail else ""))
        return elapsed

    def _rate(self, elapsed: float) -> str:
        return f"{self.done / elapsed:,.0f} {self.unit}/s" if elapsed > 0 else f"- {self.unit}/s"
