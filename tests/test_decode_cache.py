"""The decode-once cache: the same pixels as decoding, each pair decoded once per cache folder (whole
CSVs, and rows shared between CSVs), keyed by file identity, size and mode, whole entries under
concurrent jobs, damaged entries rebuilt."""

from __future__ import annotations

import multiprocessing
import os
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
    return sorted(p for p in root.glob("*/*") if p.is_dir())


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
    # A warm hit is the entry itself, memory-mapped copy-on-write: a job's writes stay in the job.
    second.golden[0] += 1
    third = _decode(frame, tmp_path / "images", DecodeCache(tmp_path / "cache"))
    assert torch.equal(third.golden, plain.golden) and not torch.equal(second.golden, plain.golden)
    (entry,) = _entries(tmp_path / "cache")  # one entry: the whole frame
    assert sorted(p.name for p in entry.iterdir()) == ["golden.npy", "keys.txt", "test.npy"]
    assert not [p for p in (tmp_path / "cache").rglob(".*")]  # no temp folder left behind


def test_rows_shared_with_an_earlier_csv_are_copied_not_decoded(tmp_path):
    frame, _ = make_pairs(tmp_path / "images", 12)
    _decode(frame.iloc[:8], tmp_path / "images", DecodeCache(tmp_path / "cache"))
    combined = DecodeCache(tmp_path / "cache")  # a DEFT iteration's CSV: old rows plus new ones
    pairs = _decode(frame.iloc[4:], tmp_path / "images", combined)
    assert (combined.hits, combined.misses) == (4 * 4, 4 * 4)
    plain = _decode(frame.iloc[4:], tmp_path / "images", None)
    assert torch.equal(pairs.test, plain.test) and torch.equal(pairs.golden, plain.golden)
    assert len(_entries(tmp_path / "cache")) == 2


def test_entries_follow_file_identity_size_and_mode(tmp_path):
    images = tmp_path / "images"
    frame, pixels = make_pairs(images, 2)
    _decode(frame, images, DecodeCache(tmp_path / "cache"))
    # A renamed folder (the same files) hits; a file written anew with new pixels misses its row.
    os.rename(images, tmp_path / "moved")
    renamed = DecodeCache(tmp_path / "cache")
    _decode(frame, tmp_path / "moved", renamed)
    assert (renamed.hits, renamed.misses) == (8, 0)
    os.rename(tmp_path / "moved", images)
    changed_path = image_file(images, "b0/test", "C0", LIGHTS[0], EXT)
    new_pixels = 255 - pixels[changed_path]
    Image.fromarray(new_pixels).save(changed_path)
    edited = DecodeCache(tmp_path / "cache")
    pairs = _decode(frame, images, edited)
    assert (edited.hits, edited.misses) == (4, 4)
    assert torch.equal(pairs.test[0, 0], torch.from_numpy(new_pixels.transpose(2, 0, 1)))
    # Another model size is another entry, resized from the file, not from the cached pixels.
    resized = DecodeCache(tmp_path / "cache")
    big = _decode(frame, images, resized, size=(12, 8))
    assert (resized.hits, resized.misses) == (0, 8) and big.test.shape[-2:] == (8, 12)
    gray = DecodeCache(tmp_path / "cache")
    decode_pairs(frame, images_dir=images, lights=LIGHTS, image_ext=EXT, size=SIZE, channels=1, cache=gray)
    assert gray.misses == 8


def test_a_damaged_entry_is_a_miss_and_is_rebuilt(tmp_path):
    frame, _ = make_pairs(tmp_path / "images", 3)
    plain = _decode(frame, tmp_path / "images", None)
    _decode(frame, tmp_path / "images", DecodeCache(tmp_path / "cache"))
    (entry,) = _entries(tmp_path / "cache")
    (entry / "golden.npy").write_bytes((entry / "golden.npy").read_bytes()[:-5])  # damaged from outside
    again = DecodeCache(tmp_path / "cache")
    pairs = _decode(frame, tmp_path / "images", again)
    assert (again.hits, again.misses) == (0, 12)
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
    assert len(_entries(tmp_path / "cache")) == 1
    assert not [p for p in (tmp_path / "cache").rglob(".*")]
    after = DecodeCache(tmp_path / "cache")
    _decode(frame, tmp_path / "images", after)
    assert (after.hits, after.misses) == (256, 0)


