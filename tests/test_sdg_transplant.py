"""SDG by transplant: residual extraction, placement, PASS nuisance variants, and synthesize's methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aoideft import csvdata
from aoideft.deft import sdg, sdg_images, sdg_transplant as tp
from aoideft.errors import InputError
from test_sdg import EXT, LIGHTS, golden_array as sharp_golden, write_png


def golden_array(light: str, seed: int = 0) -> np.ndarray:
    """test_sdg's crop seen through optics (sigma 1 px blur): a real crop has no one-pixel steps."""
    image = sharp_golden(light, seed)
    return np.stack([sdg_images.blur(image[..., c], 1.0) for c in range(3)], axis=2)


def noisy(image: np.ndarray, seed: int, sigma: float = 2.0) -> np.ndarray:
    return image + np.random.default_rng(seed).normal(0, sigma, image.shape).astype(np.float32)


def with_blob(image: np.ndarray, centre=(20, 44), radius=3, delta=90.0) -> np.ndarray:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    out = image.copy()
    out[np.hypot(yy - centre[0], xx - centre[1]) <= radius] += delta
    return np.clip(out, 0, 255)


def pair(shift=(0.0, 0.0), blob=False, seed=0, board_seed=0) -> tp.Pair:
    """A PASS-like pair of golden_array crops, the golden misregistered by ``shift``; optionally a blob."""
    goldens = [golden_array(light, seed=board_seed) for light in LIGHTS]
    tests = [noisy(g, seed + 10 * i) for i, g in enumerate(goldens)]
    if blob:
        tests = [with_blob(t) for t in tests]
    goldens = [noisy(tp.shifted(g, tuple(-s for s in shift)), seed + 100 + i) for i, g in enumerate(goldens)]
    return tp.Pair(goldens, tests, ["RGB"] * len(LIGHTS))


def test_residual_is_the_defect_not_the_misregistration():
    residual = tp.extract_residual(pair(shift=(1.5, -1.0), blob=True))
    assert residual is not None
    y0, y1, x0, x1 = residual.box
    assert y0 <= 17 and y1 >= 24 and x0 <= 41 and x1 >= 48  # the blob (radius 3 at (20, 44))
    assert (y1 - y0) * (x1 - x0) < 200  # and only around it: the pads' shifted edges are gone
    assert residual.planes[0][20, 44].mean() > 50 and np.abs(residual.planes[0][35, 15]).max() == 0
    assert tp.extract_residual(pair(shift=(1.5, -1.0))) is None  # no defect: nothing above the noise


def test_transplant_lands_where_the_structure_is_and_takes_the_recipients_brightness():
    residual = tp.extract_residual(pair(blob=True))
    # the recipient board is the same part displaced by (2, -3) px and 25% brighter
    recipient = pair(seed=5)
    recipient = tp.Pair([1.25 * tp.shifted(g, (-2.0, 3.0)) for g in recipient.golden],
                        [1.25 * tp.shifted(t, (-2.0, 3.0)) for t in recipient.test], recipient.modes)
    assert tp.placement(residual, recipient)[0] == (2, -3)
    tests = tp.transplant(residual, recipient)
    change = np.abs(tests[0] - recipient.test[0]).mean(axis=2)
    assert change[22, 41] > 90  # the blob's centre, moved by (2, -3), 1.25 x brighter than the donor's ~90
    assert (change > 5).sum() < 200 and change[40:, :].max() == 0  # the blob and its rim, nothing else
    weaker = tp.transplant(residual, recipient, strength=0.5)
    assert np.abs(weaker[0] - recipient.test[0]).mean(axis=2)[22, 41] == pytest.approx(change[22, 41] / 2, rel=0.05)


