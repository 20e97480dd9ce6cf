"""Phase 3's trials by learning rate: how often a warm-started trial collapses at each rate.

    .venv/bin/python benchmarks/phase3_lr.py RUN_DIR [RUN_DIR ...] --json benchmarks/results/phase3_lr_cpu_2cores.json

For every finished run directory, each Phase 3 trial (``final_automl/rec<k>``): its learning rate, the
rate Phase 1's winner trained at (the warm start's, ``specs/baseline_spec_automl.yaml``) and its best
validation FAR@100% recall. A trial collapsed when that FAR is above ``--collapsed-above`` percent.
Nothing is trained; the figures are read from the trials' own files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median

import yaml

RATE_BINS = ((0.0, 0.0008), (0.0008, 0.0015), (0.0015, 0.0022), (0.0022, 1.0))


def learning_rate(spec_path: Path) -> float:
    return float(yaml.safe_load(spec_path.read_text())["train"]["optim"]["lr"])


def trials(run: Path) -> list[dict]:
    warm_start_rate = learning_rate(run / "specs" / "baseline_spec_automl.yaml")
    rows = []
    for rec in sorted((run / "final_automl").glob("rec*")):
        summary = rec / "train" / "train_summary.json"
        if not summary.is_file():
            continue
        rows.append({"run": str(run), "rec": rec.name, "lr": learning_rate(rec / "spec.yaml"),
                     "warm_start_lr": warm_start_rate,
                     "best_val_far_pct": json.loads(summary.read_text())["best_val_far_pct"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--collapsed-above", type=float, default=50.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = [row for run in args.runs for row in trials(run)]
    table = []
    for low, high in RATE_BINS:
        inside = [r for r in rows if low <= r["lr"] < high]
        table.append({"lr_from": low, "lr_below": high, "trials": len(inside),
                      "collapsed": sum(r["best_val_far_pct"] > args.collapsed_above for r in inside),
                      "median_val_far_pct": median(r["best_val_far_pct"] for r in inside) if inside else None})
    above = [r for r in rows if r["lr"] > r["warm_start_lr"]]
    print(f"{len(rows)} Phase 3 trials in {len(args.runs)} runs; collapsed: validation FAR@100% > {args.collapsed_above}%")
    print("| learning rate | trials | collapsed | median validation FAR@100% |")
    print("|---|---|---|---|")
    for row in table:
        far = "-" if row["median_val_far_pct"] is None else f"{row['median_val_far_pct']:.2f}%"
        print(f"| [{row['lr_from']:g}, {row['lr_below']:g}) | {row['trials']} | {row['collapsed']} | {far} |")
    print(f"above the warm start's own rate: {len(above)} trials, "
          f"{sum(r['best_val_far_pct'] > args.collapsed_above for r in above)} collapsed")
    if args.json:
        args.json.write_text(json.dumps({"collapsed_above_pct": args.collapsed_above, "bins": table,
                                         "above_warm_start_rate": len(above), "trials": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
