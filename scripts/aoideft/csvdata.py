"""Pair CSVs of TAO Visual ChangeNet classify: reading with validation, row identity, leakage checks.

A row is one inspected component: ``input_path`` and ``golden_path`` are directories relative to
``images_dir``; the test image of light ``L`` is ``{images_dir}/{input_path}/{object_name}_{L}{ext}``
and the golden image likewise under ``golden_path``. ``label`` ``PASS`` (exactly) is good, any other
label is a defect. Messages name the CSV and 1-based data rows (row 1 = first row after the header).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from aoideft.decode_cache import content_key
from aoideft.errors import InputError
from aoideft.workers import can_fork, map_forked, usable_cores

REQUIRED_COLUMNS = ("input_path", "golden_path", "label", "object_name")
PASS_LABEL = "PASS"
MAX_LISTED = 5  # problems listed per message before "... and N more"
PROBE_THREADS = 4  # in-process threads for small frames: their reads wait on the file system
_PROBE_CHUNK = 256
PROBE_PROCESS_MIN_FILES = 4096  # more files than this are probed in forked workers (workers.py)
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# Formats whose last bytes carry an end marker: a cheap truncation check without decoding pixels.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 64


def image_file(images_dir: str | os.PathLike, rel_dir: str, object_name: str, light: str,
               image_ext: str) -> Path:
    """``{images_dir}/{rel_dir}/{object_name}_{light}{image_ext}``."""
    return Path(image_path(images_dir, rel_dir, object_name, light, image_ext))


def image_path(images_dir: str | os.PathLike, rel_dir: str, object_name: str, light: str,
               image_ext: str) -> str:
    """``image_file`` as a string: loops over every image of a workspace skip building Path objects
    (on a large workspace that was most of a warm scoring job's time, benchmarks/README.md)."""
    return os.path.join(images_dir, rel_dir, f"{object_name}_{light}{image_ext}")


def embedding_keys_path(out_npy: str | os.PathLike) -> Path:
    """Sidecar of an embeddings file: ``emb.npy`` -> ``emb.keys.csv`` (the rows, in order)."""
    return Path(out_npy).with_suffix(".keys.csv")


def defect_labels(frame: pd.DataFrame) -> np.ndarray:
    """Binary targets: 0 for ``PASS``, 1 for any other label."""
    return (frame["label"] != PASS_LABEL).to_numpy(dtype=np.int64)


def row_key(frame: pd.DataFrame) -> pd.Series:
    """A row's identity for de-duplication and leakage: ``input_path/object_name``."""
    return frame["input_path"].astype(str) + "/" + frame["object_name"].astype(str)


def find_overlap(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``b`` whose row_key also occurs in ``a``."""
    return b[row_key(b).isin(set(row_key(a)))]


def check_no_leakage(frames: dict[str, pd.DataFrame], pairs: list[tuple[str, str]]) -> None:
    """Hard stop (InputError) when any named pair of datasets shares a row key."""
    problems = []
    for first, second in pairs:
        shared = row_key(find_overlap(frames[first], frames[second])).drop_duplicates().tolist()
        if shared:
            problems.append(f"{first} and {second} must not overlap, but {len(shared)} row(s) are in "
                            f"both (input_path/object_name): {listing(shared)}")
    if problems:
        raise InputError("hard stop: " + "; ".join(problems) + ". Remove the shared rows from one side.")


def listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def read_pairs_csv(csv_path: str | os.PathLike, *, images_dir: str | os.PathLike, lights: Sequence[str],
                   image_ext: str, check_files: bool = True, source: str | None = None) -> pd.DataFrame:
    """Read a pair CSV as strings and validate it; returns the frame (all columns kept, as str).

    Checks, each an InputError naming the CSV (its path, after the ``source`` label if given, e.g.
    ``training CSV (train/base/training_set.csv)``) and the rows:
    the file exists and parses; it has the required columns and at least one data row; required cells
    are filled; ``PASS`` is spelt exactly; no two rows share input_path + object_name; paths stay
    inside ``images_dir`` (lexically: the workflow links image roots, so symlinks are not resolved).
    With ``check_files`` also every image of every light exists, is a readable image (header plus,
    for JPEG/PNG, the end marker), test and golden of a row have one size, and all images share one
    colour family (all grayscale or all colour); see check_image_files.
    """
    name = str(csv_path) if source in (None, "", str(csv_path)) else f"{source} ({csv_path})"
    frame = _read_frame(Path(csv_path), name)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        found = ", ".join(repr(column) for column in frame.columns)
        raise InputError(f"{name}: missing required column(s) {', '.join(map(repr, missing))} "
                         f"(found: {found}); the header needs {', '.join(REQUIRED_COLUMNS)}")
    if frame.empty:
        raise InputError(f"{name}: has no data rows (only a header); add rows or fix the CSV path")
    _check_filled(frame, name)
    _check_pass_spelling(frame, name)
    _check_duplicates(frame, name)
    _check_inside(frame, name, images_dir)
    if check_files:
        check_image_files(frame, images_dir=images_dir, lights=lights, image_ext=image_ext, source=name)
    return frame


def _read_frame(path: Path, name: str) -> pd.DataFrame:
    frame = read_text_csv(path, name, expected=f"columns {', '.join(REQUIRED_COLUMNS)}")
    return frame.fillna("").reset_index(drop=True)


def read_text_csv(path: str | os.PathLike, name: str, *, expected: str) -> pd.DataFrame:
    """Every column as text (identifiers such as ``000019`` stay as written), empty cells as ''.

    One InputError naming the CSV (``name``) and saying what to do, for each way the file can be
    unusable: not found, unreadable (permissions), not UTF-8 (the first offending line), no header
    (``expected`` says what it should hold), a malformed line, or one column name twice (pandas would
    rename the second ``label`` to ``label.1`` and the first would silently win).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise InputError(f"{name}: CSV file not found; check the path") from None
    except PermissionError:
        raise InputError(f"{name}: cannot read the CSV (permission denied for this user); make it readable "
                         f"(chmod a+r on the file and a+x on its folders, or ask their owner)") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read the CSV ({exc.strerror or exc}); check the file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{name}: line {line} is not UTF-8 (byte 0x{raw[exc.start]:02x}); the file is in another "
                         f"encoding, e.g. Windows-1252 from Excel: save it as UTF-8 (Excel: Save As 'CSV UTF-8'; "
                         f"or iconv -f cp1252 -t utf-8)") from None
    header = next(csv.reader(io.StringIO(text)), [])
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        where = "; ".join(f"'{column}' in columns {', '.join(str(i + 1) for i, c in enumerate(header) if c == column)}"
                          for column in repeated)
        raise InputError(f"{name}: the header names a column more than once ({where}); keep one column of each "
                         f"name (which one holds the right values cannot be guessed)")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{name}: the CSV is empty (no header row); expected {expected}") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{name}: cannot parse the CSV ({exc}); fix the malformed line") from None


