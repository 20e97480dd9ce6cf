"""Ablation with the controls a sceptic asks for: does the three-phase pipeline beat the same compute
without the loop's data?

    .venv/bin/python benchmarks/deft_ablation.py --kind smt --seeds 1 2 3 --out-dir results/ablation_smt \\
        --json benchmarks/results/deft_ablation_smt_cpu_2cores.json

Per seed s (the demo workspace is generated with seed s, and AutoML and DEFT use seed s too), Phase 1
and the baseline's evaluation run once in ``<out>/<kind>_seed<s>/base``; each variant starts from a
copy of it (Phase 1's winner is shared):

- ``pipeline``: the workflow as configured (failure-mode engine, KPI holdout, gate), all three phases;
- ``targeting_gate``: the same, with the gate deciding on the KPI targeting half
  (``deft.gate.basis: targeting``): the gate basis's control, side by side;
- ``random`` (control b): the same loop and Phase 3, the same row budget filled with random pool rows;
- ``tao`` (control c): TAO's engine and TAO's selection (``deft.engine: tao``, ``deft.kpi_holdout: 0``),
  all three phases. TAO chooses on the whole KPI set, held-out rows included, so its held-out
  figure is optimistic: the control is given an advantage, not denied one;
- ``same_epochs`` (control a): Phase 1's winner trained on the base set alone for as many more
  epochs as the pipeline's delivered model had after Phase 1 (retrain epochs x iterations run +
  Phase 3's epochs), warm-started from it: the same compute without the new data.

Reported per variant and seed, for the delivered model (``best_model.json``; for control a its one
model): FAR at 100% and 99.9% recall on the held-out KPI half (the same rows for every variant,
``deft.kpi_holdout``'s split), TAO's figure (whole KPI set, threshold chosen on it), the deployable
FAR on the held-out half and validation's selection score; then median and range over seeds.
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

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from aoideft import holdout, inference, kpi, spec as tao_spec, trainer  # noqa: E402

SNAKEMAKE = [sys.executable, "-m", "snakemake"]  # the interpreter that has this project's packages
VARIANTS = {
    "pipeline": {},
    "targeting_gate": {"deft.gate.basis": "targeting"},
    "random": {"deft.engine": "random"},
    "tao": {"deft.engine": "tao", "deft.kpi_holdout": 0},
}
CONTROL_A = "same_epochs"
WALL_FILE = "ablation_wall_s.json"  # a variant run's wall time, kept for --reuse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--kind", choices=("smt", "bare_board"), default="smt")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS, CONTROL_A], choices=[*VARIANTS, CONTROL_A])
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "ablation")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores of each run")
    parser.add_argument("--gpus", type=int, default=1, help="snakemake --resources gpu=N of each run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, dotted key and a YAML value")
    parser.add_argument("--tag", default=None,
                        help="run each variant in <variant>-<tag> (a --set experiment beside the variants' own runs)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--reuse", action="store_true",
                        help="keep variant runs that finished (best_model.json) in --out-dir and only read their "
                             "figures: a campaign can be run in parts")
    parser.add_argument("--bases-only", action="store_true",
                        help="run each seed's shared part (Phase 1 and the baseline's evaluation) and stop")
    parser.add_argument("--gather", action="store_true",
                        help="run nothing: gather the finished runs in --out-dir (what a campaign run in parts "
                             "reached; each variant's median is over the seeds it finished)")
    return parser.parse_args()


def with_overrides(config: dict, overrides: dict) -> dict:
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def snakemake(config: dict, config_path: Path, log: Path, cores: int, gpus: int, *targets: str) -> None:
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config))
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "--cores", str(cores),
               "--resources", f"gpu={gpus}", "--rerun-incomplete", *targets]
    with open(log, "w") as handle:
        code = subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
                               env={**os.environ, "AOIDEFT_GPU_LOCK_DIR": str(config_path.with_suffix(".gpu-locks"))})
    if code != 0:
        raise SystemExit(f"snakemake failed ({code}); see {log}:\n" + log.read_text()[-3000:])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def figures(validation_csv: Path, kpi_csv: Path, held_out: pd.Series) -> dict:
    """The comparison's figures of one scored model (its validation and KPI inference CSVs)."""
    validation = pd.read_csv(validation_csv, dtype=str, keep_default_na=False)
    scored = pd.read_csv(kpi_csv, dtype=str, keep_default_na=False)
    keys = scored["input_path"] + "/" + scored["object_name"]
    mask = keys.map(held_out).to_numpy(dtype=bool)
    val_truth, val_scores = kpi.defect_mask(validation["label"]), kpi.parse_scores(validation[kpi.SCORE_COLUMN])
    calibration = kpi.operating_point_at_recall(val_truth, val_scores).threshold
    truth, scores = kpi.defect_mask(scored["label"]), kpi.parse_scores(scored[kpi.SCORE_COLUMN])
    held_truth, held_scores = truth[mask], scores[mask]
    deployable = kpi.operating_point_at_threshold(held_truth, held_scores, calibration)
    return {"held_out_far_pct": kpi.operating_point_at_recall(held_truth, held_scores).far_pct,
            "held_out_far_99_9": kpi.operating_point_at_recall(held_truth, held_scores, 0.999).far_pct,
            "held_out_deployable_far_pct": deployable.far_pct, "held_out_deployable_recall": deployable.recall,
            "kpi_far_pct_tao": kpi.operating_point_at_recall(truth, scores).far_pct,
            "val_expected_far_pct": kpi.selection_score(val_truth, val_scores).expected_far_pct}


