"""The large demo preset through all three phases on one GPU: the trajectory, time per rule kind, the
share of job time that is not training, and how busy the GPU was.

    PYTHONPATH=scripts python3 benchmarks/large_run.py --kind smt --out-dir /tmp/large \\
        --json benchmarks/results/large_run_smt_h200.json

Generates the ``large`` preset of the world (on every core, timed), then runs the workflow with
``config/large.yaml`` over ``config/config.yaml`` (``--set KEY=VALUE`` for more), sampling
``nvidia-smi`` utilisation every 0.5 s while it runs. Job seconds per rule kind come from the jobs'
own Snakemake benchmark files (``orchestration.overhead``); "training" is the AutoML trials and the
DEFT retrains, everything else (inference, SDG, bookkeeping) is the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "benchmarks"))

from aoideft.demo.workspace import DemoConfig, generate_workspace  # noqa: E402
from orchestration import overhead  # noqa: E402

TRAINING_KINDS = ("rec", "train")  # automl trials (rec<k>) and DEFT retrains (iter<N>/train)
# What the jobs import, for --pycache: the rule scripts' modules, what training and Optuna's GP sampler
# import lazily (torch._dynamo through the optimiser; scipy's optimiser and statistics), Snakemake's
# script preamble. A module left out is compiled by the first job that imports it, and cached then.
JOB_IMPORTS = ("aoideft.workflow.deft_jobs", "aoideft.workflow.deft_eval_jobs", "aoideft.workflow.automl_jobs",
               "aoideft.workflow.final_jobs", "aoideft.workflow.preflight", "aoideft.workflow.intake",
               "aoideft.workflow.handoff", "aoideft.trainer", "aoideft.inference", "torch._dynamo",
               "optuna.samplers", "scipy.optimize", "scipy.stats", "scipy.ndimage", "snakemake.script", "pulp")


def sample_gpu(samples: list[float], stop: threading.Event) -> None:
    """nvidia-smi's utilisation.gpu (%) every 0.5 s until ``stop``."""
    if shutil.which("nvidia-smi") is None:
        return
    while not stop.is_set():
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            samples.append(float(out.stdout.split()[0]))
        stop.wait(0.5)


def trajectory(run: Path) -> list[dict]:
    rows = []
    labels = ["baseline", *sorted((p.name for p in run.glob("iter*")), key=lambda name: int(name[4:])), "final_automl"]
    for label in labels:
        best_path = run / label / "evaluate" / "best.json"
        if not best_path.is_file():
            continue
        best = json.loads(best_path.read_text())
        decision = run / label / "decision.json"
        halves = best.get("kpi_halves") or {}
        rows.append({"model": label, "kpi_far_pct": best["far_pct"],
                     "held_out_far_pct": halves.get("held_out", {}).get("far_pct"),
                     "held_out_far_99_9": halves.get("held_out", {}).get("far_at_recall_99_9"),
                     "held_out_deployable_far_pct": halves.get("held_out", {}).get("deployable_far_pct"),
                     "held_out_deployable_recall": halves.get("held_out", {}).get("deployable_recall"),
                     "val_far_pct": best["val_far_pct"], "val_expected_far_pct": best["val_selection"]["expected_far_pct"],
                     "accepted": json.loads(decision.read_text()).get("accepted") if decision.is_file() else None})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("smt", "bare_board"), default="smt")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--preset", default="large", help="another preset for a quick check (tiny)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--timeout", type=float, default=None, help="stop the workflow after this many seconds "
                        "and report what finished (the device's calls are limited)")
    parser.add_argument("--resume", action="store_true", help="keep the workspace and run folder of an earlier "
                        "call and let Snakemake finish the run (the wall and job figures then cover this call only)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--pycache", type=Path, default=None,
                        help="a bytecode cache for the jobs (PYTHONPYCACHEPREFIX), filled before the workflow "
                        "starts: for a machine whose Python packages carry no .pyc and keep none (the device "
                        "machine), so that each job does not compile what it imports, as no installed "
                        "environment makes it do (benchmarks/README.md, the profile of every job)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = args.out_dir.resolve()
    workspace, run = out / f"workspace_{args.kind}", out / f"run_{args.kind}"
    started = time.time()
    manifest = workspace / "demo_manifest.json"
    if args.resume and manifest.is_file():  # a run a device call's limit stopped: Snakemake resumes it
        splits = json.loads(manifest.read_text())["splits"]
        generated = {"rows": {name: split["rows"] for name, split in splits.items()}, "images": None}
    else:
        generated = generate_workspace(workspace, DemoConfig.from_preset(args.preset, kind=args.kind, seed=args.seed),
                                       force=True)
    generate_s = time.time() - started

    config = {"workspace": str(workspace), "run_dir": str(run), "demo": {"kind": args.kind, "preset": args.preset,
                                                                         "seed": args.seed}}
    for item in args.overrides:  # dotted keys, YAML values, into the run's config file
        key, _, value = item.partition("=")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    config_path = out / f"config_{args.kind}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
               str(REPO / "config" / "large.yaml"), str(config_path), "--cores", str(args.cores),
               "--resources", "gpu=1", "--rerun-incomplete"]
    env = {**os.environ, "AOIDEFT_GPU_LOCK_DIR": str(out / "gpu-locks")}
    warmup_s = None
    if args.pycache is not None:
        env["PYTHONPYCACHEPREFIX"] = str(args.pycache.resolve())
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        warmup_started = time.time()
        subprocess.run([sys.executable, "-c", f"import {', '.join(JOB_IMPORTS)}"], check=True, env=env,
                       cwd=REPO)
        warmup_s = time.time() - warmup_started
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpu, args=(samples, stop), daemon=True)
    sampler.start()
    workflow_started = time.time()
    with open(out / f"snakemake_{args.kind}.log", "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   env=env)
        try:
            code = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            process.terminate()
            code = process.wait()
    wall = time.time() - workflow_started
    stop.set()
    sampler.join()
    finished = (run / "best_model.json").is_file()
    if code != 0 and not finished:
        print(f"snakemake stopped ({code}) before the end; reporting what finished", file=sys.stderr)

    costs = overhead(run, wall, workflow_started)
    kinds = costs["per_job_kind"]
    training = sum(v["total_seconds"] for k, v in kinds.items() if k in TRAINING_KINDS)
    report = {
        "kind": args.kind, "seed": args.seed, "rows": generated["rows"], "generate_seconds": generate_s,
        "bytecode_warmup_seconds": warmup_s,
        "generate_images": generated["images"], "workflow_wall_seconds": wall, "cores": args.cores,
        "job_seconds_by_kind": kinds, "training_job_seconds": training,
        "not_training_share_pct": 100 * (costs["sum_job_seconds"] - training) / max(costs["sum_job_seconds"], 1e-9),
        "no_job_running_pct": costs["no_job_running_pct"],
        "gpu_busy_mean_pct": sum(samples) / len(samples) if samples else None, "gpu_samples": len(samples),
        "finished": finished,
        "trajectory": trajectory(run),
        "delivered": json.loads((run / "best_model.json").read_text()) if finished else None,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "job_seconds_by_kind"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if finished else 1  # what finished is reported either way; a wrapper needs to know


if __name__ == "__main__":
    sys.exit(main())