def _rows(mask: pd.Series | np.ndarray) -> list[int]:
    """1-based data row numbers where mask is true."""
    return (np.flatnonzero(np.asarray(mask)) + 1).tolist()


def _check_filled(frame: pd.DataFrame, name: str) -> None:
    empty = [(row, column) for column in REQUIRED_COLUMNS
             for row in _rows(frame[column].str.strip() == "")]
    if empty:
        cells = [f"row {row} '{column}'" for row, column in sorted(empty)]
        raise InputError(f"{name}: empty required cell(s): {listing(cells)}; fill them in or drop the rows")


def _check_pass_spelling(frame: pd.DataFrame, name: str) -> None:
    label = frame["label"]
    misspelt = (label != PASS_LABEL) & (label.str.strip().str.upper() == PASS_LABEL)
    if misspelt.any():
        cells = [f"row {row} {label.iloc[row - 1]!r}" for row in _rows(misspelt)]
        raise InputError(f"{name}: label is not the literal 'PASS' at {listing(cells)}; use the literal "
                         f"'PASS' for good parts (any other label counts as a defect)")


def _check_duplicates(frame: pd.DataFrame, name: str) -> None:
    keys = row_key(frame)
    repeated = keys.duplicated(keep=False)
    if repeated.any():
        first_key = keys[repeated].iloc[0]
        first_rows = _rows(keys == first_key)
        extra = int(keys.duplicated().sum())
        more = f" ({extra} duplicate rows in all)" if extra > 1 else ""
        raise InputError(f"{name}: rows {first_rows[0]} and {first_rows[1]} are duplicates (same "
                         f"input_path + object_name '{first_key}'){more}; keep one row per component")


def _escapes(rel_dir: str, object_name: str) -> bool:
    """True when ``rel_dir/object_name`` is absolute or climbs out of its root (lexically)."""
    if os.path.isabs(rel_dir) or os.path.isabs(object_name):
        return True
    normal = os.path.normpath(os.path.join(rel_dir, object_name))
    return normal == os.pardir or normal.startswith(os.pardir + os.sep)


