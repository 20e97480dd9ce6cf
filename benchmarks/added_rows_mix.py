"""What the DEFT loop added to the training set, by class and by the demo's gap content.

    .venv/bin/python benchmarks/added_rows_mix.py RUN_DIR [RUN_DIR ...] [--json OUT]

Each RUN_DIR is a finished run on an embedded demo workspace (``deft_ablation.py`` lays them out as
``<out>/<kind>_seed<s>/<variant>``, beside ``workspace/demo_truth.csv``). For every iteration the
rows added that iteration (``train_combined_iter<N>_provenance.csv``, ``iteration_added``) are
counted: synthetic, mined, mined defects, and mined rows the demo's truth marks as gap content
(defects and PASS rows apart). Runs are grouped by their folder name (the variant) and summed.
The truth file is read here only, after the run: no model or loop stage ever reads it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from aoideft.deft import assemble

COUNTS = ("added", "synthetic", "mined", "mined_defects", "mined_gap_defects", "mined_gap_pass")


def iteration_mix(run: Path, iteration: int, truth: pd.DataFrame) -> dict[str, int] | None:
    """Counts of the rows iteration ``iteration`` added, or None when it did not assemble a dataset."""
    combined_csv, provenance_csv = assemble.dataset_paths(run / f"iter{iteration}" / "dataset", iteration)
    if not combined_csv.is_file():
        return None
    combined = pd.read_csv(combined_csv, dtype=str, keep_default_na=False)
    provenance = pd.read_csv(provenance_csv, dtype=str, keep_default_na=False)
    this_iteration = (provenance["iteration_added"] == str(iteration)).to_numpy()
    added = combined[this_iteration]
    sources = provenance["source"].to_numpy()[this_iteration]
    mined = added[sources == "mining_pool"]
    is_gap = mined["object_name"].map(truth["gap_content"]).fillna("").ne("").to_numpy()
    is_defect = mined["label"].ne("PASS").to_numpy()
    return {"added": len(added), "synthetic": int((sources == "sdg").sum()), "mined": len(mined),
            "mined_defects": int(is_defect.sum()), "mined_gap_defects": int((is_gap & is_defect).sum()),
            "mined_gap_pass": int((is_gap & ~is_defect).sum())}


def run_mix(run: Path) -> list[dict]:
    truth_csv = run.parent / "workspace" / "demo_truth.csv"
    if not truth_csv.is_file():
        raise SystemExit(f"{truth_csv} not found: {run} is not a deft_ablation.py run on a demo workspace.")
    truth = pd.read_csv(truth_csv, dtype=str, keep_default_na=False).set_index("object_name")
    rows, iteration = [], 1
    while (mix := iteration_mix(run, iteration, truth)) is not None:
        rows.append({"run": str(run), "variant": run.name, "iteration": iteration, **mix})
        iteration += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    table = pd.DataFrame([row for run in args.runs for row in run_mix(run)])
    if table.empty:
        raise SystemExit("no iteration datasets found in the runs given")
    totals = table.groupby("variant")[list(COUNTS)].sum()
    print(totals.to_string())
    if args.json:
        args.json.write_text(json.dumps({"per_iteration": table.to_dict("records"),
                                         "totals": totals.reset_index().to_dict("records")}, indent=2) + "\n")


if __name__ == "__main__":
    main()
