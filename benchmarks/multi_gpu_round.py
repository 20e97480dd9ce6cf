"""Local multi-GPU: one Phase 1 AutoML round of N trials, on one GPU and then on N GPUs at once.

    python benchmarks/multi_gpu_round.py --gpus 2 --json benchmarks/results/multi_gpu_round_h100x2.json

Runs the workflow itself (Snakemake, target phase1_automl/best_rec.json) twice on the same demo
workspace and config: with ``--resources gpu=1`` the round's trials queue for the one slot, with
``gpu=N`` they run together and each claims its own device (scripts/aoideft/workflow/gpu_slots.py).
Reported per trial: the placement its log recorded (slot, CUDA_VISIBLE_DEVICES, the torch device
with its PCI bus id) and its time; per run: the round's span (first slot taken to last released).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import demo_workspace, machine  # noqa: E402
from aoideft.workflow.gpu_slots import parse_placement  # noqa: E402
from deft_ablation import snakemake  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=2, help="trials per round = GPUs used at once")
    parser.add_argument("--preset", default="default", help="demo preset of the workspace")
    parser.add_argument("--epochs", type=int, default=5, help="train.num_epochs of every trial")
    parser.add_argument("--threads", type=int, default=4, help="resources.gpu.threads (decoding) per trial")
    parser.add_argument("--out-dir", type=Path, default=Path("results/multi_gpu_round"))
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def run_round(args: argparse.Namespace, workspace: Path, gpus: int) -> dict:
    run_dir = args.out_dir / f"gpu{gpus}"
    config = {
        "run_dir": str(run_dir.resolve()),
        "workspace": str(workspace.resolve()),
        "demo": {"generate": False},
        "automl": {"phase1": {"max_recommendations": args.gpus, "max_concurrent": args.gpus},
                   "pinned": {"train.num_epochs": args.epochs}},
        "resources": {"gpu": {"threads": args.threads}},
    }
    started = time.monotonic()
    proc = snakemake(config, args.out_dir / f"gpu{gpus}.yaml", "phase1_automl/best_rec.json",
                     cores=gpus * args.threads + 1, gpus=gpus, log=args.out_dir / f"gpu{gpus}.log")
    if proc.wait() != 0:
        raise SystemExit(f"snakemake failed: see {args.out_dir / f'gpu{gpus}.log'}")
    wall = time.monotonic() - started
    trials = []
    for k in range(args.gpus):
        placement = parse_placement((run_dir / "logs" / "phase1_automl" / f"rec{k}.log").read_text())
        placement["seconds"] = round(placement["released_at"] - placement["acquired_at"], 1)
        trials.append(placement)
    span = max(t["released_at"] for t in trials) - min(t["acquired_at"] for t in trials)
    return {"gpus": gpus, "round_span_s": round(span, 1), "snakemake_wall_s": round(wall, 1), "trials": trials}


def main() -> None:
    args = parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    workspace = demo_workspace(args.out_dir, args.preset, seed=7)
    runs = [run_round(args, workspace, 1), run_round(args, workspace, args.gpus)]
    result = {
        "command": " ".join(sys.argv),
        "machine": machine(),
        "preset": args.preset,
        "epochs": args.epochs,
        "runs": runs,
        "speedup": round(runs[0]["round_span_s"] / runs[1]["round_span_s"], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
