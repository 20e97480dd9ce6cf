"""Two AutoML trials on a small CPU machine: one after the other, or side by side sharing the cores.

    .venv/bin/python benchmarks/trials_side_by_side.py --threads 2 --epochs 3 --repeats 2 \
        --out benchmarks/results/trials_side_by_side_cpu_2cores.json

Each trial is `aoideft train` on the default demo's spec (seed 7), in its own process as a workflow
job is. Arrangements, each timed as the wall time for two trials:

- sequential: two trials one after the other, each with --threads N (the workflow before this change);
- side by side, spinning: both at once, each with N threads, libgomp's default wait policy;
- side by side, sleeping: both at once, each with N threads, OMP_WAIT_POLICY=PASSIVE (the workflow now);
- side by side, 1 thread: both at once with one thread each (other figures: the thread count
  changes the arithmetic's order).

It also times one trial alone with PASSIVE (what a trial pays when its partner has finished), and
checks that a trial's weights are identical whichever arrangement trained it at N threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
import yaml

from _common import demo_workspace, machine, workspace_spec

AOIDEFT = str(Path(sys.executable).parent / "aoideft")


def launch(spec: Path, out: Path, threads: int, passive: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return subprocess.Popen([AOIDEFT, "train", "--spec", str(spec), "--results-dir", str(out), "--threads",
                             str(threads), "--device", "cpu", "--quiet"], env=env, stdout=subprocess.DEVNULL)


def timed(spec: Path, outs: list[Path], threads: int, passive: bool, together: bool) -> float:
    started = time.perf_counter()
    if together:
        jobs = [launch(spec, out, threads, passive) for out in outs]
        codes = [job.wait() for job in jobs]
    else:
        codes = [launch(spec, out, threads, passive).wait() for out in outs]
    if any(codes):
        raise SystemExit(f"a trial failed: exit codes {codes}")
    return time.perf_counter() - started


def run_dir(root: Path, repeat: int, arrangement: str, trial: int) -> Path:
    return root / f"r{repeat}_{arrangement.replace(' ', '_').replace(',', '')}_{trial}"


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "latest.pth", weights_only=True)["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    left, right = weights(a), weights(b)
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aoi-trials-"))
    workspace = demo_workspace(root, "default", args.seed)
    spec_path = root / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(workspace_spec(workspace, **{
        "train.num_epochs": args.epochs, "train.checkpoint_interval": args.epochs})))
    n = args.threads
    arrangements = {  # name: (threads per trial, passive, together, trials)
        "sequential": (n, False, False, 2),
        "side by side, spinning": (n, False, True, 2),
        "side by side, sleeping": (n, True, True, 2),
        "side by side, 1 thread": (1, False, True, 2),
        "one trial alone, sleeping": (n, True, False, 1),
    }
    seconds: dict[str, list[float]] = {name: [] for name in arrangements}
    for repeat in range(args.repeats):
        for name, (threads, passive, together, trials) in arrangements.items():
            outs = [run_dir(root, repeat, name, i) for i in range(trials)]
            seconds[name].append(timed(spec_path, outs, threads, passive, together))
            print(f"repeat {repeat + 1}: {name}: {seconds[name][-1]:.1f}s", flush=True)
    reference = run_dir(root, 0, "sequential", 0)
    identical = {name: same_weights(reference, run_dir(root, 0, name, 0)) for name in arrangements}
    base = median(seconds["sequential"])
    rows = [{"arrangement": name, "threads_per_trial": spec[0], "wait_policy": "PASSIVE" if spec[1] else "default",
             "trials": spec[3], "seconds": seconds[name], "median_seconds": median(seconds[name]),
             "speedup_vs_sequential": base / median(seconds[name]) * (spec[3] / 2),
             "weights_identical_to_sequential": identical[name]} for name, spec in arrangements.items()]
    print(f"machine: {machine()}")
    print("| arrangement | threads/trial | wait policy | trials | wall s (median) | speed-up per trial | weights as sequential |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arrangement']} | {r['threads_per_trial']} | {r['wait_policy']} | {r['trials']} | "
              f"{r['median_seconds']:.1f} | {r['speedup_vs_sequential']:.2f}x | {r['weights_identical_to_sequential']} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "epochs": args.epochs, "seed": args.seed,
                                        "repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
