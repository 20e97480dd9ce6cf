"""What the default demo lets a model reach: the loop's ceiling, measured without the loop.

    .venv/bin/python benchmarks/demo_ceiling.py --kind smt --seeds 1 2 3 --work-dir results/ceiling \\
        --json benchmarks/results/demo_ceiling_smt_cpu_2cores.json

Per seed, the demo workspace (the preset, generated with the seed, or reused from ``--workspace-root``)
and its workspace spec; ChangeNet-lite is trained from scratch, with the spec's hyperparameters, on:

- ``base``: the base training set (what Phase 1 sees);
- ``base_gap_pool``: the base set plus every pool row with gap content (``demo_truth.csv``): the
  most a perfect loop could mine;
- ``base_random_pool``: the base set plus as many random pool rows (the control);
- ``base_pool``: the base set plus the whole pool.

and scored on validation and on the KPI set. Reported: FAR@100% recall on the held-out KPI half
(``holdout.held_out_mask`` at 0.5, the loop's split), on the held-out rows without gap content, the
weakest held-out defects (label, gap content, score) and the strongest held-out PASS rows. If
``base_gap_pool`` cannot reach the demo's KPI target, no loop can on this demo: the demo, not the
loop, sets the figure. ``demo_truth.csv`` is read here only, never by a model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from aoideft import csvdata, fsutil, holdout, inference, kpi, spec as tao_spec, train_cli, trainer  # noqa: E402
from aoideft.demo import workspace as demo_workspace  # noqa: E402

TRAIN_CSV, VAL_CSV = "train/base/training_set.csv", "train/base/validation_set.csv"
KPI_CSV, POOL_CSV = "kpi/testing_set.csv", "augmentation/mining_pool/mining_pool.csv"
ARMS = ("base", "base_gap_pool", "base_random_pool", "base_pool")


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def training_rows(ws: Path, truth: pd.DataFrame, arm: str, gap_rows: int | None = None) -> pd.DataFrame:
    base = read_csv(ws / TRAIN_CSV)
    if arm == "base":
        return base
    pool = read_csv(ws / POOL_CSV)
    gap = set(truth.loc[(truth["split"] == "pool") & (truth["gap_content"] != ""), "object_name"])
    if arm == "base_gap_pool":
        pool = pool[pool["object_name"].isin(gap)]
        if gap_rows is not None and gap_rows < len(pool):  # what a loop with this budget could add at best
            pool = pool.sample(n=gap_rows, random_state=0)
    elif arm == "base_random_pool":  # the control: as many rows, drawn at random
        pool = pool.sample(n=int(pool["object_name"].isin(gap).sum()), random_state=0)
    return pd.concat([base, pool], ignore_index=True)


def scored_figures(ws: Path, truth: pd.DataFrame, val_scored: pd.DataFrame, kpi_scored: pd.DataFrame,
                   weakest: int) -> dict:
    held = holdout.held_out_mask(kpi_scored, 0.5)
    gap = kpi_scored["object_name"].map(truth.set_index("object_name")["gap_content"]).fillna("")
    truth_rows = truth.set_index("object_name")
    is_defect = kpi.defect_mask(kpi_scored["label"])
    scores = kpi.parse_scores(kpi_scored[kpi.SCORE_COLUMN])
    no_gap = held & (gap == "").to_numpy()
    val_truth, val_scores = kpi.defect_mask(val_scored["label"]), kpi.parse_scores(val_scored[kpi.SCORE_COLUMN])
    threshold = kpi.operating_point_at_recall(val_truth, val_scores).threshold
    frame = kpi_scored.assign(score=scores, gap=gap.to_numpy(), held=held)[held]
    defects = frame[frame["label"] != csvdata.PASS_LABEL].nsmallest(weakest, "score")
    passes = frame[frame["label"] == csvdata.PASS_LABEL].nlargest(weakest, "score")

    def listing(rows: pd.DataFrame) -> list[dict]:
        return [{"object_name": r.object_name, "label": r.label, "gap": r.gap, "score": round(float(r.score), 4),
                 "nuisance": truth_rows.at[r.object_name, "nuisance"],
                 "severity": truth_rows.at[r.object_name, "severity"]} for r in rows.itertuples()]

    return {
        "held_out_far_pct": kpi.operating_point_at_recall(is_defect[held], scores[held]).far_pct,
        "held_out_no_gap_far_pct": kpi.operating_point_at_recall(is_defect[no_gap], scores[no_gap]).far_pct,
        "held_out_deployable_far_pct": kpi.operating_point_at_threshold(is_defect[held], scores[held], threshold).far_pct,
        "held_out_deployable_recall": kpi.operating_point_at_threshold(is_defect[held], scores[held], threshold).recall,
        "kpi_far_pct_tao": kpi.operating_point_at_recall(is_defect, scores).far_pct,
        "val_far_pct": kpi.operating_point_at_recall(val_truth, val_scores).far_pct,
        "weakest_held_out_defects": listing(defects),
        "strongest_held_out_pass": listing(passes),
    }


def run_arm(ws: Path, truth: pd.DataFrame, arm: str, out: Path, epochs: int | None, seed: int, weakest: int,
            overrides: dict, threads: int | None, train_csv: Path | None = None,
            train_images: Path | None = None, gap_rows: int | None = None) -> dict:
    """Train one arm from scratch (``train_csv``: that CSV, its images under ``train_images``) and score it."""
    out.mkdir(parents=True, exist_ok=True)
    rows = read_csv(train_csv) if train_csv else training_rows(ws, truth, arm, gap_rows)
    fsutil.write_csv(out / "train.csv", rows)
    spec = tao_spec.load_spec(ws / "specs" / "baseline_spec.yaml")
    settings = {
        "dataset.classify.train_dataset.csv_path": str(out / "train.csv"),
        "dataset.classify.train_dataset.images_dir": str(train_images or ws / "images"),
        "dataset.classify.validation_dataset.csv_path": str(ws / VAL_CSV),
        "dataset.classify.validation_dataset.images_dir": str(ws / "images"),
        "train.seed": seed, **overrides,
    }
    if epochs:
        settings["train.num_epochs"] = epochs
    spec = tao_spec.with_overrides(spec, settings)
    started = time.perf_counter()
    trainer.train_from_spec(spec, out / "train", options={"verbose": False, "threads": threads})
    train_s = time.perf_counter() - started
    best = out / "train" / "best_val.pth"
    inference.run_inference(best, str(ws / VAL_CSV), str(ws / "images"), out / "validation_inference.csv")
    inference.run_inference(best, str(ws / KPI_CSV), str(ws / "images"), out / "inference.csv")
    figures = scored_figures(ws, truth, read_csv(out / "validation_inference.csv"), read_csv(out / "inference.csv"),
                             weakest)
    defects = rows["label"] != csvdata.PASS_LABEL
    return {"train_rows": len(rows), "train_defects": int(defects.sum()), "train_seconds": train_s, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("smt", "bare_board"), default="smt")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--epochs", type=int, default=None, help="train.num_epochs (default: the spec's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="spec override for every arm, dotted key and a YAML value")
    parser.add_argument("--demo", dest="demo_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="DemoConfig override (e.g. train=800), a YAML value")
    parser.add_argument("--workspace-root", type=Path, default=None,
                        help="reuse <root>/<kind>_seed<s>/workspace (deft_ablation.py's layout) instead of generating")
    parser.add_argument("--work-dir", type=Path, default=REPO / "results" / "ceiling")
    parser.add_argument("--train-csv", type=Path, default=None,
                        help="instead of the arms: train on this CSV (e.g. a run's train_combined_iter<N>.csv)")
    parser.add_argument("--train-images", type=Path, default=None, help="the image root of --train-csv")
    parser.add_argument("--gap-rows", type=int, default=None,
                        help="base_gap_pool: at most this many gap rows (a random subset)")
    parser.add_argument("--weakest", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per training")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    overrides = {k: train_cli.parse_override_value(v) for k, v in (a.split("=", 1) for a in args.overrides)}
    demo_overrides = {k: train_cli.parse_override_value(v) for k, v in (a.split("=", 1) for a in args.demo_overrides)}
    arms = ["csv"] if args.train_csv else args.arms
    runs: dict[str, dict[int, dict]] = {arm: {} for arm in arms}
    for seed in args.seeds:
        if args.workspace_root:
            ws = args.workspace_root / f"{args.kind}_seed{seed}" / "workspace"
        else:
            ws = args.work_dir / f"{args.kind}_seed{seed}" / "workspace"
            if not (ws / demo_workspace.TRUTH_PATH).is_file():
                config = demo_workspace.DemoConfig.from_preset(args.preset, kind=args.kind, seed=seed, **demo_overrides)
                demo_workspace.generate_workspace(ws, config)
        truth = read_csv(ws / demo_workspace.TRUTH_PATH)
        for arm in arms:
            result = run_arm(ws, truth, arm, args.work_dir / f"{args.kind}_seed{seed}" / arm, args.epochs, seed,
                             args.weakest, overrides, args.threads, args.train_csv, args.train_images, args.gap_rows)
            runs[arm][seed] = result
            print(json.dumps({"seed": seed, "arm": arm, **{k: v for k, v in result.items()
                                                            if not k.startswith(("weakest", "strongest"))}}),
                  flush=True)
    summary = {arm: {key: {"median": statistics.median(r[key] for r in per_seed.values()),
                           "min": min(r[key] for r in per_seed.values()),
                           "max": max(r[key] for r in per_seed.values())}
                     for key in ("held_out_far_pct", "held_out_no_gap_far_pct", "held_out_deployable_far_pct",
                                 "val_far_pct")}
               for arm, per_seed in runs.items()}
    print(json.dumps(summary, indent=1))
    if args.json:
        fsutil.write_json(args.json, {"kind": args.kind, "preset": args.preset, "seeds": args.seeds,
                                      "epochs": args.epochs, "overrides": overrides, "demo": demo_overrides,
                                      "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
