from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aoideft import csvdata
from aoideft.deft import assemble
from aoideft.errors import InputError

LIGHTS = ["SolderLight", "UniformLight"]
EXT = ".png"


def frame(input_path: str, names: list[str], label="PASS", **extra) -> pd.DataFrame:
    return pd.DataFrame({"input_path": input_path, "golden_path": input_path + "_g", "label": label,
                         "object_name": names, **extra})


BASE = frame("train", ["b0", "b1", "b2"], comp_type_1="CAP")
MINED = frame("pool", ["m0", "m1", "m0"], similarity=[0.95, 0.93, 0.91])  # m0 offered twice
SDG = pd.DataFrame({"input_path": "sdg/iter1/test", "golden_path": "sdg/iter1/golden", "label": ["MISSING", "PASS"],
                    "object_name": ["sdg_iter1_0000", "sdg_iter1_0001"], "sdg_source": "train/b0"})


def iteration_1():
    return assemble.assemble(BASE, {"mining_pool": MINED, "sdg": SDG}, iteration=1, previous_is_base=True)


def test_first_iteration_prefixes_sources_and_records_provenance():
    combined, provenance = iteration_1()
    assert list(combined["input_path"]) == ["workspace/train"] * 3 + ["pool/pool"] * 2 + ["sdg/iter1/test"] * 2
    assert list(combined["golden_path"][:3]) == ["workspace/train_g"] * 3
    assert provenance.attrs["skipped_duplicates"] == {"mining_pool": 1, "sdg": 0}
    assert csvdata.row_key(combined).is_unique
    assert list(provenance.columns) == ["key", "source", "iteration_added"]
    assert list(provenance["key"]) == list(csvdata.row_key(combined))
    assert list(provenance["source"]) == ["base_train"] * 3 + ["mining_pool"] * 2 + ["sdg"] * 2
    assert list(provenance["iteration_added"]) == [0, 0, 0, 1, 1, 1, 1]


def test_later_iterations_grow_monotonically_without_re_adding_rows():
    combined1, provenance1 = iteration_1()
    mined2 = frame("pool", ["m1", "m2"])  # m1 was mined in iteration 1
    sdg2 = SDG.assign(input_path="sdg/iter2/test", golden_path="sdg/iter2/golden",
                      object_name=["sdg_iter2_0000", "sdg_iter2_0001"])
    combined2, provenance2 = assemble.assemble(
        combined1, {"mining_pool": mined2, "sdg": sdg2}, iteration=2, previous_is_base=False,
        previous_provenance=provenance1)
    assert combined2.iloc[: len(combined1)][combined1.columns].equals(combined1)
    assert len(combined2) == len(combined1) + 3 and provenance2.attrs["skipped_duplicates"]["mining_pool"] == 1
    assert csvdata.row_key(combined2).is_unique
    # synthetic rows stay sdg when carried: the synthetic share (and its cap) counts every iteration's
    assert list(provenance2["source"]) == (["base_train"] * 3 + ["previous_iter_train"] * 2 + ["sdg"] * 2
                                           + ["mining_pool"] + ["sdg"] * 2)
    assert list(provenance2["iteration_added"]) == [0] * 3 + [1] * 4 + [2] * 3
    with pytest.raises(ValueError, match="provenance"):
        assemble.assemble(combined1, {}, iteration=2, previous_is_base=False)
    with pytest.raises(InputError, match="same rows"):
        assemble.assemble(combined1, {}, iteration=2, previous_is_base=False, previous_provenance=provenance1.iloc[::-1])
    with pytest.raises(ValueError, match="unknown"):
        assemble.assemble(BASE, {"kpi": MINED}, iteration=1, previous_is_base=True)


def test_rebase_prefixes_every_row_even_a_folder_named_like_the_prefix():
    once = assemble.rebase(BASE, "workspace")
    assert list(once["input_path"]) == ["workspace/train"] * 3
    pool_rows = BASE.assign(input_path="pool/b1/test", golden_path="pool/b1/golden")
    rebased = assemble.rebase(pool_rows, "pool")
    assert list(rebased["input_path"]) == ["pool/pool/b1/test"] * 3
    assert list(rebased["golden_path"]) == ["pool/pool/b1/golden"] * 3


def write_images(images_dir, rows: pd.DataFrame) -> None:
    pixels = np.full((8, 8, 3), 120, np.uint8)
    for row in rows.itertuples():
        for light in LIGHTS:
            for rel in (row.input_path, row.golden_path):
                path = csvdata.image_file(images_dir, rel, row.object_name, light, EXT)
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)


