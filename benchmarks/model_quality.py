"""Validation FAR@100% recall on the default demo: the trained ChangeNet-lite vs the same model
untrained vs the classic golden-template check (blurred |test - golden|, max).

    .venv/bin/python benchmarks/model_quality.py --seeds 7 8 9
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from statistics import mean, pstdev

import numpy as np
import pandas as pd
import torch

from _common import demo_workspace, machine, workspace_spec
from aoideft import checkpoint, csvdata, images, kpi, spec_settings, trainer
from aoideft.baselines import template_diff_scores
from aoideft.inference import run_inference
from aoideft.model import ChangeNetLite


def far_of(frame: pd.DataFrame, scores: np.ndarray) -> float:
    is_defect = csvdata.defect_labels(frame).astype(bool)
    return kpi.operating_point_at_recall(is_defect, scores).far_pct


def one_seed(root: Path, seed: int, threads: int, device: str, epochs: int | None) -> dict[str, float]:
    workspace = demo_workspace(root, "default", seed)
    spec = workspace_spec(workspace, **({"train.num_epochs": epochs} if epochs else {}))
    run = root / f"train_{seed}"
    summary = trainer.train_from_spec(spec, run, options={"device": device, "threads": threads, "verbose": False})
    val_csv = workspace / "train/base/validation_set.csv"
    images_dir = workspace / "images"
    trained = run_inference(run / "best_val.pth", val_csv, images_dir, root / f"val_trained_{seed}.csv")
    # The untrained model: the same architecture, freshly initialised with the same seed.
    settings = spec_settings.train_settings(spec)
    torch.manual_seed(seed)
    untrained_model = ChangeNetLite(trainer.arch_from_settings(settings, trainer.TrainOptions()))
    checkpoint.save_checkpoint(root / f"untrained_{seed}.pth", untrained_model.eval(), epoch=0, step=0, metrics={})
    untrained = run_inference(root / f"untrained_{seed}.pth", val_csv, images_dir, root / f"val_untrained_{seed}.csv")
    frame = csvdata.read_pairs_csv(val_csv, images_dir=images_dir, lights=settings.lights,
                                   image_ext=settings.image_ext, check_files=False)
    decoded = images.decode_pairs(frame, images_dir=images_dir, lights=settings.lights, image_ext=settings.image_ext,
                                  size=(settings.image_width, settings.image_height))
    template = template_diff_scores(decoded.golden, decoded.test).numpy()
    return {
        "trained": far_of(trained, trained["siamese_score"].to_numpy()),
        "untrained": far_of(untrained, untrained["siamese_score"].to_numpy()),
        "template": far_of(frame, template),
        "train_seconds": summary["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo spec's train.num_epochs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="aoi-quality-"))
    results = {seed: one_seed(root, seed, args.threads, args.device, args.epochs) for seed in args.seeds}
    print(f"machine: {machine()}")
    print("| scorer | validation FAR@100% recall, mean | spread (pstdev) | per seed |")
    print("|---|---|---|---|")
    for key in ("trained", "untrained", "template"):
        values = [r[key] for r in results.values()]
        print(f"| {key} | {mean(values):.1f}% | {pstdev(values):.1f} | "
              + ", ".join(f"{s}: {r[key]:.1f}%" for s, r in results.items()) + " |")
    print("training time per seed: " + ", ".join(f"{r['train_seconds']:.0f}s" for r in results.values()))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
