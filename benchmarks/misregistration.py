"""Golden misregistration: the model options against it, and SDG at an equal row budget.

    OMP_NUM_THREADS=1 PYTHONPATH=scripts:benchmarks .venv/bin/python benchmarks/misregistration.py \\
        --worlds smt bare_board --seeds 1 2 3 --epochs 10 --threads 1 --work-dir results/misregistration \\
        --out benchmarks/results/misregistration_<machine>.json

Part ``ratio`` (per world, seed and model option): the default preset's demo workspace twice, aligned
and with every golden misregistered by up to ``--misregistration-px`` (the same rows, only the goldens
change); ChangeNet-lite trained on the base training set for ``--epochs`` epochs with the option, its
``best_val.pth`` scored on the KPI set; FAR@100% recall of each and their ratio (misregistered /
aligned). Options: ``old`` (no registration, pixel-aligned difference: the model before issue 15),
``align`` (golden registered to test by phase correlation), ``align_blur`` (registered, then the
sharper image of the pair blurred to the other's focus: the new default), ``tolerance`` (shift-tolerant feature
difference, ``--tolerance-px``), ``both``.

Part ``sdg`` (per world and seed, on the misregistered workspace, model option ``--sdg-option``): the
part-``ratio`` model is the baseline; its KPI inference is split into two halves by row (even/odd
positions of a seeded permutation): RCA takes the weak rows of the first half (TAO's top-K per label),
and ``--rows`` synthetic pairs are drawn for them by each SDG arm (``transplant``, ``procedural``,
``auto`` = the default split: procedural for PASS and the SMT labels, transplant for the rest, and
``auto_transplant_pass``: the same with transplanted PASS variants) from the base training rows,
TAO's label allocation, unverified; each arm (``none`` = no synthetic rows) retrains warm-started
from the baseline for ``--retrain-epochs`` on base + its rows, and is scored on the held-out second
half only (the rows RCA saw are never scored).

Everything runs on one device (``--device``, default CPU); finished runs in ``--work-dir`` are reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import machine, workspace_spec
from aoideft import fsutil, kpi, spec_settings, trainer
from aoideft.deft import assemble, rca, sdg
from aoideft.demo.workspace import DemoConfig, generate_workspace
from aoideft.inference import run_inference

OPTIONS = {
    "old": {"align": "none", "shift_tolerance_px": 0.0},
    "align": {"align": "phase", "shift_tolerance_px": 0.0},
    "align_blur": {"align": "phase_blur", "shift_tolerance_px": 0.0},
    "tolerance": {"align": "none", "shift_tolerance_px": None},  # None: --tolerance-px
    "both": {"align": "phase", "shift_tolerance_px": None},
}
# arm -> (synthesize's method, procedural_labels); none: no synthetic rows
SMT_LABELS = tuple(label for label in sdg.DEFAULT_PROCEDURAL_LABELS if label != "PASS")
SDG_ARMS = {"none": None, "procedural": ("procedural", ()), "transplant": ("transplant", ()),
            "auto": ("auto", sdg.DEFAULT_PROCEDURAL_LABELS), "auto_transplant_pass": ("auto", SMT_LABELS)}
WORLDS = ("smt", "bare_board")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["ratio", "sdg"], choices=("ratio", "sdg"))
    parser.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=WORLDS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--options", nargs="+", default=["old", "align_blur"], choices=sorted(OPTIONS))
    parser.add_argument("--misregistration-px", type=float, default=2.0)
    parser.add_argument("--tolerance-px", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sdg-option", default="align_blur", choices=sorted(OPTIONS))
    parser.add_argument("--sdg-arms", nargs="+", default=["none", "procedural", "transplant", "auto"],
                        choices=sorted(SDG_ARMS))
    parser.add_argument("--rows", type=int, default=40, help="synthetic rows per SDG arm (the row budget)")
    parser.add_argument("--top-k-per-label", type=int, default=25)
    parser.add_argument("--retrain-epochs", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("results/misregistration"))
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args()


def workspace(args: argparse.Namespace, world: str, seed: int, misregistered: bool) -> Path:
    shift = args.misregistration_px if misregistered else 0.0
    path = args.work_dir / "workspaces" / f"{world}_s{seed}_m{shift:g}"
    if not path.exists():
        generate_workspace(path, DemoConfig.from_preset("default", kind=world, seed=seed, misregistration_px=shift,
                                                        workers=1))
    return path


def model_options(args: argparse.Namespace, option: str) -> dict:
    chosen = dict(OPTIONS[option])
    if chosen["shift_tolerance_px"] is None:
        chosen["shift_tolerance_px"] = args.tolerance_px
    return {**chosen, "device": args.device, "threads": args.threads, "verbose": False}


def train(args, ws: Path, run_dir: Path, option: str, seed: int, *, epochs: int, train_csv: Path | None = None,
          images_dir: Path | None = None, pretrained: Path | None = None) -> dict:
    """Train (or reuse) a model in ``run_dir``; the summary."""
    summary_path = run_dir / "train_summary.json"
    if summary_path.is_file():
        return fsutil.read_json(summary_path)
    overrides = {"train.num_epochs": epochs, "train.seed": seed, "train.checkpoint_interval": epochs}
    if train_csv is not None:
        overrides["dataset.classify.train_dataset.csv_path"] = str(train_csv)
        overrides["dataset.classify.train_dataset.images_dir"] = str(images_dir)
    return trainer.train_from_spec(workspace_spec(ws, **overrides), run_dir, pretrained=pretrained,
                                   options=model_options(args, option))


def score(args, checkpoint: Path, csv_path: Path, images_dir: Path, out_csv: Path) -> pd.DataFrame:
    if out_csv.is_file():
        return pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    return run_inference(checkpoint, csv_path, images_dir, out_csv, device=args.device)


def far_pct(scored: pd.DataFrame) -> float:
    is_defect = kpi.defect_mask(scored["label"])
    return float(kpi.operating_point_at_recall(is_defect, scored[kpi.SCORE_COLUMN].astype(float).to_numpy()).far_pct)


def without_gaps(scored: pd.DataFrame, ws: Path) -> pd.DataFrame:
    """The rows of the base distribution (the demo's ground truth names no gap content for them):
    FAR@100% recall of the whole KPI set is set by its gap rows (labels, parts and nuisances the base
    training set lacks), whatever the registration does."""
    truth = pd.read_csv(ws / "demo_truth.csv", dtype=str, keep_default_na=False)
    gap_free = set(truth.loc[truth["gap_content"] == "", "object_name"])
    return scored[scored["object_name"].isin(gap_free)]


def baseline_run(args, world: str, seed: int, option: str, misregistered: bool) -> tuple[Path, Path, dict]:
    """(workspace, run dir, result) of one part-``ratio`` model, trained and scored on the KPI set."""
    ws = workspace(args, world, seed, misregistered)
    run_dir = args.work_dir / "runs" / f"{ws.name}_{option}"
    summary = train(args, ws, run_dir, option, seed, epochs=args.epochs)
    scored = score(args, run_dir / "best_val.pth", ws / "kpi/testing_set.csv", ws / "images", run_dir / "kpi_inference.csv")
    return ws, run_dir, {"kpi_far_pct": far_pct(scored), "kpi_no_gap_far_pct": far_pct(without_gaps(scored, ws)),
                         "val_far_pct": summary["best_val_far_pct"], "best_epoch": summary["best_epoch"],
                         **timing(summary)}


def timing(summary: dict) -> dict:
    """The training job's own figures (a reused run keeps those of the run that trained it)."""
    return {"train_seconds": round(summary["seconds"], 1), "decode_seconds": round(summary["decode_seconds"], 2),
            "pairs_per_second": round(summary["pairs_per_second"], 1)}


def ratio_part(args) -> list[dict]:
    rows = []
    for world in args.worlds:
        for seed in args.seeds:
            for option in args.options:
                aligned = baseline_run(args, world, seed, option, False)[2]
                misregistered = baseline_run(args, world, seed, option, True)[2]
                rows.append({"world": world, "seed": seed, "option": option, "aligned": aligned,
                             "misregistered": misregistered,
                             **{f"{key[:-8]}_ratio": ratio(misregistered[key], aligned[key])
                                for key in ("kpi_far_pct", "kpi_no_gap_far_pct")}})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def ratio(misregistered: float, aligned: float) -> float | None:
    return misregistered / aligned if aligned else None


def kpi_halves(frame: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the RCA half and the held-out half of the KPI set (a seeded permutation)."""
    order = np.random.default_rng([seed, 15]).permutation(len(frame))
    return np.sort(order[0::2]), np.sort(order[1::2])


def sdg_part(args) -> list[dict]:
    rows = []
    for world in args.worlds:
        for seed in args.seeds:
            ws, base_dir, _ = baseline_run(args, world, seed, args.sdg_option, True)
            scored = pd.read_csv(base_dir / "kpi_inference.csv", dtype=str, keep_default_na=False)
            rca_rows, held_out = kpi_halves(scored, seed)
            lights = tuple(spec_settings.train_settings(workspace_spec(ws)).lights)
            found = rca.analyse(scored.iloc[rca_rows], lights=lights, images_dir=ws / "images", image_ext=".jpg",
                                top_k_per_label=args.top_k_per_label)
            sources = pd.read_csv(ws / "train/base/training_set.csv", dtype=str, keep_default_na=False)
            held_out_csv = base_dir / "kpi_held_out.csv"
            fsutil.write_csv(held_out_csv, scored.iloc[held_out].drop(columns=[kpi.SCORE_COLUMN]))
            result = {"world": world, "seed": seed, "option": args.sdg_option, "rows": args.rows,
                      "baseline_held_out_far_pct": far_pct(scored.iloc[held_out]),
                      "targets": found.weak["label"].value_counts().sort_index().to_dict(), "arms": {}}
            for arm in args.sdg_arms:
                result["arms"][arm] = sdg_arm(args, ws, base_dir, arm, found.gaps, sources, lights, held_out_csv, seed)
            rows.append(result)
            print(json.dumps(rows[-1]), flush=True)
    return rows


def sdg_arm(args, ws: Path, base_dir: Path, arm: str, gaps: pd.DataFrame, sources: pd.DataFrame,
            lights: tuple[str, ...], held_out_csv: Path, seed: int) -> dict:
    arm_dir = base_dir / f"sdg_{arm}"
    images = arm_dir / "images"
    train_csv = arm_dir / "train.csv"
    if not train_csv.is_file():
        (images / "workspace").parent.mkdir(parents=True, exist_ok=True)
        if not (images / "workspace").exists():
            (images / "workspace").symlink_to((ws / "images").resolve(), target_is_directory=True)
        base = assemble.rebase(sources, "workspace")
        frames = [base]
        if SDG_ARMS[arm] is not None:
            method, procedural_labels = SDG_ARMS[arm]
            frames.append(sdg.synthesize(gaps, base, source_images_dir=images, target_images_dir=ws / "images",
                                         lights=lights, image_ext=".jpg", run_images_root=images, iteration=1,
                                         num_sdg=args.rows, seed=seed, method=method,
                                         procedural_labels=procedural_labels))
        fsutil.write_csv(train_csv, pd.concat(frames, ignore_index=True))
    added = len(pd.read_csv(train_csv, dtype=str, keep_default_na=False)) - len(sources)
    run_dir = arm_dir / "train"
    summary = train(args, ws, run_dir, args.sdg_option, seed, epochs=args.retrain_epochs, train_csv=train_csv,
                    images_dir=images, pretrained=base_dir / "best_val.pth")
    scored = score(args, run_dir / "best_val.pth", held_out_csv, ws / "images", run_dir / "held_out_inference.csv")
    methods = pd.read_csv(train_csv, dtype=str, keep_default_na=False).get("sdg_method", pd.Series(dtype=str))
    return {"rows_added": added, "held_out_far_pct": far_pct(scored),
            "methods": methods[methods != ""].value_counts().sort_index().to_dict(), **timing(summary)}


def _median(values: list) -> float | None:
    finite = [value for value in values if value is not None]
    return statistics.median(finite) if finite else None


def summarise(ratio_rows: list[dict], sdg_rows: list[dict]) -> dict:
    """Medians over seeds: per world and option the FARs and ratios; per world and SDG arm the held-out FAR."""
    metrics = ("kpi_far_pct", "kpi_no_gap_far_pct")
    ratio_summary: dict = {}
    for row in ratio_rows:
        entry = ratio_summary.setdefault(row["world"], {}).setdefault(row["option"], {})
        for metric in metrics:
            for side in ("aligned", "misregistered"):
                entry.setdefault(f"{side}_{metric}", []).append(row[side][metric])
            entry.setdefault(f"{metric[:-8]}_ratio", []).append(row[f"{metric[:-8]}_ratio"])
    for world in ratio_summary.values():
        for option, entry in world.items():
            world[option] = {key: {"values": values, "median": _median(values)} for key, values in entry.items()}
    sdg_summary: dict = {}
    for row in sdg_rows:
        for arm, value in row["arms"].items():
            sdg_summary.setdefault(row["world"], {}).setdefault(arm, []).append(value["held_out_far_pct"])
    return {"ratio": ratio_summary,
            "sdg_held_out_far_pct": {world: {arm: {"values": values, "median": _median(values)}
                                             for arm, values in arms.items()} for world, arms in sdg_summary.items()}}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    ratio_rows = ratio_part(args) if "ratio" in args.parts else []
    sdg_rows = sdg_part(args) if "sdg" in args.parts else []
    result = {"machine": machine(), "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "ratio": ratio_rows, "sdg": sdg_rows, "summary": summarise(ratio_rows, sdg_rows),
              "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        fsutil.write_json(args.out, result)


if __name__ == "__main__":
    main()