@pytest.fixture
def run_images(tmp_path):
    """<run>/images with workspace/ and pool/ symlinked to their image roots, as the workflow makes them."""
    workspace, pool, run = tmp_path / "ws_images", tmp_path / "pool_images", tmp_path / "run" / "images"
    write_images(workspace, BASE)
    write_images(workspace, frame("val", ["v0"]))
    write_images(pool, MINED)
    write_images(run, SDG)
    (run / "workspace").symlink_to(workspace)
    (run / "pool").symlink_to(pool)
    return run


def validate(combined, run_images, validation, kpi=None):
    assemble.validate_combined(combined, images_dir=run_images, lights=LIGHTS, image_ext=EXT,
                               validation=validation, kpi=frame("kpi", ["k0"]) if kpi is None else kpi)


def test_validate_accepts_a_clean_combined_csv(run_images):
    validate(iteration_1()[0], run_images, frame("val", ["v0"]))


def test_validate_stops_on_leakage_against_validation_or_kpi(run_images):
    combined = iteration_1()[0]
    with pytest.raises(InputError, match="hard stop.*validation CSV"):
        validate(combined, run_images, frame("train", ["b1"]))
    with pytest.raises(InputError, match="hard stop.*KPI CSV"):
        validate(combined, run_images, frame("val", ["v0"]), kpi=frame("train", ["b2"]))


def test_validate_stops_on_missing_files_columns_and_duplicates(run_images):
    combined = iteration_1()[0]
    (run_images / "sdg/iter1/test" / f"sdg_iter1_0001_UniformLight{EXT}").unlink()
    with pytest.raises(InputError, match="sdg_iter1_0001_UniformLight"):
        validate(combined, run_images, frame("val", ["v0"]))
    with pytest.raises(InputError, match="label"):
        validate(combined.drop(columns="label"), run_images, frame("val", ["v0"]))
    with pytest.raises(InputError, match="twice"):
        validate(pd.concat([combined.iloc[:1], combined.iloc[:1]]), run_images, frame("val", ["v0"]))


def test_write_dataset(tmp_path):
    combined, provenance = iteration_1()
    assemble.write_dataset(combined, provenance, tmp_path, 1)
    csv_path, provenance_path = assemble.dataset_paths(tmp_path, 1)
    assert csv_path.name == "train_combined_iter1.csv" and provenance_path.name == "train_combined_iter1_provenance.csv"
    assert len(pd.read_csv(csv_path)) == len(pd.read_csv(provenance_path)) == 7
    summary = json.loads((tmp_path / "assemble_summary.json").read_text())
    assert summary["rows_per_source"] == {"base_train": 3, "previous_iter_train": 0, "mining_pool": 2, "sdg": 2}
    assert summary["added_this_iteration"] == 4 and summary["synthetic_rows"] == 2
    assert summary["skipped_duplicates"] == {"mining_pool": 1, "sdg": 0}


def test_trim_to_budget_caps_new_rows_and_the_synthetic_share():
    sdg_rows = frame("sdg/iter1/test", [f"s{i}" for i in range(10)])
    mined = frame("pool", [f"m{i}" for i in range(10)], similarity=np.linspace(0.99, 0.9, 10))
    kept_sdg, kept_mined, notes = assemble.trim_to_budget(
        sdg_rows, mined, max_new_rows=100, max_synthetic_share=0.1, previous_rows=80, previous_synthetic_rows=0)
    # share: s <= 0.1 * (80 + 10 + s)  ->  s <= 10
    assert len(kept_sdg) == 10 and len(kept_mined) == 10 and not notes
    kept_sdg, kept_mined, notes = assemble.trim_to_budget(
        sdg_rows, mined, max_new_rows=100, max_synthetic_share=0.1, previous_rows=40, previous_synthetic_rows=2)
    # s <= (0.1 * 50 - 2) / 0.9 = 3.33 -> 3 synthetic rows, the first ones
    assert kept_sdg["object_name"].tolist() == ["s0", "s1", "s2"] and len(kept_mined) == 10
    assert "synthetic share" in notes[0]
    kept_sdg, kept_mined, notes = assemble.trim_to_budget(
        sdg_rows, mined, max_new_rows=12, max_synthetic_share=1.0, previous_rows=40, previous_synthetic_rows=0)
    # over the row budget: synthetic surplus (pre-generated pairs come last) goes first
    assert len(kept_sdg) == 2 and len(kept_mined) == 10 and "budget of 12" in notes[0]
    kept_sdg, kept_mined, _ = assemble.trim_to_budget(
        sdg_rows, mined, max_new_rows=5, max_synthetic_share=1.0, previous_rows=40, previous_synthetic_rows=0)
    assert len(kept_sdg) == 0 and kept_mined["object_name"].tolist() == ["m0", "m1", "m2", "m3", "m4"]
