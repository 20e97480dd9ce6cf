"""Ablation: TAO-style DEFT loop vs this failure-mode engine, same Phase 1 winner, same budgets, several seeds.

    .venv/bin/python benchmarks/deft_ablation.py --seeds 1 2 3 --out-dir results/ablation \\
        --json benchmarks/results/deft_ablation_cpu_2cores.json

Runs the workflow itself (Snakemake, this repository's rules) on any config (default: the demo's,
config/config.yaml; ``--config`` takes yours). Phase 1 and the baseline evaluation run once in
``<out-dir>/base``; every (engine, seed) run starts from a copy of it, so all runs share the Phase 1
winner, the pre-seeded baseline and its evaluation, and differ only in the loop:

- ``tao``: TAO's loop: per-label weak rows, label routing, unverified SDG (num_sdg pairs split by
  label), per-target mining, cut to the row budget;
- ``failure_modes``: failure-mode RCA, the budgeted integer program, verified mode-conditioned SDG,
  per-mode mining quotas.

Both get ``deft.max_iterations`` iterations and ``deft.budget.max_new_rows`` rows per iteration;
``deft.seed`` = the run's seed (SDG, clustering, retrain seeds); ``--set KEY=VALUE`` overrides any
other config key for all runs. Reported per run: the KPI FAR at
100% recall (threshold chosen on the KPI set, as TAO reports it) and the deployable FAR (threshold
calibrated on validation) of the model the loop ends with and of the loop's best model, with the
rows each iteration added.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]  # the interpreter that has this project's packages
ENGINES = ("tao", "failure_modes")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "ablation")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores of each run")
    parser.add_argument("--gpus", type=int, default=2, help="snakemake --resources gpu=N of each run")
    parser.add_argument("--parallel", type=int, default=1, help="(engine, seed) runs at the same time")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, dotted key and a YAML value, e.g. deft.retrain_epochs=12")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args()


def with_overrides(config: dict, overrides: list[str]) -> dict:
    config = copy.deepcopy(config)
    for item in overrides:
        key, _, value = item.partition("=")
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return config


def snakemake(config: dict, config_path: Path, target: str, cores: int, gpus: int, log: Path) -> subprocess.Popen:
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config))
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "--cores", str(cores),
               "--resources", f"gpu={gpus}", "--rerun-incomplete", target]
    handle = open(log, "w")
    return subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                            # one GPU-slot lock folder per run: parallel runs share the card(s)
                            env={**os.environ, "AOIDEFT_GPU_LOCK_DIR": str(config_path.with_suffix(".gpu-locks"))})


def wait(process: subprocess.Popen, log: Path) -> None:
    if process.wait() != 0:
        raise SystemExit(f"snakemake failed ({process.returncode}); see {log}:\n" + log.read_text()[-3000:])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def run_result(run: Path) -> dict:
    summary = read_json(run / "deft" / "summary.json")
    iterations = []
    for label in summary["iterations"]:
        best = read_json(run / label / "evaluate" / "best.json")
        gate = read_json(run / label / "dataset" / "gate.json") if label != "baseline" else {}
        iterations.append({"iteration": label, "far_pct": best["far_pct"], "deployable_far_pct": best["deployable_far_pct"],
                           "deployable_recall": best["deployable_recall"], "val_far_pct": best["val_far_pct"],
                           "rows_added": gate.get("rows_added", 0), "training_rows": gate.get("rows")})
    best_label = summary["best"]["iteration"]
    best = next(item for item in iterations if item["iteration"] == best_label)
    return {"stop_reason": summary["stop_reason"], "iterations": iterations, "final": iterations[-1],
            "best": best, "rows_added": sum(item["rows_added"] for item in iterations)}


def describe(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "pstdev": statistics.pstdev(values), "min": min(values),
            "max": max(values), "values": values}


def main() -> None:
    args = parse_args()
    config = with_overrides(yaml.safe_load(args.config.read_text()), args.overrides)
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = out / "base"
    base_config = {**copy.deepcopy(config), "run_dir": str(base)}
    print(f"Phase 1 and the baseline evaluation in {base} ...", flush=True)
    wait(snakemake(base_config, out / "configs" / "base.yaml", "baseline/embeddings/embeddings.json",
                   args.cores, args.gpus, out / "base.log"), out / "base.log")
    base_s = time.time() - started

    pending = [(engine, seed) for seed in args.seeds for engine in args.engines]
    running: list[tuple[str, int, subprocess.Popen, Path, float]] = []
    results: dict[str, dict[int, dict]] = {engine: {} for engine in args.engines}
    while pending or running:
        while pending and len(running) < args.parallel:
            engine, seed = pending.pop(0)
            run = out / f"{engine}_seed{seed}"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base, run, symlinks=True)  # copy2: mtimes kept, so Snakemake redoes nothing shared
            run_config = copy.deepcopy(config)
            run_config["run_dir"] = str(run)
            run_config.setdefault("deft", {}).update({"engine": engine, "seed": seed})
            log = out / f"{engine}_seed{seed}.log"
            print(f"{engine} seed {seed} ...", flush=True)
            running.append((engine, seed, snakemake(run_config, out / "configs" / f"{engine}_seed{seed}.yaml",
                                                    "deft/summary.json", args.cores, args.gpus, log), log, time.time()))
        time.sleep(2)
        for item in list(running):
            engine, seed, process, log, t0 = item
            if process.poll() is None:
                continue
            running.remove(item)
            wait(process, log)
            results[engine][seed] = {**run_result(out / f"{engine}_seed{seed}"), "wall_s": time.time() - t0}
            final = results[engine][seed]["final"]
            print(f"{engine} seed {seed}: final {final['iteration']} FAR {final['far_pct']:.2f}% "
                  f"(deployable {final['deployable_far_pct']:.2f}%), {results[engine][seed]['rows_added']} rows added",
                  flush=True)

    summary = {}
    for engine, runs in results.items():
        seeds = sorted(runs)
        summary[engine] = {
            "final_far_pct": describe([runs[s]["final"]["far_pct"] for s in seeds]),
            "final_deployable_far_pct": describe([runs[s]["final"]["deployable_far_pct"] for s in seeds]),
            "best_far_pct": describe([runs[s]["best"]["far_pct"] for s in seeds]),
            "best_deployable_far_pct": describe([runs[s]["best"]["deployable_far_pct"] for s in seeds]),
            "rows_added": describe([runs[s]["rows_added"] for s in seeds]),
        }
    comparison = None
    if set(ENGINES) <= set(results):
        comparison = {str(seed): {"tao": results["tao"][seed]["final"]["far_pct"],
                                  "failure_modes": results["failure_modes"][seed]["final"]["far_pct"],
                                  "engine_lower": results["failure_modes"][seed]["final"]["far_pct"]
                                  < results["tao"][seed]["final"]["far_pct"]}
                      for seed in args.seeds}
    baseline = read_json(base / "baseline" / "evaluate" / "best.json")
    report = {
        "config": str(args.config), "overrides": args.overrides, "seeds": args.seeds, "cores": args.cores,
        "max_iterations": config.get("deft", {}).get("max_iterations"),
        "max_new_rows": config.get("deft", {}).get("budget", {}).get("max_new_rows"),
        "baseline": {"far_pct": baseline["far_pct"], "deployable_far_pct": baseline["deployable_far_pct"]},
        "base_wall_s": base_s, "total_wall_s": time.time() - started,
        "summary": summary, "per_seed_final_far_pct": comparison, "runs": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