def delivered_figures(run: Path, held_out: pd.Series) -> dict:
    best_model = read_json(run / "best_model.json")
    best = read_json(run / best_model["iteration"] / "evaluate" / "best.json")
    summary = read_json(run / "deft" / "summary.json")
    trajectory = [{"model": label, "accepted": read_json(run / label / "decision.json").get("accepted", True),
                   **figures(run / read_json(run / label / "evaluate" / "best.json")["validation_inference_csv"],
                             run / read_json(run / label / "evaluate" / "best.json")["inference_csv"], held_out)}
                  for label in summary["iterations"]]
    phase3 = run / "final_automl" / "evaluate" / "best.json"
    if phase3.is_file():
        trajectory.append({"model": "final_automl", **figures(run / read_json(phase3)["validation_inference_csv"],
                                                              run / read_json(phase3)["inference_csv"], held_out)})
    return {"delivered": best_model["iteration"], "iterations_run": summary["iterations_run"],
            "stop_reason": summary["stop_reason"],
            **figures(run / best["validation_inference_csv"], run / best["inference_csv"], held_out),
            "trajectory": trajectory}


def control_same_epochs(base: Path, pipeline: Path, config: dict, held_out: pd.Series, out: Path,
                        reuse: bool = False) -> dict:
    """Phase 1's winner trained on the base set for the pipeline's post-Phase-1 epochs, then scored."""
    summary = read_json(pipeline / "deft" / "summary.json")
    phase3 = read_json(pipeline / "final_automl" / "best_rec.json")
    epochs = (config["deft"]["retrain_epochs"] or 0) * summary["iterations_run"]
    epochs += phase3["best"].get("observed_budget", {}).get("num_epochs") or 0
    result = {"delivered": f"Phase 1 winner + {epochs} epochs on the base set", "epochs": epochs}
    if reuse and (out / "inference.csv").is_file():
        return {**result, **figures(out / "validation_inference.csv", out / "inference.csv", held_out)}
    spec = tao_spec.load_spec(base / "specs" / "baseline_spec_automl.yaml")
    state = read_json(base / "deft_state.json")["config"]
    spec = tao_spec.with_overrides(spec, {
        "dataset.classify.train_dataset.csv_path": state["training_csv"],
        "dataset.classify.train_dataset.images_dir": state["images_dir"],
        "dataset.classify.validation_dataset.csv_path": state["validation_csv"],
        "dataset.classify.validation_dataset.images_dir": state["images_dir"],
        "train.num_epochs": max(1, epochs), "train.seed": config["deft"]["seed"] + 1,
    })
    checkpoint = base / read_json(base / "baseline" / "evaluate" / "best.json")["best_ckpt_path"]
    trainer.train_from_spec(spec, out / "train", pretrained=checkpoint, options={"verbose": False})
    best = out / "train" / "best_val.pth"
    inference.run_inference(best, state["validation_csv"], state["images_dir"], out / "validation_inference.csv")
    inference.run_inference(best, state["kpi_test_csv"], state["images_dir"], out / "inference.csv")
    return {**result, **figures(out / "validation_inference.csv", out / "inference.csv", held_out)}


