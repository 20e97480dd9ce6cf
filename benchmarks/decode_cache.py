"""Decode-once data path against per-epoch PIL decoding, on CPU or GPU.

    .venv/bin/python benchmarks/decode_cache.py --device cpu --threads 2 --train-pairs 512
    PYTHONPATH=scripts:benchmarks python3 benchmarks/decode_cache.py --device cuda --threads 8

A demo workspace with ``--source-size`` images (the model resizes them to ``--image-size``, as a
real AOI crop is resized). Timed, median of ``--repeats``, each to tensors on the device:
- per-epoch PIL: ``images.decode_pairs`` of the training CSV without a cache + the copy to the
  device: what a loader that decodes in every epoch (TAO's dataloader) pays per epoch;
- cold cache: the same through an empty ``DecodeCache`` (decode, resize, write the entries): the
  first job of a run;
- warm cache: through the filled cache: every later job (the other trials, inference, embedding).
And the training the data feeds: ``trainer.train`` on that CSV (batch 32, demo spec augmentation),
median training seconds per epoch after the first.

A phase of K trials x E epochs then spends on its data: per-epoch PIL K*E*decode, decode-once
cold + (K-1)*warm. The whole-job figures add the measured training time; they assume decoding does
not overlap training (our trainer decodes before the first epoch; a loader with worker processes
would overlap, at the price of the CPU cores it keeps busy, also reported).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

from _common import machine, workspace_spec
from aoideft import csvdata, images, trainer
from aoideft.decode_cache import DecodeCache
from aoideft.demo.smt import LIGHTS as SMT_LIGHTS
from aoideft.demo.workspace import IMAGE_EXT, DemoConfig, generate_workspace

LIGHTS = list(SMT_LIGHTS[:2])  # the default demo's two lights


def timed_decode(frame, workspace: Path, args, device: torch.device, cache: DecodeCache | None) -> float:
    started = time.perf_counter()
    pairs = images.decode_pairs(frame, images_dir=workspace / "images", lights=LIGHTS,
                                image_ext=IMAGE_EXT, size=(args.image_size, args.image_size),
                                num_threads=args.threads, cache=cache)
    pairs.golden.to(device), pairs.test.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-pairs", type=int, default=1024)
    parser.add_argument("--source-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=3, help="training epochs measured (first one dropped)")
    parser.add_argument("--trials", type=int, default=4, help="K: trials of a phase, for the phase figures")
    parser.add_argument("--phase-epochs", type=int, default=10, help="E: epochs per trial, for the phase figures")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    root = Path(tempfile.mkdtemp(prefix="aoi-decode-"))
    workspace = root / "demo"
    generate_workspace(workspace, DemoConfig.from_preset(
        "default", seed=args.seed, image_size=args.source_size, train=args.train_pairs, val=64, kpi=10, pool=10,
        synthetic_pairs=0, workers=os.cpu_count() or 1))
    frame = csvdata.read_pairs_csv(workspace / "train/base/training_set.csv", images_dir=workspace / "images",
                                   lights=LIGHTS, image_ext=IMAGE_EXT)
    per_epoch = median(timed_decode(frame, workspace, args, device, None) for _ in range(args.repeats))
    cold_runs = []
    for _ in range(args.repeats):
        shutil.rmtree(root / "cache", ignore_errors=True)
        cold_runs.append(timed_decode(frame, workspace, args, device, DecodeCache(root / "cache")))
    cold = median(cold_runs)
    warm = median(timed_decode(frame, workspace, args, device, DecodeCache(root / "cache")) for _ in range(args.repeats))
    entries = [p for p in (root / "cache").rglob("*") if p.is_file()]

    spec = workspace_spec(workspace, **{
        "dataset.classify.batch_size": 32, "train.num_epochs": args.epochs, "train.checkpoint_interval": args.epochs,
        "dataset.classify.image_width": args.image_size, "dataset.classify.image_height": args.image_size})
    trainer.train_from_spec(spec, root / "train", options={
        "device": args.device, "threads": args.threads, "verbose": False, "decode_cache": str(root / "cache")})
    epochs = [json.loads(line) for line in (root / "train" / "metrics.jsonl").read_text().splitlines()]
    epoch_train = median(e["train_seconds"] for e in (epochs[1:] or epochs))

    pairs = len(frame)
    k, e = args.trials, args.phase_epochs
    phase_pil = k * e * (per_epoch + epoch_train)
    phase_cached = cold + (k - 1) * warm + k * e * epoch_train
    result = {
        "machine": machine(), "args": {key: str(value) for key, value in vars(args).items()},
        "pairs": pairs, "images": 4 * pairs, "cache_entries": len(entries),
        "cache_mb": round(sum(p.stat().st_size for p in entries) / 1e6, 1),
        "source_mb": round(sum(p.stat().st_size for p in (workspace / "images").rglob(f"*{IMAGE_EXT}")) / 1e6, 1),
        "per_epoch_pil_seconds": per_epoch, "cold_cache_seconds": cold, "warm_cache_seconds": warm,
        "epoch_train_seconds": epoch_train,
        "decode_pairs_per_second_per_thread": pairs / per_epoch / args.threads,
        "train_pairs_per_second": pairs / epoch_train,
        "threads_to_keep_up_by_decoding_each_epoch": (pairs / epoch_train) / (pairs / per_epoch / args.threads),
        "phase": {"trials": k, "epochs": e,
                  "data_seconds_per_epoch_pil": k * e * per_epoch,
                  "data_seconds_decode_once": cold + (k - 1) * warm,
                  "data_speedup": k * e * per_epoch / (cold + (k - 1) * warm),
                  "job_seconds_per_epoch_pil": phase_pil, "job_seconds_decode_once": phase_cached,
                  "job_speedup": phase_pil / phase_cached},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
