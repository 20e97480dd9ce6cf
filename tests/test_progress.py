"""Progress lines of long jobs: the helper, and the jobs that use it (decode, train, infer, embed, SDG)."""

from __future__ import annotations

import re

import pytest

from aoideft import progress

STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_logs_start_every_n_rows_with_rate_and_eta_and_the_end():
    lines, clock = [], FakeClock()
    bar = progress.Progress("inference kpi.csv", 10_000, every=4000, emit=lines.append, clock=clock).start("(cpu)")
    clock.now += 10
    bar.advance(3000)  # below the first multiple: silent
    clock.now += 10
    bar.advance(2000)  # 5,000 rows in 20 s: 250 rows/s, 5,000 left -> 20 s
    clock.now += 30
    bar.advance(5000)  # the last rows: only the end line says so
    assert bar.finish("cache 3 hits") == pytest.approx(50.0)
    assert lines == ["inference kpi.csv: 10,000 rows (cpu)",
                     "inference kpi.csv: 5,000/10,000 rows (50%) in 20s, 250 rows/s, ETA 20s",
                     "inference kpi.csv: done, 10,000 rows in 50s (200 rows/s); cache 3 hits"]


def test_one_advance_over_several_multiples_logs_once():
    lines = []
    bar = progress.Progress("x", 100, every=10, emit=lines.append, clock=FakeClock())
    bar.advance(35)
    bar.advance(1)
    assert len(lines) == 1 and lines[0].startswith("x: 35/100 rows (35%)")
    with pytest.raises(ValueError):
        progress.Progress("x", 1, every=0)


def test_log_lines_are_timestamped_and_durations_read_well(capsys):
    progress.log("decoding starts")
    assert re.fullmatch(STAMP + "decoding starts\n", capsys.readouterr().out)
    assert [progress.fmt_duration(s) for s in (4.25, 42, 245, 7620, None, float("nan"))] == \
        ["4.2s", "42s", "4m05s", "2h07m", "?", "?"]
    assert progress.eta_seconds(0, 10, 5.0) is None
    assert progress.eta_seconds(2, 10, 5.0) == pytest.approx(20.0)
    assert progress.eta_seconds(10, 10, 5.0) == 0.0
