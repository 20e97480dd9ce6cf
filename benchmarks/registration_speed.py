"""Where golden-to-test registration spends its time (``registration.align_pairs``), per stage and chunk size.

    PYTHONPATH=scripts python3 benchmarks/registration_speed.py --image-sizes 64 128 --pairs 2048 \
        --chunks 256 1024 4096 0 --out benchmarks/results/registration_speed_<machine>.json

Pairs are synthetic (smooth random boards, the golden shifted by up to 2 px and one pair in three
defocused, two lights of three channels as the demo has), handed over as CPU uint8 tensors. Per (image size,
chunk size): the whole ``align_pairs`` call from CPU uint8 tensors (as a decoding job hands them
over) in pairs/s, median of ``--repeats``, and the seconds of each stage of one call, synchronised
around each (the module's own functions, wrapped for the one timed call): cross-power spectrum,
integer peak, sub-pixel refinement, resampling, focus match, conversion to the inputs' dtype, and the rest (host-device copies);
on CUDA also the peak device memory per pair of one chunk (what ``registration.chunk_size`` is sized from).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
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
    pairs = []
    for images in (golden, board):
        noisy = images + torch.randn(board.shape, device=device) * 0.01
        pairs.append((noisy.clamp(0, 1) * 255).round().to(torch.uint8).reshape(count, 2, 3, size, size).cpu())
    return pairs[0], pairs[1]


# The stages of ``align_pairs``, as the module names them; the rest of a call is the host-device copies.
STAGES = {"cross_power": "cross_power", "integer_peak": "_integer_peak", "refine": "_refine",
          "resample": "shift_images", "match_blur": "match_blur", "to_device_dtype": "_in_dtype"}


@contextmanager
def stage_timers(device: torch.device):
    """Wrap each stage function of ``registration`` so that a real ``align_pairs`` call records its
    seconds per stage (synchronised; a stage called inside another, as ``_refine`` calls
    ``shift_images``, counts for the outer one only). Restores the module on exit."""
    seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    depth = [0]
    originals = {name: getattr(registration, attr) for name, attr in STAGES.items()}

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            if depth[0]:
                return function(*args, **kwargs)
            synchronize(device)
            started = time.perf_counter()
            depth[0] += 1
            try:
                return function(*args, **kwargs)
            finally:
                depth[0] -= 1
                synchronize(device)
                seconds[name] += time.perf_counter() - started
        return wrapper

    for name, attr in STAGES.items():
        setattr(registration, attr, timed(name, originals[name]))
    try:
        yield seconds
    finally:
        for name, attr in STAGES.items():
            setattr(registration, attr, originals[name])


def stage_seconds(golden: torch.Tensor, test: torch.Tensor, device: torch.device, max_shift: float,
                  chunk: int) -> dict[str, float]:
    """One ``align_pairs`` call with a sync around every stage; ``copies`` is the rest of its time."""
    synchronize(device)
    started = time.perf_counter()
    with stage_timers(device) as seconds:
        registration.align_pairs(golden, test, max_shift=max_shift, device=device, blur=True, chunk=chunk)
    synchronize(device)
    return {**seconds, "copies": time.perf_counter() - started - sum(seconds.values())}


def peak_bytes_per_pair(golden: torch.Tensor, test: torch.Tensor, chunk: int, device: torch.device,
                        max_shift: float) -> float | None:
    """Peak device memory of one chunk's ``align_pairs`` above what its inputs hold, per pair (CUDA only):
    what sizes the chunk to the card."""
    if device.type != "cuda":
        return None
    part_golden, part_test = golden[:chunk].to(device), test[:chunk].to(device)
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    registration.align_pairs(part_golden, part_test, max_shift=max_shift, device=device, blur=True, chunk=chunk)
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / len(part_golden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 1024, 4096, 0],
                        help="pairs per chunk; 0: the module's own choice (registration.chunk_size)")
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
        for requested in args.chunks:
            chunk = requested or registration.chunk_size(golden, device)
            registration.align_pairs(golden[:chunk], test[:chunk], max_shift=args.max_shift, device=device,
                                     blur=True, chunk=chunk)  # warm-up: cuFFT plans, allocator
            rates = []
            for _ in range(args.repeats):
                synchronize(device)
                started = time.perf_counter()
                registration.align_pairs(golden, test, max_shift=args.max_shift, device=device, blur=True,
                                         chunk=chunk)
                synchronize(device)
                rates.append(args.pairs / (time.perf_counter() - started))
            stages = stage_seconds(golden, test, device, args.max_shift, chunk)
            peak = peak_bytes_per_pair(golden, test, chunk, device, args.max_shift)
            row = {"image_size": size, "chunk": chunk, "chunk_requested": requested or "auto", "pairs": args.pairs,
                   "pairs_per_s": median(rates), "stage_seconds": stages, "peak_bytes_per_pair": peak}
            rows.append(row)
            print(json.dumps(row), flush=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": device_name, "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
