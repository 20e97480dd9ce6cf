"""ChangeNet-lite's training step alone, under the numeric and compiler choices a GPU offers.

    PYTHONPATH=scripts:benchmarks python3 benchmarks/model_step.py --image-sizes 64 128 224 \\
        --batch-sizes 32 64 256 --out benchmarks/results/model_step_<card>.json

    # CPU smoke check of the script (any machine):
    PYTHONPATH=scripts:benchmarks python3 benchmarks/model_step.py --device cpu --image-sizes 64 \\
        --batch-sizes 8 --steps 2 --variants fp32_nchw shipped

The step is what ``benchmarks/gpu_speed.py`` calls the bound: forward (two lights, the demo's
defaults), cross-entropy, backward and the optimiser step on random tensors made on the device
once, with no data path. Per (image size, batch size) each variant's pairs/s is the median of
``--repeats`` timed passes of ``--steps`` steps, after a warm-up that pays cuDNN autotuning and
compilation (timed apart as ``warmup_seconds``: what a job pays once). Variants:

- ``fp32_nchw``: float32, contiguous (NCHW) tensors: PyTorch's defaults;
- ``fp32_nhwc``: float32, channels-last;
- ``bf16_nchw``: bf16 autocast, NCHW;
- ``shipped``: bf16 autocast and channels-last, AdamW as the trainer builds it (what the workflow runs);
- ``fused``: ``shipped`` with AdamW's fused CUDA kernel (one launch for all parameters);
- ``compiled``: ``fused`` with ``torch.compile`` of the model (Inductor fuses BatchNorm, ReLU and
  the difference modules into fewer kernels);
- ``graphs``: ``compiled`` in ``mode="reduce-overhead"``: the forward and backward replayed as CUDA
  graphs (static shapes: here every batch has the same size).

``--deadline-s`` skips the variants left once a run has taken that long, so a device call ends in
time; skipped cells are listed in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from statistics import median

import torch
from torch import nn

from _common import machine
from aoideft.model import ChangeNetLite, ModelArch

VARIANTS = ("fp32_nchw", "fp32_nhwc", "bf16_nchw", "shipped", "fused", "compiled", "graphs")
LIGHTS = ("SolderLight", "UniformLight")  # the SMT demo's two lights


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_step(variant: str, arch: ModelArch, batch: int, device: torch.device):
    """A zero-argument training step of ``variant`` on fixed random tensors."""
    channels_last = variant not in ("fp32_nchw", "bf16_nchw")
    bf16 = variant not in ("fp32_nchw", "fp32_nhwc") and device.type == "cuda"
    fused = variant in ("fused", "compiled", "graphs") and device.type == "cuda"
    model = ChangeNetLite(arch).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if variant == "compiled":
        forward = torch.compile(model)
    elif variant == "graphs":
        forward = torch.compile(model, mode="reduce-overhead")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2, **({"fused": True} if fused else {}))
    criterion = nn.CrossEntropyLoss()
    shape = (batch, len(arch.lights), arch.channels, arch.image_height, arch.image_width)
    golden, test = torch.rand(shape, device=device), torch.rand(shape, device=device)
    target = torch.randint(0, 2, (batch,), device=device)
    model.train()

    def step() -> None:
        precision = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with precision:
            logits = forward(golden, test)
        loss = criterion(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(variant: str, size: int, batch: int, *, steps: int, repeats: int, device: torch.device) -> dict:
    arch = ModelArch(lights=LIGHTS, image_width=size, image_height=size)
    step = build_step(variant, arch, batch, device)
    started = time.perf_counter()
    for _ in range(max(10, steps // 4)):
        step()
    synchronize(device)
    warmup = time.perf_counter() - started
    rates = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(steps * batch / (time.perf_counter() - started))
    return {"variant": variant, "image_size": size, "batch_size": batch, "pairs_per_second": median(rates),
            "warmup_seconds": warmup, "steps": steps, "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 256])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=64, help="steps per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deadline-s", type=float, default=None, help="skip what is left after this many seconds")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here (after every cell)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    rows, skipped = [], []

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps({"machine": machine(), "args": vars(args) | {"out": str(args.out)},
                                            "rows": rows, "skipped": skipped}, indent=2))

    for variant in args.variants:  # variant-major: the cheap eager variants finish first
        for size in args.image_sizes:
            for batch in args.batch_sizes:
                if args.deadline_s is not None and time.perf_counter() - started > args.deadline_s:
                    skipped.append({"variant": variant, "image_size": size, "batch_size": batch})
                    continue
                rows.append(measure(variant, size, batch, steps=args.steps, repeats=args.repeats, device=device))
                print(json.dumps(rows[-1]), flush=True)
                save()
    shipped = {(r["image_size"], r["batch_size"]): r["pairs_per_second"] for r in rows if r["variant"] == "shipped"}
    print(f"machine: {machine()}")
    print("| variant | image | batch | pairs/s | vs shipped | warm-up s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = shipped.get((r["image_size"], r["batch_size"]))
        ratio = f"{r['pairs_per_second'] / base:.2f}x" if base else "-"
        print(f"| {r['variant']} | {r['image_size']} | {r['batch_size']} | {r['pairs_per_second']:.0f} | {ratio} | "
              f"{r['warmup_seconds']:.1f} |")
    if skipped:
        print(f"skipped after the deadline: {len(skipped)} cells")
    save()


if __name__ == "__main__":
    main()