def describe(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def main() -> None:
    args = parse_args()
    config = yaml.safe_load(args.config.read_text())
    config = with_overrides(config, {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[int, dict]] = {variant: {} for variant in args.variants}
    timing: dict[str, float] = {}

    def tagged(variant: str) -> str:
        return f"{variant}-{args.tag}" if args.tag else variant

    for seed in args.seeds:
        root = out / f"{args.kind}_seed{seed}"
        seeded = with_overrides(config, {"workspace": str(root / "workspace"), "demo.kind": args.kind,
                                         "demo.preset": args.preset, "demo.seed": seed, "automl.seed": seed,
                                         "deft.seed": seed})
        base = root / "base"
        if args.gather and not (base / "baseline" / "decision.json").is_file():
            continue
        started = time.time()
        snakemake({**seeded, "run_dir": str(base)}, root / "configs" / "base.yaml", root / "base.log", args.cores,
                  args.gpus, "baseline/decision.json")
        timing[f"seed{seed}/base"] = time.time() - started
        if args.bases_only:
            continue
        kpi_frame = pd.read_csv(root / "workspace" / "kpi" / "testing_set.csv", dtype=str, keep_default_na=False)
        mask = holdout.held_out_mask(kpi_frame, config["deft"]["kpi_holdout"] or 0.5)
        held_out = pd.Series(mask, index=kpi_frame["input_path"] + "/" + kpi_frame["object_name"])
        for variant, changes in VARIANTS.items():
            if variant not in args.variants:
                continue
            run = root / tagged(variant)
            if args.gather and not (run / "best_model.json").is_file():
                continue
            if (args.reuse or args.gather) and (run / "best_model.json").is_file():
                results[variant][seed] = delivered_figures(run, held_out)
                timing[f"seed{seed}/{variant}"] = read_json(run / WALL_FILE)["wall_s"]
                continue
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base, run, symlinks=True)  # copy2 keeps mtimes: Snakemake redoes nothing shared
            if changes.get("deft.kpi_holdout") == 0:  # TAO's selection: the baseline is evaluated again
                for name in ("baseline/evaluate", "baseline/embeddings", "baseline/rca", "baseline/decision.json"):
                    target = run / name
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
            started = time.time()
            snakemake(with_overrides({**seeded, "run_dir": str(run)}, changes), root / "configs" / f"{run.name}.yaml",
                      root / f"{run.name}.log", args.cores, args.gpus)
            timing[f"seed{seed}/{variant}"] = time.time() - started
            (run / WALL_FILE).write_text(json.dumps({"wall_s": timing[f"seed{seed}/{variant}"]}) + "\n")
            results[variant][seed] = delivered_figures(run, held_out)
            print(f"{args.kind} seed {seed} {variant}: held-out FAR@100% {results[variant][seed]['held_out_far_pct']:.2f}%",
                  flush=True)
        finished = (root / tagged(CONTROL_A) / "inference.csv").is_file()
        if CONTROL_A in args.variants and (finished or not args.gather):
            started = time.time()
            reuse = finished and (args.reuse or args.gather)
            results[CONTROL_A][seed] = control_same_epochs(base, root / tagged("pipeline"), seeded, held_out,
                                                           root / tagged(CONTROL_A),
                                                           reuse=reuse)
            if not reuse:
                timing[f"seed{seed}/{CONTROL_A}"] = time.time() - started
            print(f"{args.kind} seed {seed} {CONTROL_A}: held-out FAR@100% "
                  f"{results[CONTROL_A][seed]['held_out_far_pct']:.2f}%", flush=True)

    keys = ("held_out_far_pct", "held_out_far_99_9", "held_out_deployable_far_pct", "kpi_far_pct_tao",
            "val_expected_far_pct")
    summary = {variant: {key: describe([runs[s][key] for s in sorted(runs)]) for key in keys}
               for variant, runs in results.items() if runs}
    print("| variant | held-out FAR@100% median (range) | held-out FAR@99.9% | held-out deployable | TAO's figure (KPI set) |")
    print("|---|---|---|---|---|")
    for variant, stats in summary.items():
        cells = [f"{stats[k]['median']:.2f} ({stats[k]['min']:.2f}-{stats[k]['max']:.2f})" for k in keys[:4]]
        print(f"| {variant} | " + " | ".join(cells) + " |")
    report = {"kind": args.kind, "preset": args.preset, "config": str(args.config), "overrides": args.overrides,
              "seeds": args.seeds, "cores": args.cores, "summary": summary, "runs": results, "wall_s": timing}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