def _check_inside(frame: pd.DataFrame, name: str, images_dir: str | os.PathLike) -> None:
    names = frame["object_name"]
    for column in ("input_path", "golden_path"):
        paths = frame[column]
        # Only rows with a leading separator or a '..' can escape; test just those.
        suspects = (paths.str.startswith(os.sep) | paths.str.contains(os.pardir, regex=False)
                    | names.str.startswith(os.sep) | names.str.contains(os.pardir, regex=False))
        for row in _rows(suspects):
            if _escapes(paths.iloc[row - 1], names.iloc[row - 1]):
                raise InputError(f"{name}: row {row}: {column} {paths.iloc[row - 1]!r} with object_name "
                                 f"{names.iloc[row - 1]!r} points outside images_dir {images_dir} "
                                 f"(absolute path or '..'); use paths relative to images_dir")


@dataclass(frozen=True)
class _ImageRef:
    row: int  # 1-based data row
    light: str
    role: str  # 'test' or 'golden'
    path: str

    def describe(self) -> str:
        return f"row {self.row} ({self.light}, {self.role} image): {self.path}"


@dataclass(frozen=True)
class _Probe:
    status: str  # 'ok', 'missing' or 'bad'
    size: tuple[int, int] = (0, 0)
    mode: str = ""
    error: str = ""
    key: str = ""  # decode_cache.content_key of the file's bytes


@dataclass(frozen=True)
class ImageCheck:
    """What check_image_files found: per row, the content key of its image pair (every light's
    test and golden file, in order: rows with equal keys hold byte-identical pairs, whatever their
    paths), and how many distinct files have each PIL mode."""

    pair_keys: list[str]
    modes: dict[str, int]


def _image_refs(frame: pd.DataFrame, images_dir: str | os.PathLike, lights: Sequence[str],
               image_ext: str) -> list[_ImageRef]:
    """Every image a frame refers to, in row order: per row, per light, test then golden."""
    refs = []
    columns = zip(frame["input_path"], frame["golden_path"], frame["object_name"])
    for row, (test_dir, golden_dir, object_name) in enumerate(columns, start=1):
        for light in lights:
            refs.append(_ImageRef(row, light, "test", image_path(images_dir, test_dir, object_name, light, image_ext)))
            refs.append(_ImageRef(row, light, "golden", image_path(images_dir, golden_dir, object_name, light, image_ext)))
    return refs


