"""What the workflow machinery costs around the jobs: overhead of a run, DAG building, imports.

    # 1. a whole run (the CPU demo, as `make run` does), then its overhead from the benchmark files
    .venv/bin/python benchmarks/orchestration.py run --run-dir results/orch-demo --cores 2
    # 2. overhead of any finished run whose wall time you know
    .venv/bin/python benchmarks/orchestration.py overhead --run-dir results/demo --wall-seconds 745
    # 3. `snakemake -n` on a run with 10 DEFT iterations finished and 20 trials per AutoML phase
    .venv/bin/python benchmarks/orchestration.py dag --run-dir results/orch-10x20 --cores 2
    # 4. import time of each rule script (a fresh interpreter per script)
    .venv/bin/python benchmarks/orchestration.py imports

Overhead: every job writes a Snakemake benchmark file (rules/*.smk, `benchmark:`) with its wall
seconds `s`; the file is written when the job ends, so the job ran over [mtime - s, mtime].
Reported: the issue's (wall - sum of job seconds) / wall, which goes negative when jobs overlap, and
the share of the wall time in which no job was running (wall - union of job intervals) / wall, which
is the machinery's own cost (DAG building, scheduling, spawning each job's interpreter, checkpoint
re-evaluation) whatever the concurrency.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def job_intervals(run_dir: Path) -> list[dict]:
    """One entry per job benchmark file: rule path, seconds, [start, end] in epoch seconds."""
    jobs = []
    for path in sorted((run_dir / "benchmarks").rglob("*.tsv")):
        with open(path) as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            continue
        seconds = float(rows[-1]["s"])
        end = path.stat().st_mtime
        jobs.append({"job": str(path.relative_to(run_dir / "benchmarks")), "seconds": seconds,
                     "start": end - seconds, "end": end})
    return jobs


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + (current_end - current_start if current_end is not None else 0.0)


def overhead(run_dir: Path, wall_seconds: float, started_at: float | None = None) -> dict:
    jobs = job_intervals(run_dir)
    if started_at is not None:  # only this invocation's jobs
        jobs = [job for job in jobs if job["end"] >= started_at]
    busy = union_seconds([(job["start"], job["end"]) for job in jobs])
    job_sum = sum(job["seconds"] for job in jobs)
    by_rule: dict[str, list[float]] = {}
    for job in jobs:
        rule = job["job"].split("/")[-1].removesuffix(".tsv").rstrip("0123456789") or job["job"]
        by_rule.setdefault(rule, []).append(job["seconds"])
    return {
        "wall_seconds": wall_seconds, "jobs": len(jobs), "sum_job_seconds": job_sum, "busy_seconds": busy,
        "overhead_issue_formula_pct": 100 * (wall_seconds - job_sum) / wall_seconds,
        "no_job_running_pct": 100 * (wall_seconds - busy) / wall_seconds,
        "per_job_kind": {rule: {"count": len(s), "median_seconds": median(s), "total_seconds": sum(s)}
                         for rule, s in sorted(by_rule.items())},
    }


def snakemake(configfile: Path | None, run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake on ``configfile`` (None: the demo, as `make run` starts it) with this run dir."""
    config_args = ["--configfile", str(configfile)] if configfile else ["--profile", "profiles/local"]
    return subprocess.run([SNAKEMAKE, *config_args, *args, "--config", f"run_dir={run_dir}"], cwd=REPO,
                          capture_output=True, text=True)


def run_and_measure(run_dir: Path, cores: int, configfile: Path | None) -> dict:
    started = time.time()
    proc = snakemake(configfile, run_dir, "--cores", str(cores))
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return overhead(run_dir, wall, started_at=started)


def time_dry_run(run_dir: Path, configfile: Path | None, repeats: int) -> dict:
    seconds, jobs_line = [], ""
    for _ in range(repeats):
        started = time.perf_counter()
        proc = snakemake(configfile, run_dir, "-n")
        seconds.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        jobs_line = next((line for line in (proc.stdout + proc.stderr).splitlines() if "Nothing to be done" in line
                          or line.startswith("total")), jobs_line)
    state = json.loads((run_dir / "deft_state.json").read_text())
    return {"dry_run_seconds": seconds, "median_seconds": median(seconds), "plan": jobs_line.strip(),
            "deft_iterations": sum(1 for key in state["iterations"] if key.startswith("iter")),
            "phase1_trials": len(list(run_dir.glob("phase1_automl/rec*/result.json"))),
            "phase3_trials": len(list(run_dir.glob("final_automl/rec*/result.json")))}


def rule_script_imports() -> dict:
    """Seconds to import each rule script's modules in a fresh interpreter, minus a bare interpreter."""
    def fresh(code: str) -> float:
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO / "scripts")})
            samples.append(time.perf_counter() - started)
        return median(samples)

    bare = fresh("pass")
    result = {"bare_interpreter_seconds": bare,
              "snakemake_script_module_seconds": fresh("import snakemake.script") - bare, "scripts": {}}
    for script in sorted((REPO / "scripts").glob("*.py")):
        modules = sorted({node.module for node in ast.walk(ast.parse(script.read_text()))
                          if isinstance(node, ast.ImportFrom) and node.module})
        result["scripts"][script.stem] = fresh("; ".join(f"import {m}" for m in modules)) - bare
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["run", "overhead", "dag", "imports"])
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=None,
                        help="run/dag: a config instead of the demo's profiles/local")
    parser.add_argument("--wall-seconds", type=float, help="overhead: the run's wall time")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    run_dir = args.run_dir.resolve() if args.run_dir else None
    if args.what == "run":
        result = run_and_measure(run_dir, args.cores, args.configfile)
    elif args.what == "overhead":
        result = overhead(run_dir, args.wall_seconds)
    elif args.what == "dag":
        config = args.configfile or REPO / "benchmarks" / "orchestration_10x20.yaml"
        if not (run_dir / "final_automl" / "best.pth").exists():
            build = run_and_measure(run_dir, args.cores, config)
            print(f"built the run: {json.dumps(build)}", flush=True)
        result = time_dry_run(run_dir, config, args.repeats)
    else:
        result = rule_script_imports()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
