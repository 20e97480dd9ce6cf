"""Where golden-to-test registration spends its time (``registration.align_pairs``), per stage and chunk size.

    PYTHONPATH=scripts python3 benchmarks/registration_speed.py --image-sizes 64 128 --pairs 2048 \
        --chunks 256 1024 4096 --out benchmarks/results/registration_speed_<machine>.json

Pairs are synthetic (smooth random boards, the golden shifted by up to 2 px and one pair in three
defocused, two lights of three channels as the demo has), made on the device. Per (image size,
chunk size): the whole ``align_pairs`` call from CPU uint8 tensors (as a decoding job hands them
over) in pairs/s, median of ``--repeats``, and the seconds of each stage of one call, synchronised
after each: copy to the device, cross-power spectrum, integer peak, sub-pixel refinement, resampling,
focus match, copy back.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import torch

from aoideft import registration


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_pairs(count: int, size: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [count, 2, 3, size, size] golden/test pairs on the CPU: smooth boards, shifted, some blurred."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    coarse = torch.rand(count, 6, size // 8, size // 8, generator=generator)
    board = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    board = board.to(device)
    shifts = (torch.rand(count, 2, generator=generator) * 4 - 2).to(device)
    golden = registration.shift_images(board, shifts)
    defocused = torch.arange(count, device=device) % 3 == 0
    golden[defocused] = registration.gaussian_blur(golden[defocused], 0.5)
    noise = lambda: torch.randn(board.shape, generator=None, device=device) * 0.01  # noqa: E731
    to_uint8 = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8).reshape(count, 2, 3, size, size).cpu()  # noqa: E731
    return to_uint8(golden + noise()), to_uint8(board + noise())


@contextmanager
def timed(stages: dict[str, float], name: str, device: torch.device):
    synchronize(device)
    started = time.perf_counter()
    yield
    synchronize(device)
    stages[name] = stages.get(name, 0.0) + time.perf_counter() - started


def stage_seconds(golden: torch.Tensor, test: torch.Tensor, chunk: int, device: torch.device,
                  max_shift: float) -> dict[str, float]:
    """One ``align_pairs``-equivalent pass with a sync after every stage (the stages of the module's own code)."""
    stages: dict[str, float] = {}
    for start in range(0, len(golden), chunk):
        with timed(stages, "to_device", device):
            part_golden = golden[start : start + chunk].to(device)
            part_test = test[start : start + chunk].to(device)
        with timed(stages, "cross_power", device):
            spectrum = registration.cross_power(part_golden, part_test)
        with timed(stages, "integer_peak", device):
            coarse = registration._integer_peak(spectrum, int(max_shift))
        with timed(stages, "refine", device):
            shift = registration._refine(part_golden, part_test, coarse, registration.REFINE_ITERATIONS)
        with timed(stages, "resample", device):
            moved = registration.shift_images(part_golden, shift)
        with timed(stages, "match_blur", device):
            moved, focused, _ = registration.match_blur(moved, part_test)
        with timed(stages, "to_host", device):
            registration._like(moved.reshape(part_golden.shape), golden)
            registration._like(focused.reshape(part_test.shape), test)
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-shift", type=float, default=2.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for size in args.image_sizes:
        golden, test = synthetic_pairs(args.pairs, size, device)
        for chunk in args.chunks:
            registration.ALIGN_CHUNK = chunk
            registration.align_pairs(golden[:chunk], test[:chunk], max_shift=args.max_shift, device=device,
                                     blur=True)  # warm-up: cuFFT plans, allocator
            rates = []
            for _ in range(args.repeats):
                synchronize(device)
                started = time.perf_counter()
                registration.align_pairs(golden, test, max_shift=args.max_shift, device=device, blur=True)
                synchronize(device)
                rates.append(args.pairs / (time.perf_counter() - started))
            stages = stage_seconds(golden, test, chunk, device, args.max_shift)
            row = {"image_size": size, "chunk": chunk, "pairs": args.pairs, "pairs_per_s": median(rates),
                   "stage_seconds": stages}
            rows.append(row)
            print(json.dumps(row), flush=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
