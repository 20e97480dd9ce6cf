"""Image decoding for a job (once, into memory; through the run's decode cache when given) and TAO's
layouts of the light images of a pair."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch

from aoideft.csvdata import defect_labels, image_path
from aoideft.decode_cache import DecodeCache, decode_image, file_identity, read_image_bytes, row_key
from aoideft.errors import InputError
from aoideft.progress import Progress
from aoideft.workers import can_fork, map_forked

CONCAT_TYPES = ("linear", "grid", "channels")
_DECODE_CHUNK = 64  # rows per worker task
# Below this many rows to decode, forking workers (workers.py) costs more than it saves.
PROCESS_MIN_ROWS = 512


@dataclass
class DecodedPairs:
    """All pairs of a frame: images uint8 [N, L, C, H, W] (L lights in the given order), labels
    int64 [N] (0 PASS, 1 defect); ``shifts`` float32 [N, 2] (dy, dx) when the goldens were registered
    to their tests (registration.py), else None."""

    golden: torch.Tensor
    test: torch.Tensor
    labels: torch.Tensor
    shifts: torch.Tensor | None = None


Prepare = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Preparation:
    """A step on decoded pairs ((golden, test) -> (golden, test, [N, 2] shifts)), e.g. registration;
    ``name`` tells its results apart in the decode cache."""

    name: str
    apply: Prepare


def decode_pairs(frame: pd.DataFrame, *, images_dir: str | os.PathLike, lights: Sequence[str],
                 image_ext: str, size: tuple[int, int], channels: int = 3, num_threads: int = 2,
                 source: str | None = None, cache: DecodeCache | None = None,
                 prepare: Preparation | None = None,
                 before_decoding: Callable[[], None] | None = None) -> DecodedPairs:
    """Decode every light image of every row of a pair frame (see csvdata) into memory.

    Each image is converted to RGB (``channels=3``) or L (``channels=1``) and resized bilinearly to
    ``size`` = (width, height) when it differs. At least PROCESS_MIN_ROWS rows to decode are decoded
    by ``num_threads`` worker processes writing into shared memory. An unreadable file, or test and
    golden of one row and light with different sizes, is an InputError naming ``source`` (the CSV),
    the 1-based row and the file.
    With a ``cache``, rows it holds are copied instead of decoded and the frame becomes an entry.
    ``prepare`` runs on the rows decoded here (not on cached ones: the cache holds prepared rows).
    ``before_decoding`` (the caller's file checks) runs once before any row is decoded from its files,
    and not when the cache holds every row: an entry is only written for files that passed those
    checks, and a changed file no longer matches it (its os.stat identity differs).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    width, height = size
    shape = (len(frame), len(lights), channels, height, width)
    test, golden = _shared_array(shape), _shared_array(shape)
    arrays = {"golden": golden, "test": test}
    if prepare is not None:
        arrays["shifts"] = np.zeros((len(frame), 2), np.float32)
    mode = "RGB" if channels == 3 else "L"
    rows = list(zip(frame["input_path"], frame["golden_path"], frame["object_name"]))
    prefix = f"{source}: " if source else ""

    def files(index: int) -> list[tuple[str, str, str]]:
        """(where, test path, golden path) of every light of row ``index``."""
        test_dir, golden_dir, object_name = rows[index]
        return [(f"{prefix}row {index + 1} ({light})", image_path(images_dir, test_dir, object_name, light, image_ext),
                 image_path(images_dir, golden_dir, object_name, light, image_ext)) for light in lights]

    def decode_row(index: int) -> None:
        for slot, (where, test_path, golden_path) in enumerate(files(index)):
            test_size, test[index, slot] = _decode_file(test_path, mode, (width, height), where)
            golden_size, golden[index, slot] = _decode_file(golden_path, mode, (width, height), where)
            if test_size != golden_size:
                raise InputError(f"{where}: test {test_path} is {test_size[0]}x{test_size[1]} "
                                 f"but golden {golden_path} is {golden_size[0]}x{golden_size[1]}; "
                                 f"a pair must be captured at one size")

    def key_of(index: int) -> str:
        return row_key([file_identity(path, where) for where, *paths in files(index) for path in paths])

    todo = list(range(len(rows)))
    keys: list[str] = []
    held = None
    folder = cache.folder(mode, (width, height), prepare.name if prepare else "") if cache is not None else None
    if cache is not None and folder is not None:
        keys = [key_of(i) for i in todo]
        held = cache.exact(keys, arrays, folder)
        if held is not None:  # memory-mapped, read as used: nothing to decode, copy or store
            arrays, todo = held, []
        else:
            todo = [int(i) for i in np.flatnonzero(~cache.fill(keys, arrays, folder))]
        cache.hits += 2 * len(lights) * (len(rows) - len(todo))
        cache.misses += 2 * len(lights) * len(todo)
    reused = f", {len(rows) - len(todo)} more from the decode cache" if cache is not None else ""
    if todo and before_decoding is not None:
        before_decoding()
    if todo:
        progress = Progress(f"decoding {source or 'pairs'}", len(todo)).start(f"x {len(lights)} lights{reused}")
        _run_rows(decode_row, todo, num_threads, progress)
        progress.finish()
    if prepare is not None and todo:
        rows_done = torch.as_tensor(todo)
        prepared = prepare.apply(torch.from_numpy(golden)[rows_done], torch.from_numpy(test)[rows_done])
        for name, values in zip(("golden", "test", "shifts"), prepared):
            arrays[name][todo] = values.cpu().numpy()
    if cache is not None and folder is not None and held is None:
        cache.store(keys, arrays, folder)
    return DecodedPairs(golden=torch.from_numpy(arrays["golden"]), test=torch.from_numpy(arrays["test"]),
                        labels=torch.from_numpy(defect_labels(frame)),
                        shifts=torch.from_numpy(arrays["shifts"]) if prepare is not None else None)


def _decode_file(path: str, mode: str, size: tuple[int, int], where: str) -> tuple[tuple[int, int], np.ndarray]:
    return decode_image(read_image_bytes(path, where), mode, size, where, path)


def _shared_array(shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 array in anonymous shared memory: forked workers' writes land in this process's copy."""
    size = int(np.prod(shape))
    return np.frombuffer(mmap.mmap(-1, max(size, 1)), np.uint8, count=size).reshape(shape)


def _run_rows(task: Callable[[int], None], indices: list[int], workers: int, progress: Progress) -> None:
    """``task(i)`` for every index: in forked worker processes when there are many, else here."""
    chunks = [indices[start:start + _DECODE_CHUNK] for start in range(0, len(indices), _DECODE_CHUNK)]
    if len(indices) < PROCESS_MIN_ROWS or not can_fork(workers, len(chunks)):
        for chunk in chunks:
            progress.advance(_run_chunk(task, chunk))
        return
    for count in map_forked(partial(_run_chunk, task), chunks, workers):
        progress.advance(count)


def _run_chunk(task: Callable[[int], None], indices: list[int]) -> int:
    for index in indices:
        task(index)
    return len(indices)


def stack_lights(x: torch.Tensor, concat_type: str, grid: tuple[int, int] = (2, 2)) -> torch.Tensor:
    """Lay the L light images of each sample out as one image: [B, L, C, H, W] -> [B, C', H', W'].

    ``linear``: stacked top to bottom in light order -> [B, C, L*H, W], as TAO's optical-inspection
                dataloader does (``torch.cat`` of CHW images on the height axis).
    ``grid``:   a grid of ``grid`` = (x columns, y rows), filled row-major, empty cells zero ->
                [B, C, y*H, x*W].
    ``channels`` (our extension): lights stacked on the channel axis -> [B, L*C, H, W].
    Works for any dtype.
    """
    if x.dim() != 5:
        raise ValueError(f"expected [B, L, C, H, W], got shape {tuple(x.shape)}")
    batch, lights, chans, height, width = x.shape
    if concat_type == "linear":
        return x.permute(0, 2, 1, 3, 4).reshape(batch, chans, lights * height, width)
    if concat_type == "channels":
        return x.reshape(batch, lights * chans, height, width)
    if concat_type == "grid":
        columns, rows = grid
        cells = columns * rows
        if cells < lights:
            raise InputError(f"grid_map {columns}x{rows} has fewer cells than the {lights} lights; "
                             f"enlarge dataset.classify.grid_map")
        if cells > lights:
            x = torch.cat([x, x.new_zeros(batch, cells - lights, chans, height, width)], dim=1)
        tiled = x.reshape(batch, rows, columns, chans, height, width).permute(0, 3, 1, 4, 2, 5)
        return tiled.reshape(batch, chans, rows * height, columns * width)
    raise InputError(f"dataset.classify.concat_type must be one of {', '.join(CONCAT_TYPES)}, "
                     f"got {concat_type!r}")