def _probe(path: str) -> _Probe:
    """A look at an image file without decoding its pixels: size and mode from the header, the
    JPEG/PNG end marker, and the content key of its bytes (the decode cache's key)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        with Image.open(io.BytesIO(data)) as image:
            size, mode, image_format = image.size, image.mode, image.format
        marker = _END_MARKERS.get(image_format or "")
        if marker is not None and marker not in data[-_TAIL_BYTES:]:
            return _Probe("bad", error=f"truncated {image_format} (no end marker)")
    except FileNotFoundError:
        return _Probe("missing")
    except PermissionError:
        return _Probe("bad", error="permission denied for this user: make it readable")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return _Probe("bad", error=str(exc) or type(exc).__name__)
    return _Probe("ok", size=size, mode=mode, key=content_key(data))


def _probe_all(paths: list[str]) -> dict[str, _Probe]:
    """Probes of many files: opening and hashing small images holds the GIL, so a large frame's files
    are probed in worker processes (the large demo preset: 9-10 s for 15-20k rows on 12 threads)."""
    chunks = [paths[start:start + _PROBE_CHUNK] for start in range(0, len(paths), _PROBE_CHUNK)]
    workers = usable_cores()
    if len(paths) >= PROBE_PROCESS_MIN_FILES and can_fork(workers, len(chunks)):
        return dict(zip(paths, itertools.chain.from_iterable(map_forked(_probe_chunk, chunks, workers))))
    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        return dict(zip(paths, itertools.chain.from_iterable(pool.map(_probe_chunk, chunks))))


def _probe_chunk(paths: list[str]) -> list[_Probe]:
    return [_probe(path) for path in paths]


def _first_per_path(refs: Iterable[_ImageRef]) -> list[_ImageRef]:
    """One ref per file (its first row), keeping row order."""
    first: dict[str, _ImageRef] = {}
    for ref in refs:
        first.setdefault(ref.path, ref)
    return list(first.values())


def _family(mode: str) -> str:
    return "grayscale" if mode in _GRAYSCALE_MODES else "colour"


def check_image_files(frame: pd.DataFrame, *, images_dir: str | os.PathLike, lights: Sequence[str],
                      image_ext: str, source: str) -> ImageCheck:
    """The image checks of read_pairs_csv, usable on any validated frame (InputError naming rows).

    Each distinct file is read once, in a thread pool, and not decoded (its header, end marker and
    content hash), so 10k rows take seconds.
    """
    if not Path(images_dir).is_dir():
        raise InputError(f"{source}: images_dir {images_dir} is not a directory; check the spec's "
                         f"dataset images_dir")
    refs = _image_refs(frame, images_dir, lights, image_ext)
    probes = _probe_all(list(dict.fromkeys(ref.path for ref in refs)))

    missing = _first_per_path(ref for ref in refs if probes[ref.path].status == "missing")
    if missing:
        raise InputError(f"{source}: {len(missing)} image file(s) not found: "
                         f"{listing([ref.describe() for ref in missing])}; each row needs "
                         f"<images_dir>/<input_path|golden_path>/<object_name>_<light>{image_ext} "
                         f"for every light ({', '.join(lights)})")
    broken = _first_per_path(ref for ref in refs if probes[ref.path].status == "bad")
    if broken:
        listed = [f"{ref.describe()} ({probes[ref.path].error})" for ref in broken]
        raise InputError(f"{source}: {len(broken)} unreadable or corrupt image file(s): {listing(listed)}; "
                         f"re-export those images or drop the rows")

    mismatched = []
    for test, golden in zip(refs[0::2], refs[1::2]):
        test_size, golden_size = probes[test.path].size, probes[golden.path].size
        if test_size != golden_size:
            mismatched.append(f"row {test.row} ({test.light}): test {test.path} is "
                              f"{test_size[0]}x{test_size[1]} but golden {golden.path} is "
                              f"{golden_size[0]}x{golden_size[1]}")
    if mismatched:
        raise InputError(f"{source}: test and golden images differ in size: {listing(mismatched)}; "
                         f"a pair must be captured at one size")

    first = refs[0]
    family = _family(probes[first.path].mode)
    for ref in refs:
        mode = probes[ref.path].mode
        if _family(mode) != family:
            raise InputError(f"{source}: {ref.describe()} is {_family(mode)} (mode {mode}) but "
                             f"{first.path} (row {first.row}) is {family} (mode {probes[first.path].mode}); "
                             f"make all images grayscale or all colour")
    per_row = len(lights) * 2
    keys = [probes[ref.path].key for ref in refs]
    pair_keys = [content_key("".join(keys[start:start + per_row]).encode()) for start in range(0, len(keys), per_row)]
    return ImageCheck(pair_keys=pair_keys, modes=dict(Counter(probe.mode for probe in probes.values())))


def main(argv: list[str] | None = None) -> int:
    """``aoideft check-csv CSV --images-dir DIR``: validate a pair CSV and its images."""
    parser = argparse.ArgumentParser(prog="aoideft check-csv", description=main.__doc__)
    parser.add_argument("csv")
    parser.add_argument("--images-dir", required=True)
    parser.add_argument("--spec", help="TAO spec giving input_map (lights) and image_ext")
    parser.add_argument("--lights", help="comma-separated lights (default: from --spec)")
    parser.add_argument("--image-ext", help="image extension with dot (default: from --spec, else .jpg)")
    parser.add_argument("--no-files", action="store_true", help="check the CSV only, not the images")
    args = parser.parse_args(argv)
    lights = args.lights.split(",") if args.lights else []
    image_ext = args.image_ext
    try:
        if args.spec:
            from aoideft.spec import clamp_checkpoint_interval, load_spec
            from aoideft.spec_settings import train_settings

            spec = load_spec(args.spec)
            clamp_checkpoint_interval(spec)  # as the workflow's job specs
            settings = train_settings(spec, source=args.spec)
            lights, image_ext = lights or list(settings.lights), image_ext or settings.image_ext
        if not lights:
            parser.error("give --lights or --spec")
        frame = read_pairs_csv(args.csv, images_dir=args.images_dir, lights=lights,
                               image_ext=image_ext or ".jpg", check_files=not args.no_files)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    defects = int(defect_labels(frame).sum())
    print(f"{args.csv}: OK, {len(frame)} rows ({len(frame) - defects} PASS, {defects} defect)")
    return 0
