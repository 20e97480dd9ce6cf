"""What one DEFT retrain does to the incumbent, arm by arm (issue "DEFT gains that hold").

    PYTHONPATH=scripts .venv/bin/python benchmarks/retrain_dynamics.py RUN_DIR --iteration 1 \\
        --arms combined base_only no_sdg no_mined combined_lr0.2 combined_warmup base_only_warmup \\
        --work-dir results/retrain_dynamics --json benchmarks/results/retrain_dynamics_smt_seed1_cpu_2cores.json

RUN_DIR is a finished workflow run with the KPI holdout on. Each arm repeats iteration N's retrain
(its spec: warm start from the incumbent, the same seed and epochs) with one thing changed:

- ``combined``: the retrain as the workflow ran it (``train_combined_iter<N>.csv``);
- ``base_only``: the base training set instead (the same compute without the loop's data);
- ``no_sdg`` / ``no_mined``: the combined set without the rows iteration N added from SDG / mining;
- suffix ``_lr0.2``: the LR x 0.2; suffix ``_warmup``: one epoch of LR warmup (``TrainOptions``).

Reported per arm: validation FAR@100% recall after every epoch, and for ``best_val.pth`` the held-out
KPI half's FAR at 100% / 99.9% recall, its deployable FAR (validation's threshold) and TAO's figure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aoideft import holdout, inference, spec as tao_spec, trainer  # noqa: E402
from deft_ablation import figures, read_json  # noqa: E402

DATA_ARMS = ("combined", "base_only", "no_sdg", "no_mined")
DROPPED_SOURCE = {"no_sdg": "sdg", "no_mined": "mining_pool"}
ARM = re.compile(rf"({'|'.join(DATA_ARMS)})(?:_lr([0-9.]+))?(_warmup)?")


def training_csv(run: Path, n: int, data_arm: str, work: Path) -> Path:
    """The arm's training CSV (written under ``work`` when it is a subset)."""
    if data_arm == "base_only":
        return Path(read_json(run / "deft_state.json")["config"]["training_csv"])
    folder = run / f"iter{n}" / "dataset"
    combined = folder / f"train_combined_iter{n}.csv"
    if data_arm == "combined":
        return combined
    rows = pd.read_csv(combined, dtype=str, keep_default_na=False)
    provenance = pd.read_csv(folder / f"train_combined_iter{n}_provenance.csv", dtype=str, keep_default_na=False)
    added_here = (provenance["source"] == DROPPED_SOURCE[data_arm]) & (provenance["iteration_added"] == str(n))
    out = work / f"{data_arm}.csv"
    rows[~added_here.to_numpy()].to_csv(out, index=False)
    return out


def run_arm(run: Path, n: int, arm: str, work: Path, held_out: pd.Series) -> dict:
    match = ARM.fullmatch(arm)
    if match is None:
        raise SystemExit(f"unknown arm {arm!r}: a data arm {DATA_ARMS} with an optional _lr<scale> or _warmup suffix")
    data_arm, lr_scale, warmup = match.groups()
    out = work / arm
    out.mkdir(parents=True, exist_ok=True)
    spec = tao_spec.load_spec(run / f"iter{n}" / "train" / "spec.yaml")
    csv_path = training_csv(run, n, data_arm, out)
    overrides = {"dataset.classify.train_dataset.csv_path": str(csv_path)}
    if data_arm == "base_only":
        overrides["dataset.classify.train_dataset.images_dir"] = read_json(run / "deft_state.json")["config"]["images_dir"]
    if lr_scale:
        overrides["train.optim.lr"] = tao_spec.get_dotted(spec, "train.optim.lr") * float(lr_scale)
    options = {"verbose": False, "warm_start_warmup_epochs": 1.0 if warmup else 0.0}
    started = time.time()
    trainer.train_from_spec(tao_spec.with_overrides(spec, overrides), out / "train", options=options)
    config = read_json(run / "deft_state.json")["config"]
    best = out / "train" / "best_val.pth"
    inference.run_inference(best, config["validation_csv"], config["images_dir"], out / "validation_inference.csv")
    inference.run_inference(best, config["kpi_test_csv"], config["images_dir"], out / "inference.csv")
    metrics = [json.loads(line) for line in (out / "train" / trainer.METRICS_FILE).read_text().splitlines()]
    return {"arm": arm, "training_rows": len(pd.read_csv(csv_path, dtype=str)), "train_s": round(time.time() - started, 1),
            "val_far_pct_by_epoch": [row.get("val_far_pct") for row in metrics],
            **{key: float(value) for key, value in figures(out / "validation_inference.csv", out / "inference.csv",
                                                            held_out).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--iteration", type=int, default=1)
    parser.add_argument("--arms", nargs="+", default=["combined", "base_only"])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    run = args.run.resolve()
    kpi_rows = pd.read_csv(read_json(run / "deft_state.json")["config"]["kpi_test_csv"], dtype=str, keep_default_na=False)
    held_out = pd.Series(holdout.held_out_mask(kpi_rows, 0.5), index=kpi_rows["input_path"] + "/" + kpi_rows["object_name"])
    results = []
    for arm in args.arms:
        results.append(run_arm(run, args.iteration, arm, args.work_dir.resolve(), held_out))
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"run": str(run), "iteration": args.iteration, "arms": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
