"""Decode-once cache: every image pair is decoded and resized once per run, whatever job needs it.

A Phase 1 or Phase 3 round runs several trials on the same CSVs, and every DEFT iteration scores the
validation and KPI sets and embeds the mining pool with a new model; without a cache each of those
jobs decodes the same files again. The cache holds whole CSVs, decoded: an entry is the uint8
[N, L, C, H, W] golden and test arrays of one pair frame at the model's size (``golden.npy``,
``test.npy``, read memory-mapped) and the identity of each of its rows (``keys.txt``). A job whose
CSV was decoded before reads two arrays; a CSV that shares rows with earlier ones (a DEFT
iteration's combined training CSV: the base rows, mined pool rows) copies those rows and decodes only
the new ones. Measured on one H200 machine, a file per decoded image cost ~1 ms of file-system work per
image, more than decoding it (benchmarks/README.md).

A row's identity is that of its image files, by ``os.stat`` (device, inode, size, modification time),
so a renamed or linked file still hits and a file written anew misses, without reading the files.
Layout: ``<root>/<mode>-<W>x<H>-v<VERSION>/<BLAKE2b of the row keys>/``.

Safe under concurrent jobs: an entry is written into a temp folder and renamed into place (two jobs
that miss together write identical entries; the second rename fails and its copy is dropped), so a
reader sees a whole entry or none; an entry that cannot be read is skipped and its rows decoded.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from aoideft.errors import InputError

VERSION = 3  # bump when decoding or resizing changes, so old entries are not reused (2: 16-bit scaling, 3: whole CSVs)
# Greyscale modes with more than 8 bits per pixel: PIL's convert("L"/"RGB") clips them at 255, so a
# 16-bit frame decodes to white. eight_bit scales them instead ("I" is how some Pillow versions open
# 16-bit PNGs).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def content_key(data: bytes) -> str:
    """The identity of an image file's content: hex BLAKE2b-160 of its bytes."""
    return hashlib.blake2b(data, digest_size=20).hexdigest()


def eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8 bits per channel: a 16-bit greyscale image scaled to "L" (value x 255 / 65535,
    rounded, so test and golden keep their relative levels); any other image unchanged."""
    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def decode_image(
    data: bytes, mode: str, size: tuple[int, int], where: str, path: str
) -> tuple[tuple[int, int], np.ndarray]:
    """(original (width, height), uint8 [C, H, W] at ``size`` = (width, height)) of encoded ``data``;
    bilinear resizing when the sizes differ."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = eight_bit(opened).convert(mode)  # decodes the pixels, so errors surface here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: cannot decode image {path} ({exc}); re-export it or drop the row") from None
    original = image.size
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    pixels = np.asarray(image)
    return original, (pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))


def read_image_bytes(path: str, where: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: image file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read image {path} ({exc}); check its permissions") from None


@dataclass
class DecodeCache:
    """A cache folder shared by the jobs of a run; counts the images it served and decoded.

    An entry holds named arrays with one row per pair (``golden`` and ``test`` [N, L, C, H, W] uint8,
    and what a preparation step adds, e.g. the registration's ``shifts``); ``variant`` names the
    preparation (decoded pairs registered one way are another entry than pairs as decoded)."""

    root: Path
    hits: int = 0
    misses: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def folder(self, mode: str, size: tuple[int, int], variant: str = "") -> Path:
        return self.root / (f"{mode}-{size[0]}x{size[1]}-v{VERSION}" + (f"-{variant}" if variant else ""))

    def exact(self, keys: list[str], like: dict[str, np.ndarray], folder: Path) -> dict[str, np.ndarray] | None:
        """The entry of exactly these rows in this order, as arrays named and shaped like ``like``,
        memory-mapped copy-on-write (writable, private to this process): pages are read as the job
        touches them instead of copied up front (a warm 30k-row hit spent half its time copying);
        None when there is no such entry."""
        held = _read_entry(folder / entry_name(keys), like, mmap_mode="c")
        return held if held is not None and len(held["golden"]) == len(keys) else None

    def fill(self, keys: list[str], arrays: dict[str, np.ndarray], folder: Path) -> np.ndarray:
        """Copy every row some entry of ``folder`` holds into ``arrays`` (row order of ``keys``);
        returns a mask of the rows filled."""
        filled = np.zeros(len(keys), dtype=bool)
        wanted: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            wanted.setdefault(key, []).append(i)
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if entry.name.startswith(".") or filled.all():
                continue
            try:
                stored = (entry / KEYS_FILE).read_text().split()
            except OSError:
                continue
            pairs = [(i, j) for j, key in enumerate(stored) for i in wanted.get(key, ()) if not filled[i]]
            held = _read_entry(entry, arrays) if pairs else None
            if held is None or len(held["golden"]) != len(stored):
                continue
            targets, sources = (np.array(side) for side in zip(*pairs))
            for name, array in arrays.items():
                array[targets] = held[name][sources]
            filled[targets] = True
        return filled

    def store(self, keys: list[str], arrays: dict[str, np.ndarray], folder: Path) -> None:
        """Add the frame's arrays as an entry of ``folder`` (whole or not at all)."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / entry_name(keys)
        if target.is_dir():
            if _read_entry(target, arrays) is not None:
                return  # another job's entry of the same rows
            shutil.rmtree(target, ignore_errors=True)  # damaged: rebuilt below
        tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
        os.mkdir(tmp, 0o777)  # 0777 minus the umask, like any folder the user makes
        try:
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", array)
            (tmp / KEYS_FILE).write_text("\n".join(keys) + "\n")
            os.rename(tmp, target)
        except OSError as error:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # not another job's identical entry landing first
                if error.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise InputError(f"{folder}: no space left for the decode cache; free space or set "
                                     "decode_cache: false") from None
                raise


KEYS_FILE = "keys.txt"


def entry_name(keys: list[str]) -> str:
    return hashlib.blake2b("\n".join(keys).encode(), digest_size=16).hexdigest()


def file_identity(path: str, where: str) -> str:
    """``device:inode:size:mtime_ns`` of a file (through links), or a clear error when it is missing."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{where}: image file not found: {path}") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read image {path} ({exc}); check its permissions") from None
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def row_key(identities: list[str]) -> str:
    return hashlib.blake2b("|".join(identities).encode(), digest_size=16).hexdigest()


def _read_entry(entry: Path, like: dict[str, np.ndarray], mmap_mode: Literal["r", "c"] = "r") -> dict[str, np.ndarray] | None:
    """An entry's arrays named as in ``like``, memory-mapped; None unless each can be read with
    ``like``'s row shape and dtype and all have one length."""
    held = {}
    for name, array in like.items():
        try:
            held[name] = np.load(entry / f"{name}.npy", mmap_mode=mmap_mode, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if held[name].shape[1:] != array.shape[1:] or held[name].dtype != array.dtype:
            return None
    return held if len({len(a) for a in held.values()}) == 1 else None
