"""Decode-once cache: every image file is decoded and resized once per run, whatever job needs it.

A Phase 1 or Phase 3 round runs several trials on the same CSVs, and every DEFT iteration scores the
KPI set and embeds the mining pool with a new model; without a cache each of those jobs decodes the
same PNG/JPEG files again. An entry holds the decoded pixels, already at the model's size, as raw
uint8 CHW after a 12-byte header (magic, original width and height: the pair-size check needs them).

Entries are keyed by the file's content (``content_key``: BLAKE2b of its bytes), the colour mode and
the target size, so a renamed file still hits and an image re-exported under the same name misses;
the pre-flight identifies image pairs by the same key (csvdata, pair_content). Layout:
``<root>/<mode>-<W>x<H>-v<VERSION>/<key[:2]>/<key[2:]>``.

Safe under concurrent jobs: a writer renames a finished temp file over the entry (two jobs that
miss together write identical bytes), so a reader sees a whole entry or none; an entry of the wrong
length or magic (a crash, a foreign file) is a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from aoideft import fsutil
from aoideft.errors import InputError

VERSION = 2  # bump when decoding or resizing changes, so old entries are not reused (2: 16-bit scaling)
# Greyscale modes with more than 8 bits per pixel: PIL's convert("L"/"RGB") clips them at 255, so a
# 16-bit frame decodes to white. eight_bit scales them instead ("I" is how some Pillow versions open
# 16-bit PNGs).
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_HEADER = struct.Struct("<4sII")
_MAGIC = b"AOIc"


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
    """A cache folder shared by the jobs of a run; counts its hits and misses (thread-safe)."""

    root: Path
    hits: int = 0
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def entry_path(self, data: bytes, mode: str, size: tuple[int, int]) -> Path:
        key = content_key(data)
        return self.root / f"{mode}-{size[0]}x{size[1]}-v{VERSION}" / key[:2] / key[2:]

    def load(self, path: str, mode: str, size: tuple[int, int], where: str) -> tuple[tuple[int, int], np.ndarray]:
        """Like ``decode_image`` of the file at ``path``, from the cache when it holds the file."""
        data = read_image_bytes(path, where)
        entry = self.entry_path(data, mode, size)
        channels = 1 if mode == "L" else 3
        expected = _HEADER.size + channels * size[0] * size[1]
        try:
            stored = entry.read_bytes()
        except FileNotFoundError:
            stored = b""
        if len(stored) == expected:
            magic, width, height = _HEADER.unpack_from(stored)
            if magic == _MAGIC:
                self._count(hit=True)
                pixels = np.frombuffer(stored, np.uint8, offset=_HEADER.size).reshape(channels, size[1], size[0])
                return (width, height), pixels
        original, pixels = decode_image(data, mode, size, where, path)
        fsutil.write_bytes(entry, _HEADER.pack(_MAGIC, *original) + np.ascontiguousarray(pixels).tobytes(),
                           durable=False)
        self._count(hit=False)
        return original, pixels

    def _count(self, *, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
