"""Training throughput of ChangeNet-lite on the default demo: pairs/s and epoch time.

    .venv/bin/python benchmarks/train_throughput.py --device cpu --threads 2
    .venv/bin/python benchmarks/train_throughput.py --device cuda --batch-sizes 16 32 64 128 256

Pairs/s counts training pairs only (the summary's pairs_per_second); epoch time includes
validation, as a workflow job pays it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from statistics import median

import torch

from _common import demo_workspace, machine, workspace_spec
from aoideft import trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="aoi-bench-"))
    workspace = demo_workspace(root, "default", args.seed)
    rows = []
    for batch in args.batch_sizes:
        spec = workspace_spec(workspace, **{
            "dataset.classify.batch_size": batch, "train.num_epochs": args.epochs,
            "train.checkpoint_interval": args.epochs,
            "dataset.classify.image_width": args.image_size, "dataset.classify.image_height": args.image_size,
        })
        summary = trainer.train_from_spec(spec, root / f"run_b{batch}", options={
            "device": args.device, "threads": args.threads, "verbose": False})
        epochs = [json.loads(line) for line in (root / f"run_b{batch}" / "metrics.jsonl").read_text().splitlines()]
        rows.append({"batch_size": batch, "image_size": args.image_size, "pairs_per_second": summary["pairs_per_second"],
                     "median_epoch_seconds": median(e["seconds"] for e in epochs[1:] or epochs),
                     "train_pairs": summary["num_train_pairs"], "decode_seconds": summary["decode_seconds"]})
    print(f"machine: {machine()}")
    print("| batch | image | train pairs/s | epoch s (median, incl. validation) | decode s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['image_size']} | {r['pairs_per_second']:.0f} | "
              f"{r['median_epoch_seconds']:.2f} | {r['decode_seconds']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "device": args.device, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
