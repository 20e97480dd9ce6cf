"""Determinism: the same config and seed, run twice from scratch; what differs and by how much.

    python benchmarks/determinism.py --json benchmarks/results/determinism_<machine>.json

Runs the workflow itself twice (the tiny demo config the tests use, three phases) in two run
directories and compares every artifact: files byte for byte (run paths normalised); where they
differ, CSV score columns and JSON numbers by their largest absolute difference, checkpoints by
their largest weight difference. On the CPU the tests require no difference at all
(tests/test_crash_resume.py); on a GPU this measures what cuDNN kernel selection and bf16 autocast
change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402
from aoideft.demo.tiny import tiny_config  # noqa: E402
from aoideft.demo.workspace import DemoConfig, generate_workspace  # noqa: E402
from deft_ablation import snakemake  # noqa: E402

SKIPPED_TOP = {".snakemake", "logs", "benchmarks", "images", "cache"}
WALL_CLOCK = {"ts", "started_at", "checked_at", "duration_sec", "seconds", "train_seconds", "decode_seconds", "decode_cache",
              "pairs_per_second", "checkpoint_sha256"}


def numbers(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in WALL_CLOCK:
                yield from numbers(item, f"{prefix}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{prefix}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix, float(value)


def compare(a_dir: Path, b_dir: Path) -> dict:
    identical, differing = 0, []
    for a in sorted(a_dir.rglob("*")):
        rel = a.relative_to(a_dir)
        if not a.is_file() or rel.parts[0] in SKIPPED_TOP or a.suffix in (".html", ".md", ".lock"):
            continue
        b = b_dir / rel
        if a.read_bytes().replace(str(a_dir).encode(), b"") == b.read_bytes().replace(str(b_dir).encode(), b""):
            identical += 1
            continue
        entry = {"file": str(rel), "max_abs_diff": None}
        if a.suffix == ".csv":
            fa, fb = pd.read_csv(a), pd.read_csv(b)
            cols = [c for c in fa.select_dtypes("number").columns if c in fb and len(fa) == len(fb)]
            entry["max_abs_diff"] = max((float((fa[c] - fb[c]).abs().max()) for c in cols), default=None)
            entry["columns"] = cols
        elif a.suffix in (".json", ".jsonl"):
            load = (lambda p: [json.loads(x) for x in p.read_text().splitlines()]) if a.suffix == ".jsonl" \
                else (lambda p: json.loads(p.read_text()))
            na, nb = dict(numbers(load(a))), dict(numbers(load(b)))
            diffs = {k: abs(na[k] - nb[k]) for k in na.keys() & nb.keys() if not math.isclose(na[k], nb[k])}
            if not diffs and na.keys() == nb.keys():
                identical += 1  # only wall-clock values differ
                continue
            entry["max_abs_diff"] = max(diffs.values(), default=None)
            entry["largest"] = sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
        elif a.suffix == ".pth":
            sa = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
            sb = torch.load(b, map_location="cpu", weights_only=True)["state_dict"]
            entry["max_abs_diff"] = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
        differing.append(entry)
    return {"identical_files": identical, "differing_files": len(differing), "differences": differing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path("results/determinism"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    workspace = args.out_dir / "workspace"
    if not workspace.exists():
        generate_workspace(workspace, DemoConfig.from_preset("tiny", seed=3))
    runs = []
    for name in ("a", "b"):
        run_dir = (args.out_dir / name).resolve()
        proc = snakemake(tiny_config(workspace.resolve(), run_dir), args.out_dir / f"{name}.yaml", "all",
                         cores=2, gpus=2, log=args.out_dir / f"{name}.log")
        if proc.wait() != 0:
            raise SystemExit(f"run {name} failed: see {args.out_dir / f'{name}.log'}")
        runs.append(run_dir)
    far = {name: json.loads((run / "best_model.json").read_text())["far_pct"] for name, run in zip("ab", runs)}
    result = {"command": " ".join(sys.argv), "machine": machine(), "best_model_far_pct": far,
              **compare(*runs)}
    print(json.dumps({k: v for k, v in result.items() if k != "differences"}, indent=2))
    for entry in result["differences"][:40]:
        print(entry["file"], entry["max_abs_diff"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