def test_bad_files_fail_the_same_way_with_a_cache(tmp_path):
    images = tmp_path / "images"
    frame, _ = make_pairs(images, 3)
    golden = image_file(images, "b1/golden", "C1", LIGHTS[1], EXT)
    Image.fromarray(np.zeros((9, 6, 3), np.uint8)).save(golden)  # golden 6x9, test 6x4
    for cache in (DecodeCache(tmp_path / "cache"), DecodeCache(tmp_path / "cache")):  # no entry is written
        with pytest.raises(InputError, match=r"pairs.csv: row 2 \(UniformLight\): test .* is 6x4 but golden .* is 6x9"):
            _decode(frame, images, cache)
    assert not _entries(tmp_path / "cache")
    golden.write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"row 2 \(UniformLight\): cannot decode image .*C1_UniformLight.png"):
        _decode(frame, images, DecodeCache(tmp_path / "cache"))
    golden.unlink()
    with pytest.raises(InputError, match=r"row 2 \(UniformLight\): image file not found"):
        _decode(frame, images, DecodeCache(tmp_path / "cache"))


def test_registered_pairs_are_cached_with_their_shifts(tmp_path):
    from aoideft.images import Preparation

    frame, _ = make_pairs(tmp_path / "images", 6)
    calls = []

    def register(golden, test):  # stands in for registration.align_pairs: inverts the goldens
        calls.append(len(golden))
        return 255 - golden, test, torch.full((len(golden), 2), 0.5)

    step = Preparation("invert", register)
    first = decode_pairs(frame, images_dir=tmp_path / "images", lights=LIGHTS, image_ext=EXT, size=SIZE,
                         cache=DecodeCache(tmp_path / "cache"), prepare=step)
    plain = _decode(frame, tmp_path / "images", DecodeCache(tmp_path / "cache"))  # another variant: not prepared
    again = decode_pairs(frame.iloc[2:], images_dir=tmp_path / "images", lights=LIGHTS, image_ext=EXT, size=SIZE,
                         cache=DecodeCache(tmp_path / "cache"), prepare=step)
    assert calls == [6]  # prepared once; the second frame's rows all came from the cache
    assert torch.equal(first.golden, 255 - plain.golden) and torch.equal(again.golden, first.golden[2:])
    assert torch.equal(again.shifts, torch.full((4, 2), 0.5))


def test_a_job_checks_the_image_files_only_when_it_decodes_some_row_anew(tmp_path, monkeypatch):
    from aoideft import csvdata, inference
    from aoideft.model import ModelArch

    images = tmp_path / "images"
    frame, pixels = make_pairs(images, 4)
    csv = tmp_path / "pairs.csv"
    frame.to_csv(csv, index=False)
    checks = []
    real_check = csvdata.check_image_files
    monkeypatch.setattr(csvdata, "check_image_files", lambda *a, **k: checks.append(1) or real_check(*a, **k))
    arch = ModelArch(lights=tuple(LIGHTS), image_ext=EXT, image_width=SIZE[0], image_height=SIZE[1],
                     align_max_shift_px=1.0)

    def job():
        return inference.decode_for_arch(arch, csv, images, cache=DecodeCache(tmp_path / "cache"))[1]

    cold = job()
    assert len(checks) == 1
    warm = job()  # every row from the cache: its files passed the checks and are unchanged
    assert len(checks) == 1 and torch.equal(warm.test, cold.test)
    # A file written anew (another os.stat identity) is decoded again, so the files are checked
    # again: a corrupt one fails with the check's error, naming the row and the file.
    changed = image_file(images, "b1/test", "C1", LIGHTS[0], EXT)
    changed.write_bytes(changed.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"pairs.csv.*1 unreadable or corrupt image file.*row 2"):
        job()
    assert len(checks) == 2
    Image.fromarray(pixels[changed]).save(changed)
    assert torch.equal(job().test, cold.test) and len(checks) == 3
