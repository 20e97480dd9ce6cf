"""Tests for aoideft.csvdata: pair-CSV validation (every bad input names file and row) and leakage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aoideft import csvdata
from aoideft.csvdata import (
    REQUIRED_COLUMNS,
    check_no_leakage,
    defect_labels,
    find_overlap,
    image_file,
    read_pairs_csv,
    row_key,
)
from aoideft.errors import InputError

LIGHTS = ("SolderLight", "UniformLight")
EXT = ".jpg"
GOOD_ROWS = [
    ("b0/test", "b0/golden", "PASS", "C0", "R"),
    ("b1/test", "b1/golden", "MISSING", "C1", "C"),
    ("b2/test", "b2/golden", "BRIDGE", "C2", "R"),
]


def save_image(path: Path, size=(8, 6), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 120).save(path)


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "images"
    for test_dir, golden_dir, _, name, _ in GOOD_ROWS:
        for light in LIGHTS:
            save_image(image_file(root, test_dir, name, light, EXT))
            save_image(image_file(root, golden_dir, name, light, EXT))
    return root


def write_csv(tmp_path: Path, rows, header=(*REQUIRED_COLUMNS, "comp_type_1")) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text(",".join(header) + "\n" + "".join(",".join(row) + "\n" for row in rows))
    return path


def read(path, images, **kwargs) -> pd.DataFrame:
    return read_pairs_csv(path, images_dir=images, lights=LIGHTS, image_ext=EXT, **kwargs)


def test_valid_csv_reads_as_strings_with_metadata(tmp_path, images):
    frame = read(write_csv(tmp_path, GOOD_ROWS), images)
    assert list(frame.columns) == [*REQUIRED_COLUMNS, "comp_type_1"]
    assert frame["comp_type_1"].tolist() == ["R", "C", "R"]
    assert defect_labels(frame).tolist() == [0, 1, 1] and defect_labels(frame).dtype == np.int64
    assert row_key(frame).tolist() == ["b0/test/C0", "b1/test/C1", "b2/test/C2"]


def test_values_that_look_like_numbers_or_na_stay_strings(tmp_path):
    rows = [("1/test", "1/golden", "NA", "007", "")]
    frame = read(write_csv(tmp_path, rows), tmp_path, check_files=False)
    assert frame.loc[0, "object_name"] == "007" and frame.loc[0, "label"] == "NA"
    assert defect_labels(frame).tolist() == [1]


def test_missing_empty_and_header_only_files(tmp_path, images):
    with pytest.raises(InputError, match=r"nope\.csv: CSV file not found"):
        read(tmp_path / "nope.csv", images)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match=r"empty\.csv: the CSV is empty"):
        read(empty, images)
    with pytest.raises(InputError, match=r"pairs\.csv: has no data rows"):
        read(write_csv(tmp_path, []), images)


def test_missing_required_column_is_named(tmp_path, images):
    path = write_csv(tmp_path, [row[:2] + row[3:4] for row in GOOD_ROWS],
                     header=("input_path", "golden_path", "object_name"))
    with pytest.raises(InputError, match=rf"{path}: missing required column\(s\) 'label'"):
        read(path, images)


def test_empty_required_cell_names_row_and_column(tmp_path, images):
    rows = [GOOD_ROWS[0], ("b1/test", "b1/golden", "MISSING", " ", "C")]
    with pytest.raises(InputError, match=r"pairs\.csv: empty required cell\(s\): row 2 'object_name'"):
        read(write_csv(tmp_path, rows), images)


@pytest.mark.parametrize("label", ["pass", "Pass", " PASS"])
def test_wrong_case_pass_names_row(tmp_path, images, label):
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], (*GOOD_ROWS[2][:2], label, *GOOD_ROWS[2][3:])]
    with pytest.raises(InputError, match=r"pairs\.csv: label is not the literal 'PASS' at row 3 .*use the literal 'PASS'"):
        read(write_csv(tmp_path, rows), images)


def test_duplicate_rows_name_both_rows(tmp_path, images):
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], (*GOOD_ROWS[0][:2], "SHIFT", *GOOD_ROWS[0][3:])]
    with pytest.raises(InputError, match=r"pairs\.csv: rows 1 and 3 are duplicates .*'b0/test/C0'"):
        read(write_csv(tmp_path, rows), images)


@pytest.mark.parametrize("column, value, name", [
    ("input_path", "/etc", "C0"),
    ("golden_path", "../outside", "C0"),
    ("input_path", "b0/../../outside", "C0"),
    ("input_path", "b0/test", "../../../C0"),
])
def test_paths_escaping_images_dir_name_the_row(tmp_path, images, column, value, name):
    row = dict(zip(REQUIRED_COLUMNS, GOOD_ROWS[0]))
    row[column], row["object_name"] = value, name
    rows = [GOOD_ROWS[1], (*row.values(), "R")]
    with pytest.raises(InputError, match=rf"pairs\.csv: row 2: {column} .* points outside images_dir"):
        read(write_csv(tmp_path, rows), images)


def test_paths_are_checked_lexically_so_linked_image_roots_work(tmp_path, images):
    run_images = tmp_path / "run" / "images"
    run_images.mkdir(parents=True)
    os.symlink(images, run_images / "workspace")  # as the workflow links <run>/images/workspace
    rows = [(f"workspace/{row[0]}", f"workspace/{row[1]}", *row[2:]) for row in GOOD_ROWS]
    rows.append(("workspace/b0/../b0/test", "workspace/b0/golden", "PASS", "C0b", "R"))
    for light in LIGHTS:
        save_image(image_file(images, "b0/test", "C0b", light, EXT))
        save_image(image_file(images, "b0/golden", "C0b", light, EXT))
    assert len(read(write_csv(tmp_path, rows), run_images)) == 4


@pytest.fixture(params=["in_process", "worker_processes"])
def probe_path(request, monkeypatch):
    """Both ways files are probed: threads here (small frames) and forked workers (large ones)."""
    if request.param == "worker_processes":
        monkeypatch.setattr(csvdata, "PROBE_PROCESS_MIN_FILES", 1)
        monkeypatch.setattr(csvdata, "_PROBE_CHUNK", 2)
        monkeypatch.setattr(csvdata, "usable_cores", lambda: 2)
    return request.param


def test_missing_images_list_five_then_count(tmp_path, images, probe_path):
    for row in GOOD_ROWS[1:]:
        for light in LIGHTS:
            image_file(images, row[0], row[3], light, EXT).unlink()
            image_file(images, row[1], row[3], light, EXT).unlink()
    with pytest.raises(InputError) as info:
        read(write_csv(tmp_path, GOOD_ROWS), images)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'pairs.csv'}: 8 image file(s) not found: ")
    assert f"row 2 (SolderLight, test image): {image_file(images, 'b1/test', 'C1', 'SolderLight', EXT)}" in message
    assert "... and 3 more" in message
    assert "row 1 " not in message


def test_check_files_false_skips_images(tmp_path):
    assert len(read(write_csv(tmp_path, GOOD_ROWS), tmp_path / "no_images", check_files=False)) == 3
    with pytest.raises(InputError, match=r"images_dir .*no_images is not a directory"):
        read(write_csv(tmp_path, GOOD_ROWS), tmp_path / "no_images")


def test_corrupt_and_truncated_images_are_named(tmp_path, images, probe_path):
    garbage = image_file(images, "b1/golden", "C1", "UniformLight", EXT)
    garbage.write_bytes(b"not an image at all")
    truncated = image_file(images, "b2/test", "C2", "SolderLight", EXT)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(truncated, quality=95)  # several kB: the cut hits pixel data
    truncated.write_bytes(truncated.read_bytes()[:-200])
    with pytest.raises(InputError) as info:
        read(write_csv(tmp_path, GOOD_ROWS), images, source="KPI CSV")
    message = str(info.value)
    assert message.startswith(f"KPI CSV ({tmp_path / 'pairs.csv'}): 2 unreadable or corrupt image file(s): ")
    assert f"row 2 (UniformLight, golden image): {garbage}" in message
    assert f"row 3 (SolderLight, test image): {truncated} (truncated JPEG" in message


def test_test_and_golden_size_mismatch_names_row(tmp_path, images):
    save_image(image_file(images, "b1/golden", "C1", "UniformLight", EXT), size=(10, 6))
    with pytest.raises(InputError, match=r"differ in size: row 2 \(UniformLight\): test .* is 8x6 but golden .* is 10x6"):
        read(write_csv(tmp_path, GOOD_ROWS), images)


def test_mixed_colour_modes_name_first_offender(tmp_path, images):
    gray = image_file(images, "b2/test", "C2", "UniformLight", EXT)
    save_image(gray, mode="L")
    with pytest.raises(InputError) as info:
        read(write_csv(tmp_path, GOOD_ROWS), images)
    assert f"row 3 (UniformLight, test image): {gray} is grayscale (mode L)" in str(info.value)
    assert "make all images grayscale or all colour" in str(info.value)


def test_all_grayscale_is_fine(tmp_path, images):
    for path in images.rglob(f"*{EXT}"):
        save_image(path, mode="L")
    assert len(read(write_csv(tmp_path, GOOD_ROWS), images)) == 3


def frame_of(*keys: str) -> pd.DataFrame:
    return pd.DataFrame([{"input_path": key.rsplit("/", 1)[0], "object_name": key.rsplit("/", 1)[1],
                          "golden_path": "g", "label": "PASS"} for key in keys])


def test_find_overlap_returns_rows_of_b():
    a, b = frame_of("x/A", "x/B"), frame_of("x/B", "y/A", "x/A")
    assert row_key(find_overlap(a, b)).tolist() == ["x/B", "x/A"]
    # the same object_name under another directory is another component
    assert find_overlap(frame_of("x/A"), frame_of("y/A")).empty


def test_check_no_leakage_names_datasets_count_and_keys():
    frames = {"train": frame_of(*(f"d/C{i}" for i in range(10))),
              "validation": frame_of(*(f"d/C{i}" for i in range(3, 10)), "v/Z"),
              "kpi": frame_of("k/A")}
    check_no_leakage(frames, [("train", "kpi"), ("validation", "kpi")])
    with pytest.raises(InputError) as info:
        check_no_leakage(frames, [("train", "validation"), ("train", "kpi")])
    message = str(info.value)
    assert message.startswith("hard stop: train and validation must not overlap, but 7 row(s) are in both")
    assert "d/C3, d/C4, d/C5, d/C6, d/C7 ... and 2 more" in message
    assert "kpi" not in message