def test_nuisance_is_measured_and_given_to_a_pass_variant():
    target = pair(shift=(1.25, -0.75), seed=1)
    defocused = [np.stack([sdg_images.blur(t[..., c], 1.0) for c in range(3)], axis=2) for t in target.test]
    target = tp.Pair(target.golden, [np.clip(1.1 * t, 0, 255) for t in defocused], target.modes)
    measured = tp.measure_nuisance(target)
    assert measured.shift == pytest.approx((1.25, -0.75), abs=0.1)
    assert all(gain == pytest.approx(1.1, abs=0.03) for gain in measured.gains)
    assert 0.5 <= measured.blur <= 1.25  # the test is the blurrier one
    recipient = pair(seed=2, board_seed=3)
    own = tp.measure_nuisance(recipient)
    assert own.shift == pytest.approx((0.0, 0.0), abs=0.1) and abs(own.blur) <= 0.25
    golden, tests = tp.pass_variant(measured, None, recipient, own, np.random.default_rng(0))
    assert golden is None  # only a target golden blurrier than its test would change the golden
    variant = tp.measure_nuisance(tp.Pair(recipient.golden, tests, recipient.modes))
    assert 0.4 <= variant.blur <= 1.5
    jitter = variant.shift[0] / measured.shift[0]
    assert tp.VARIANT_JITTER[0] - 0.05 <= jitter <= tp.VARIANT_JITTER[1] + 0.05
    assert variant.shift[1] == pytest.approx(jitter * measured.shift[1], abs=0.1)
    assert variant.gains[0] == pytest.approx(1.1, abs=0.05)


@pytest.fixture
def workspace(tmp_path):
    """Training rows (4 PASS pairs, 1 OPEN pair: its blob is its residual) and KPI target rows."""
    images = tmp_path / "images"
    rows = []
    for i in range(5):
        name, label = f"t{i}", "PASS" if i < 4 else "OPEN"
        for light in LIGHTS:
            golden = golden_array(light, seed=i)
            test = noisy(golden, i)
            write_png(csvdata.image_file(images, "train/golden", name, light, EXT), golden)
            write_png(csvdata.image_file(images, "train/test", name, light, EXT), with_blob(test) if label == "OPEN" else test)
        rows.append({"input_path": "train/test", "golden_path": "train/golden", "label": label, "object_name": name,
                     "comp_type_1": "RES"})
    targets = []
    for name, label, blob in (("k0", "SHORT", True), ("k1", "PASS", False), ("k2", "OPEN", False), ("k3", "SPUR", False)):
        for light in LIGHTS:
            golden = golden_array(light, seed=7)
            write_png(csvdata.image_file(tmp_path / "kpi_images", "kpi/golden", name, light, EXT), golden)
            test = noisy(tp.shifted(golden, (0.5, 1.0)), 3)
            write_png(csvdata.image_file(tmp_path / "kpi_images", "kpi/test", name, light, EXT),
                      with_blob(test, centre=(30, 30), delta=-80.0) if blob else test)
        targets.append({"input_path": "kpi/test", "golden_path": "kpi/golden", "label": label, "object_name": name,
                        "comp_type_1": "RES", "row_key": f"kpi/test/{name}", "weakness": 0.5})
    return pd.DataFrame(rows), images, pd.DataFrame(targets), tmp_path / "kpi_images"


