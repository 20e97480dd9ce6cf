"""Tests for aoideft.images: decoding pairs into uint8 tensors and TAO's light layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from aoideft import images
from aoideft.csvdata import image_file
from aoideft.errors import InputError
from aoideft.images import decode_pairs, stack_lights

LIGHTS = ("SolderLight", "UniformLight")
EXT = ".png"  # lossless, so decoded pixels can be compared exactly


def pattern(seed: int, size=(6, 4), mode="RGB") -> np.ndarray:
    width, height = size
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def make_pairs(root: Path, count: int, size=(6, 4), mode="RGB") -> tuple[pd.DataFrame, dict]:
    """Write ``count`` pairs of distinct random images; returns the frame and path -> pixels."""
    pixels = {}
    rows = []
    for index in range(count):
        row = {"input_path": f"b{index}/test", "golden_path": f"b{index}/golden",
               "label": "PASS" if index % 2 == 0 else "BRIDGE", "object_name": f"C{index}"}
        rows.append(row)
        for role in ("input_path", "golden_path"):
            for light in LIGHTS:
                path = image_file(root, row[role], row["object_name"], light, EXT)
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels[path] = pattern(len(pixels), size, mode)
                Image.fromarray(pixels[path]).save(path)
    return pd.DataFrame(rows), pixels


def chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))


@pytest.mark.parametrize("worker_processes", [False, True])
def test_decode_round_trip_keeps_pixels_light_order_and_labels(tmp_path, monkeypatch, worker_processes):
    if worker_processes:  # the path of large frames: forked workers writing into shared memory
        monkeypatch.setattr(images, "PROCESS_MIN_ROWS", 1)
    frame, pixels = make_pairs(tmp_path, 140)  # > two 64-row chunks, so several worker tasks
    pairs = decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS, image_ext=EXT, size=(6, 4), num_threads=2)
    assert pairs.test.shape == pairs.golden.shape == (140, 2, 3, 4, 6)
    assert pairs.test.dtype == torch.uint8 and pairs.labels.dtype == torch.int64
    assert pairs.labels.tolist() == [index % 2 for index in range(140)]
    for index in range(140):
        for slot, light in enumerate(LIGHTS):
            test_path = image_file(tmp_path, f"b{index}/test", f"C{index}", light, EXT)
            golden_path = image_file(tmp_path, f"b{index}/golden", f"C{index}", light, EXT)
            assert torch.equal(pairs.test[index, slot], chw(pixels[test_path]))
            assert torch.equal(pairs.golden[index, slot], chw(pixels[golden_path]))


def test_worker_processes_report_the_earliest_bad_row(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "PROCESS_MIN_ROWS", 1)
    frame, _ = make_pairs(tmp_path, 200)
    for index in (150, 90):  # two bad rows in different chunks: the earlier one is named
        image_file(tmp_path, f"b{index}/golden", f"C{index}", "UniformLight", EXT).unlink()
    with pytest.raises(InputError, match=r"x\.csv: row 91 \(UniformLight\): image file not found: .*C90_UniformLight"):
        decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS, image_ext=EXT, size=(6, 4), source="x.csv",
                     num_threads=2)


def test_decode_resizes_bilinear_and_converts_to_gray(tmp_path):
    frame, pixels = make_pairs(tmp_path, 2, size=(12, 8))
    pairs = decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS[::-1], image_ext=EXT, size=(6, 4), channels=1)
    assert pairs.test.shape == (2, 2, 1, 4, 6)
    path = image_file(tmp_path, "b1/test", "C1", "SolderLight", EXT)
    expected = Image.fromarray(pixels[path]).convert("L").resize((6, 4), Image.Resampling.BILINEAR)
    assert torch.equal(pairs.test[1, 1, 0], torch.from_numpy(np.array(expected)))  # lights reversed


def test_grayscale_files_decode_to_three_channels(tmp_path):
    frame, _ = make_pairs(tmp_path, 1, mode="L")
    pairs = decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS, image_ext=EXT, size=(6, 4))
    assert pairs.golden.shape == (1, 2, 3, 4, 6)
    assert torch.equal(pairs.golden[0, 0, 0], pairs.golden[0, 0, 2])


def test_size_mismatch_names_row_and_both_files(tmp_path):
    frame, _ = make_pairs(tmp_path, 3)
    golden = image_file(tmp_path, "b2/golden", "C2", "UniformLight", EXT)
    Image.fromarray(pattern(0, size=(7, 4))).save(golden)
    with pytest.raises(InputError, match=rf"x\.csv: row 3 \(UniformLight\): test .* is 6x4 but golden {golden} is 7x4"):
        decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS, image_ext=EXT, size=(6, 4), source="x.csv")


def test_unreadable_and_missing_files_name_row_and_file(tmp_path):
    frame, _ = make_pairs(tmp_path, 2)
    broken = image_file(tmp_path, "b1/test", "C1", "SolderLight", EXT)
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(InputError, match=rf"row 2 \(SolderLight\): cannot decode image {broken}"):
        decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS, image_ext=EXT, size=(6, 4))
    broken.unlink()
    with pytest.raises(InputError, match=rf"row 2 \(SolderLight\): image file not found: {broken}"):
        decode_pairs(frame, images_dir=tmp_path, lights=LIGHTS, image_ext=EXT, size=(6, 4))


def lights_batch(batch=2, lights=3, chans=3, height=2, width=4, dtype=torch.uint8) -> torch.Tensor:
    """Every pixel unique, so placements can be checked exactly."""
    return torch.arange(batch * lights * chans * height * width).reshape(batch, lights, chans, height, width).to(dtype)


def test_stack_linear_places_lights_top_to_bottom_as_tao():
    x = lights_batch()
    out = stack_lights(x, "linear")
    assert out.shape == (2, 3, 6, 4)
    for light in range(3):
        assert torch.equal(out[:, :, light * 2:(light + 1) * 2, :], x[:, light])


def test_stack_grid_is_row_major_with_zero_cells():
    x = lights_batch(dtype=torch.float32)
    out = stack_lights(x, "grid", grid=(2, 2))
    assert out.shape == (2, 3, 4, 8) and out.dtype == torch.float32
    assert torch.equal(out[:, :, :2, :4], x[:, 0])  # top left
    assert torch.equal(out[:, :, :2, 4:], x[:, 1])  # top right
    assert torch.equal(out[:, :, 2:, :4], x[:, 2])  # bottom left
    assert not out[:, :, 2:, 4:].any()  # empty cell
    assert torch.equal(stack_lights(x, "grid", grid=(1, 3)), stack_lights(x, "linear"))
    assert stack_lights(x, "grid", grid=(1, 3)).shape == (2, 3, 6, 4)
    with pytest.raises(InputError, match="grid_map 1x2 has fewer cells than the 3 lights"):
        stack_lights(x, "grid", grid=(1, 2))


def test_stack_channels_and_unknown_type():
    x = lights_batch()
    out = stack_lights(x, "channels")
    assert out.shape == (2, 9, 2, 4)
    assert torch.equal(out[:, 3:6], x[:, 1])
    with pytest.raises(InputError, match="concat_type must be one of linear, grid, channels"):
        stack_lights(x, "diagonal")
