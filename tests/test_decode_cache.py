"""The decode-once cache: the same pixels as decoding, each file decoded once per cache folder, keyed
by content, size and mode, whole entries under concurrent jobs, damaged entries rebuilt."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aoideft.csvdata import image_file
from aoideft.decode_cache import DecodeCache
from aoideft.errors import InputError
from aoideft.images import decode_pairs
from test_images import EXT, LIGHTS, make_pairs

SIZE = (6, 4)


def _decode(frame, images_dir: Path, cache: DecodeCache | None, size=SIZE):
    return decode_pairs(frame, images_dir=images_dir, lights=LIGHTS, image_ext=EXT, size=size, num_threads=2,
                        source="pairs.csv", cache=cache)


def _entries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_a_cold_then_warm_cache_gives_the_pixels_of_a_plain_decode(tmp_path):
    frame, _ = make_pairs(tmp_path / "images", 40)
    plain = _decode(frame, tmp_path / "images", None)
    cold = DecodeCache(tmp_path / "cache")
    first = _decode(frame, tmp_path / "images", cold)
    assert (cold.hits, cold.misses) == (0, 160)  # 40 rows x 2 lights x (test, golden)
    warm = DecodeCache(tmp_path / "cache")  # another job of the run
    second = _decode(frame, tmp_path / "images", warm)
    assert (warm.hits, warm.misses) == (160, 0)
    for pairs in (first, second):
        assert torch.equal(pairs.test, plain.test) and torch.equal(pairs.golden, plain.golden)
        assert torch.equal(pairs.labels, plain.labels)
    assert len(_entries(tmp_path / "cache")) == 160
    assert not [p for p in (tmp_path / "cache").rglob(".*")]  # no temp file left behind


def test_entries_are_keyed_by_content_size_and_mode(tmp_path):
    images = tmp_path / "images"
    frame, pixels = make_pairs(images, 2)
    cache = DecodeCache(tmp_path / "cache")
    _decode(frame, images, cache)
    # Renamed (copied) files hit; a file re-exported under its old name with new pixels misses.
    shutil.copytree(images, tmp_path / "moved")
    renamed = DecodeCache(tmp_path / "cache")
    _decode(frame, tmp_path / "moved", renamed)
    assert (renamed.hits, renamed.misses) == (8, 0)
    changed_path = image_file(images, "b0/test", "C0", LIGHTS[0], EXT)
    new_pixels = 255 - pixels[changed_path]
    Image.fromarray(new_pixels).save(changed_path)
    edited = DecodeCache(tmp_path / "cache")
    pairs = _decode(frame, images, edited)
    assert (edited.hits, edited.misses) == (7, 1)
    assert torch.equal(pairs.test[0, 0], torch.from_numpy(new_pixels.transpose(2, 0, 1)))
    # Another model size is another entry, resized from the file, not from the cached pixels.
    resized = DecodeCache(tmp_path / "cache")
    big = _decode(frame, images, resized, size=(12, 8))
    assert (resized.hits, resized.misses) == (0, 8) and big.test.shape[-2:] == (8, 12)
    gray = DecodeCache(tmp_path / "cache")
    decode_pairs(frame, images_dir=images, lights=LIGHTS, image_ext=EXT, size=SIZE, channels=1, cache=gray)
    assert gray.misses == 8


def test_a_damaged_entry_is_a_miss_and_is_rebuilt(tmp_path):
    frame, _ = make_pairs(tmp_path / "images", 1)
    plain = _decode(frame, tmp_path / "images", None)
    _decode(frame, tmp_path / "images", DecodeCache(tmp_path / "cache"))
    truncated, foreign = _entries(tmp_path / "cache")[:2]
    truncated.write_bytes(truncated.read_bytes()[:-5])  # a writer killed mid-way (no rename would do this)
    foreign.write_bytes(b"XXXX" + foreign.read_bytes()[4:])  # right length, wrong magic
    again = DecodeCache(tmp_path / "cache")
    pairs = _decode(frame, tmp_path / "images", again)
    assert (again.hits, again.misses) == (2, 2)
    assert torch.equal(pairs.test, plain.test) and torch.equal(pairs.golden, plain.golden)
    third = DecodeCache(tmp_path / "cache")
    _decode(frame, tmp_path / "images", third)
    assert third.misses == 0


def _decode_in_process(images_dir: str, cache_dir: str, frame_records: list[dict], queue) -> None:
    import pandas as pd

    cache = DecodeCache(Path(cache_dir))
    pairs = _decode(pd.DataFrame(frame_records), Path(images_dir), cache)
    queue.put((pairs.test.numpy().tobytes(), pairs.golden.numpy().tobytes(), cache.misses))


def test_concurrent_jobs_share_one_cache_safely(tmp_path):
    frame, _ = make_pairs(tmp_path / "images", 64)
    plain = _decode(frame, tmp_path / "images", None)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    jobs = [context.Process(target=_decode_in_process,
                            args=(str(tmp_path / "images"), str(tmp_path / "cache"), frame.to_dict("records"), queue))
            for _ in range(4)]
    for job in jobs:
        job.start()
    results = [queue.get(timeout=120) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    for test_bytes, golden_bytes, _ in results:
        assert test_bytes == plain.test.numpy().tobytes() and golden_bytes == plain.golden.numpy().tobytes()
    assert len(_entries(tmp_path / "cache")) == 256
    assert not [p for p in (tmp_path / "cache").rglob(".*")]
    after = DecodeCache(tmp_path / "cache")
    _decode(frame, tmp_path / "images", after)
    assert (after.hits, after.misses) == (256, 0)


def test_bad_files_fail_the_same_way_with_a_cache(tmp_path):
    images = tmp_path / "images"
    frame, _ = make_pairs(images, 3)
    golden = image_file(images, "b1/golden", "C1", LIGHTS[1], EXT)
    Image.fromarray(np.zeros((9, 6, 3), np.uint8)).save(golden)  # golden 6x9, test 6x4
    for cache in (DecodeCache(tmp_path / "cache"), DecodeCache(tmp_path / "cache")):  # miss, then hit
        with pytest.raises(InputError, match=r"pairs.csv: row 2 \(UniformLight\): test .* is 6x4 but golden .* is 6x9"):
            _decode(frame, images, cache)
    golden.write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"row 2 \(UniformLight\): cannot decode image .*C1_UniformLight.png"):
        _decode(frame, images, DecodeCache(tmp_path / "cache"))
    golden.unlink()
    with pytest.raises(InputError, match=r"row 2 \(UniformLight\): image file not found"):
        _decode(frame, images, DecodeCache(tmp_path / "cache"))