def test_synthesize_transplants_any_label_and_falls_back_to_procedural(workspace, tmp_path):
    sources, images, targets, target_images = workspace
    root = tmp_path / "run"
    rows = sdg.synthesize(targets, sources, source_images_dir=images, lights=LIGHTS, image_ext=EXT,
                          run_images_root=root, iteration=2, seed=1, method="transplant",
                          target_images_dir=target_images, slots=[sdg.Slot(t) for _, t in targets.iterrows()])
    by_label = rows.set_index("label")
    # SHORT: the target's own residual; PASS: the target's nuisance; OPEN: the target shows nothing, so
    # the training OPEN row is the donor; SPUR: no residual anywhere -> the generic procedural anomaly
    assert by_label.loc["SHORT", "sdg_method"] == "transplant:residual"
    assert by_label.loc["SHORT", "sdg_donor"] == "kpi/test/k0"
    assert by_label.loc["PASS", "sdg_method"] == "transplant:nuisance"
    assert by_label.loc["OPEN", "sdg_method"] == "transplant:residual"
    assert by_label.loc["OPEN", "sdg_donor"] == "train/test/t4"
    assert by_label.loc["SPUR", "sdg_method"] == "procedural:generic"
    for row in rows[rows["sdg_method"] == "transplant:residual"].itertuples():
        recipient = row.sdg_source.rsplit("/", 1)[1]
        assert recipient in {"t0", "t1", "t2", "t3"}  # a PASS pair takes the defect
        for light in LIGHTS:
            def out(rel, row=row, light=light):
                return csvdata.image_file(root, rel, row.object_name, light, EXT)

            def source(rel, recipient=recipient, light=light):
                return csvdata.image_file(images, rel, recipient, light, EXT)

            assert out(row.golden_path).read_bytes() == source("train/golden").read_bytes()
            changed = np.abs(sdg_images.load_image(out(row.input_path))[0] - sdg_images.load_image(source("train/test"))[0])
            assert 30 < changed.max() and (changed.mean(axis=2) > 10).mean() < 0.05  # a local change only
    csvdata.check_image_files(rows, images_dir=root, lights=LIGHTS, image_ext=EXT, source="sdg rows")


def test_methods_labels_and_missing_target_images(workspace, tmp_path):
    assert sdg.method_for("BRIDGE", "auto", sdg.DEFAULT_PROCEDURAL_LABELS) == "procedural"
    assert sdg.method_for("PASS", "auto", sdg.DEFAULT_PROCEDURAL_LABELS) == "procedural"
    assert sdg.method_for("OPEN", "auto", sdg.DEFAULT_PROCEDURAL_LABELS) == "transplant"
    assert sdg.method_for("BRIDGE", "transplant", sdg.DEFAULT_PROCEDURAL_LABELS) == "transplant"
    with pytest.raises(InputError, match="deft.sdg.method"):
        sdg.method_for("OPEN", "diffusion", ())
    tables = [{"labels": {"PASS": 5, "OPEN": 2}}, {"labels": {"SHORT": 1, "SPUR": 0}}]
    assert sdg.routed_labels(None, tables) == {"PASS", "OPEN", "SHORT"}
    assert sdg.routed_labels(["PASS"], tables) == {"PASS"}
    sources, images, targets, _ = workspace
    with pytest.raises(InputError, match="target_images_dir"):
        sdg.synthesize(targets, sources, source_images_dir=images, lights=LIGHTS, image_ext=EXT,
                       run_images_root=tmp_path / "r", iteration=1, num_sdg=2, method="transplant")


def test_the_config_schema_defaults_are_the_librarys():
    from pathlib import Path

    import yaml

    schema = yaml.safe_load((Path(__file__).parents[1] / "config/schemas/config.schema.yaml").read_text())
    options = schema["properties"]["deft"]["properties"]["sdg"]["properties"]
    assert tuple(options["procedural_labels"]["default"]) == sdg.DEFAULT_PROCEDURAL_LABELS
    assert options["method"]["enum"] == list(sdg.METHODS) and options["labels"]["default"] is None


def test_a_target_of_another_image_size_gets_the_procedural_operation(workspace, tmp_path):
    sources, images, targets, target_images = workspace
    target = targets.iloc[0].copy()  # SHORT, with a residual, but captured at 48 px
    for light in LIGHTS:
        for rel in ("kpi/golden", "kpi/test"):
            path = csvdata.image_file(target_images, rel, target["object_name"], light, EXT)
            write_png(path, sdg_images.load_image(path)[0][:48, :48])
    rows = sdg.synthesize(targets.iloc[:1], sources, source_images_dir=images, lights=LIGHTS, image_ext=EXT,
                          run_images_root=tmp_path / "run", iteration=1, seed=0, method="transplant",
                          target_images_dir=target_images, slots=[sdg.Slot(target)])
    assert list(rows["sdg_method"]) == ["procedural:generic"]
