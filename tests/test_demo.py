"""The demo workspace generator, both worlds (smt, bare_board): TAO layout and CSV contract,
determinism, splits and their documented gaps, the misregistered variant, the spec, synthetic pairs,
the CLI, and that defects render what they claim."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from aoideft import cli, csvdata, spec as tao_spec, spec_settings
from aoideft.deft import sdg
from aoideft.demo import bare_board, defects, render, scene, smt, workspace
from aoideft.demo.workspace import WORLDS, DemoConfig, generate_workspace
from aoideft.errors import InputError

CSV_PATHS = {split.name: split.csv for split in workspace.SPLITS}
TAO_TOP_KEYS = {"train", "model", "dataset", "evaluate", "inference", "export", "results_dir", "encryption_key", "task"}
LIGHTS = {"smt": ("SolderLight", "UniformLight"), "bare_board": ("UniformLight",)}


def small_config(**overrides) -> DemoConfig:
    """Fewer rows than the tiny preset, for tests that generate several workspaces."""
    return DemoConfig.from_preset("tiny", **{"train": 12, "val": 10, "kpi": 12, "pool": 12, **overrides})


@pytest.fixture(scope="module", params=sorted(WORLDS))
def tiny(request, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "ws"
    summary = generate_workspace(out, DemoConfig.from_preset("tiny", kind=request.param, seed=11))
    return out, summary


def world_of(ws: Path):
    return WORLDS[json.loads((ws / "demo_manifest.json").read_text())["kind"]]


def read_csvs(ws: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(ws / path, dtype=str, keep_default_na=False) for name, path in CSV_PATHS.items()}


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------
# Layout and CSV contract


def test_layout_columns_and_every_image_of_every_light(tiny):
    ws, summary = tiny
    for rel in ("specs/baseline_spec.yaml", "demo_truth.csv", "demo_manifest.json", "DEMO_GAPS.md", *CSV_PATHS.values()):
        assert (ws / rel).is_file(), rel
    assert not list(ws.parent.glob("ws.tmp-*")), "the temp workspace must be renamed into place"
    world = world_of(ws)
    lights = LIGHTS[world.kind]
    for name, path in CSV_PATHS.items():
        with open(ws / path, newline="") as handle:
            assert next(csv.reader(handle)) == list(workspace.CSV_COLUMNS)
        # The project's own contract reader: mandatory columns, PASS spelling, files for every light.
        frame = csvdata.read_pairs_csv(ws / path, images_dir=ws / "images", lights=lights, image_ext=".jpg",
                                       check_files=True, source=name)
        assert len(frame) == summary["rows"][name]
        assert frame["input_path"].str.fullmatch(rf"{name}/[A-Z0-9_]+/test").all()
        assert (frame["golden_path"] == frame["input_path"].str.replace("/test", "/golden")).all()
        assert frame["comp_type_1"].isin(world.components).all()
        row = frame.iloc[0]
        for rel_dir in (row["input_path"], row["golden_path"]):
            with Image.open(csvdata.image_file(ws / "images", rel_dir, row["object_name"], lights[0], ".jpg")) as image:
                assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))
    files = list((ws / "images").rglob("*.jpg"))
    synthetic = list((ws / "augmentation" / "synthetic").rglob("*.jpg"))
    per_row = 2 * len(lights)
    assert len(files) == sum(rows for split, rows in summary["rows"].items() if split != "synthetic") * per_row
    assert len(files) + len(synthetic) == summary["images"] == sum(summary["rows"].values()) * per_row


def test_no_row_shared_between_splits_and_pass_share(tiny):
    ws, _ = tiny
    frames = read_csvs(ws)
    names = pd.concat([f["object_name"] for f in frames.values()])
    assert names.is_unique
    csvdata.check_no_leakage(frames, [(a, b) for a in frames for b in frames if a < b])
    for name, frame in frames.items():
        assert 0.75 <= (frame["label"] == "PASS").mean() <= 0.85, name
        assert (frame["label"] != "PASS").any(), name


def test_labels_are_physical_for_their_component(tiny):
    ws, _ = tiny
    world = world_of(ws)
    for frame in read_csvs(ws).values():
        for label, comp in zip(frame["label"], frame["comp_type_1"]):
            assert world.compatible(label, comp), (label, comp)
        pins = frame["comp_type_1"].map(lambda c: str(world.components[c].pins))
        assert (frame["number_of_pins"] == pins).all()


# --------------------------------------------------------------------------------------------------
# Gaps, truth, manifest


def test_documented_gaps_hold_in_csvs_truth_and_manifest(tiny):
    ws, _ = tiny
    world = world_of(ws)
    frames = read_csvs(ws)
    truth = pd.read_csv(ws / "demo_truth.csv", dtype=str, keep_default_na=False)
    nuisance = truth.set_index("object_name")["nuisance"]
    for gap in world.gaps:
        values = {name: nuisance[f["object_name"]] if gap.column == "nuisance" else f[gap.column]
                  for name, f in frames.items()}
        assert not (values["train"] == gap.value).any(), gap
        assert (values["kpi"] == gap.value).any() and (values["pool"] == gap.value).any(), gap
        if gap.column == "comp_type_1":
            share = {name: (v == gap.value).mean() for name, v in values.items()}
            assert share["kpi"] > 0.1 and share["pool"] > 0.1
            assert 0 < share["val"] < share["kpi"]  # validation carries about half the KPI rate

    manifest = json.loads((ws / "demo_manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["lights"] == list(LIGHTS[world.kind]) and manifest["kind"] == world.kind
    for gap in manifest["gaps"]:
        for name, frame in frames.items():
            values = nuisance[frame["object_name"]] if gap["column"] == "nuisance" else frame[gap["column"]]
            assert gap["count"][name] == int((values == gap["value"]).sum())
        assert gap["target_share"]["train"] == 0 and gap["target_share"]["kpi"] > 0
        assert gap["value"] in (ws / "DEMO_GAPS.md").read_text()
    counts = pd.DataFrame(manifest["counts"])
    synthetic = pd.read_csv(ws / "augmentation/synthetic/manifest.csv", dtype=str, keep_default_na=False)
    assert counts.groupby("split")["count"].sum().to_dict() == {**{n: len(f) for n, f in frames.items()},
                                                               "synthetic": len(synthetic)}


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_default_plan_puts_half_the_kpi_gap_rate_into_validation(kind):
    config = DemoConfig.from_preset("default", kind=kind, seed=7)
    plans = {s.name: workspace.plan_split(s, config) for s in workspace.SPLITS}
    assert [len(plans[n]) for n in ("train", "val", "kpi", "pool")] == [400, 200, 400, 1500]

    def share(name, predicate, among_defects=False):
        rows = [p for p in plans[name] if p.label != "PASS" or not among_defects]
        return sum(predicate(p) for p in rows) / len(rows)

    for gap in config.world.gaps:
        field = {"label": "label", "comp_type_1": "comp_type", "nuisance": "nuisance"}[gap.column]
        def predicate(p, g=gap, f=field):
            return getattr(p, f) == g.value

        among = gap.column == "label"
        kpi, val = share("kpi", predicate, among), share("val", predicate, among)
        assert share("train", predicate, among) == 0
        assert kpi == pytest.approx(gap.share, abs=0.02)
        assert val == pytest.approx(kpi / 2, abs=0.03)  # labels: 40 defect rows in validation
    assert all(share(n, lambda p: p.label == "PASS") == pytest.approx(0.8, abs=0.005) for n in plans)


def test_truth_is_separate_and_complete(tiny):
    ws, _ = tiny
    frames = read_csvs(ws)
    truth = pd.read_csv(ws / "demo_truth.csv", dtype=str, keep_default_na=False)
    for name, frame in frames.items():
        rows = truth[truth["split"] == name]
        assert list(rows["object_name"]) == list(frame["object_name"])
        assert list(rows["label"]) == list(frame["label"])
        defect = rows["label"] != "PASS"
        assert (rows.loc[defect, "severity"] != "").all() and (rows.loc[~defect, "severity"] == "").all()
        assert rows.loc[defect, "defect_params"].map(json.loads).map(bool).all()
    for frame in frames.values():  # the training CSVs do not carry the ground truth
        assert not {"severity", "nuisance", "defect_params"} & set(frame.columns)
    assert "demo_truth" not in (ws / "specs/baseline_spec.yaml").read_text()


# --------------------------------------------------------------------------------------------------
# Spec


def test_spec_is_tao_yaml_for_the_embedded_model(tiny):
    ws, _ = tiny
    lights = LIGHTS[world_of(ws).kind]
    raw = yaml.safe_load((ws / "specs/baseline_spec.yaml").read_text())
    assert set(raw) == TAO_TOP_KEYS
    classify = raw["dataset"]["classify"]
    assert classify["input_map"] == {light: i for i, light in enumerate(lights)} and classify["num_input"] == len(lights)
    assert (classify["image_width"], classify["image_height"], classify["image_ext"]) == (32, 32, ".jpg")
    assert classify["concat_type"] == "linear" and classify["grid_map"] == {"x": 2, "y": 2}
    assert (classify["batch_size"], classify["fpratio_sampling"], classify["workers"]) == (32, 0.2, 0)
    aug = classify["augmentation_config"]
    assert aug["random_flip"]["enable"] and aug["random_rotate"]["enable"] and aug["random_color"]["enable"]
    assert aug["random_color"]["brightness"] == 0.1 and aug["with_scale_random_crop"]["enable"] is False
    assert raw["model"]["backbone"]["type"] == "fan_tiny_8_p4_hybrid"
    assert raw["model"]["classify"]["learnable_difference_modules"] == 4
    assert raw["model"]["classify"]["embed_dec"] == 30 and raw["model"]["classify"]["difference_module"] == "learnable"
    train = raw["train"]
    assert (train["num_epochs"], train["validation_interval"], train["checkpoint_interval"]) == (10, 1, 5)
    assert train["optim"] == {"lr": 0.001, "optim": "adamw", "policy": "linear", "momentum": 0.9, "weight_decay": 0.01}
    assert train["classify"] == {"loss": "ce", "cls_weight": [1.0, 10.0]}
    assert raw["task"] == "classify"
    # TAO's schemas accept every key; relative dataset paths resolve inside the workspace.
    settings = spec_settings.train_settings(tao_spec.load_spec(ws / "specs/baseline_spec.yaml"), ws)
    assert settings.lights == lights
    for path in (settings.train_csv, settings.val_csv, settings.infer_csv):
        assert Path(path).is_file()
    assert Path(settings.train_images_dir) == ws / "images"
    assert Path(settings.infer_csv) == ws / "kpi/testing_set.csv"


def test_lights_option_sets_input_map_and_files(tmp_path):
    config = small_config(lights=4, image_size=16)
    generate_workspace(tmp_path / "ws", config)
    raw = yaml.safe_load((tmp_path / "ws/specs/baseline_spec.yaml").read_text())
    assert raw["dataset"]["classify"]["input_map"] == {light: i for i, light in enumerate(smt.LIGHTS)}
    assert raw["dataset"]["classify"]["num_input"] == 4
    csvdata.read_pairs_csv(tmp_path / "ws/kpi/testing_set.csv", images_dir=tmp_path / "ws/images",
                           lights=smt.LIGHTS, image_ext=".jpg", check_files=True)
    with pytest.raises(InputError, match="lights.*bare_board"):
        DemoConfig.from_preset("tiny", kind="bare_board", lights=2)


@pytest.mark.parametrize("kind", sorted(WORLDS))
def test_the_misregistered_variant_changes_only_the_goldens(tmp_path, kind):
    generate_workspace(tmp_path / "aligned", small_config(kind=kind, seed=4))
    generate_workspace(tmp_path / "shifted", small_config(kind=kind, seed=4, misregistration_px=2.0))
    aligned, shifted = tree_bytes(tmp_path / "aligned"), tree_bytes(tmp_path / "shifted")
    assert aligned.keys() == shifted.keys()
    for path in CSV_PATHS.values():  # the same rows, labels and metadata
        assert aligned[path] == shifted[path]
    tests = [k for k in aligned if "/test/" in k]
    goldens = [k for k in aligned if "/golden/" in k]
    assert tests and all(aligned[k] == shifted[k] for k in tests)
    assert sum(aligned[k] != shifted[k] for k in goldens) == len(goldens)
    truth = pd.read_csv(tmp_path / "shifted/demo_truth.csv", keep_default_na=False)
    assert truth["misregistration_px"].max() <= 2.0 + 0.6 and truth["misregistration_px"].mean() > 0.8
    assert json.loads(shifted["demo_manifest.json"])["misregistration_px"] == 2.0


# --------------------------------------------------------------------------------------------------
# Determinism, overwrite protection, CLI, synthetic pairs


def test_same_seed_is_bitwise_identical_whatever_the_workers_and_another_seed_differs(tmp_path):
    generate_workspace(tmp_path / "a", small_config(seed=5, synthetic_pairs=3))
    generate_workspace(tmp_path / "b", small_config(seed=5, synthetic_pairs=3, workers=2))
    generate_workspace(tmp_path / "c", small_config(seed=6, synthetic_pairs=3))
    a, b, c = (tree_bytes(tmp_path / name) for name in "abc")
    assert len(a) > 100 and a == b
    assert a["train/base/training_set.csv"] != c["train/base/training_set.csv"]
    shared_images = [k for k in a.keys() & c.keys() if k.endswith(".jpg")]
    assert not shared_images or any(a[k] != c[k] for k in shared_images)
    assert a["demo_truth.csv"] != c["demo_truth.csv"]


def test_refuses_non_empty_output_unless_forced(tmp_path, capsys):
    out = tmp_path / "ws"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(InputError, match="not empty.*--force"):
        generate_workspace(out, small_config())
    assert workspace.main(["--out", str(out), "--preset", "tiny", "--train", "10"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "user data"
    generate_workspace(out, small_config(), force=True)
    assert not (out / "keep.txt").exists() and (out / "kpi/testing_set.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != "ws"], "no temp or old directories left"


def test_cli_entry_writes_a_workspace(tmp_path, capsys):
    out = tmp_path / "ws"
    args = ["demo", "--out", str(out), "--preset", "tiny", "--seed", "2", "--lights", "1", "--image-size", "24",
            "--train", "10", "--val", "10", "--kpi", "10", "--pool", "10", "--synthetic-pairs", "2"]
    assert cli.main(args) == 0
    assert "demo workspace written" in capsys.readouterr().out
    manifest = json.loads((out / "demo_manifest.json").read_text())
    assert manifest["config"]["seed"] == 2 and manifest["lights"] == ["SolderLight"] and manifest["kind"] == "smt"
    assert cli.main(["demo", "--out", str(tmp_path / "bb"), "--kind", "bare_board", "--preset", "tiny",
                     "--train", "10", "--val", "10", "--kpi", "10", "--pool", "10"]) == 0
    assert json.loads((tmp_path / "bb/demo_manifest.json").read_text())["lights"] == ["UniformLight"]
    assert {n: s["rows"] for n, s in manifest["splits"].items()} == {"train": 10, "val": 10, "kpi": 10, "pool": 10,
                                                                     "synthetic": 2}
    with Image.open(next((out / "images").rglob("*.jpg"))) as image:
        assert image.size == (24, 24)
    assert cli.main(["demo", "--out", str(tmp_path / "x"), "--lights", "5"]) == 2
    assert "--lights" in capsys.readouterr().err


def test_synthetic_pairs_are_ingestible_pregenerated_pairs(tmp_path):
    generate_workspace(tmp_path / "ws", small_config(synthetic_pairs=4))
    root = tmp_path / "ws" / "augmentation" / "synthetic"
    manifest = pd.read_csv(root / "manifest.csv", dtype=str)
    assert list(manifest.columns[:2]) == ["object_name", "label"] and "comp_type_1" in manifest.columns
    assert len(manifest) == 4 and (manifest["label"] != "PASS").any()
    rows = sdg.ingest_pregenerated(root, lights=("SolderLight", "UniformLight"), image_ext=".jpg",
                                   out_images_root=tmp_path / "run_images", iteration=1)
    assert rows.attrs[sdg.INGEST_REPORT]["ingested"] == 4
    assert not rows.attrs[sdg.INGEST_REPORT]["incomplete"] and not rows.attrs[sdg.INGEST_REPORT]["unlisted"]


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="preset"):
        DemoConfig.from_preset("huge")
    with pytest.raises(InputError, match="kind"):
        DemoConfig.from_preset("tiny", kind="flex_board")
    with pytest.raises(InputError, match="misregistration_px"):
        DemoConfig.from_preset("tiny", misregistration_px=-1.0)
    with pytest.raises(InputError, match="--kpi"):
        DemoConfig.from_preset("tiny", kpi=3)
    with pytest.raises(InputError, match="unknown demo setting"):
        DemoConfig.from_preset("tiny", rows=3)


# --------------------------------------------------------------------------------------------------
# Scene and defects


def _pair_difference(comp: str, label: str, severity: float, seed: int) -> float:
    """Mean |test - golden| over all lights of one location, without any nuisance."""
    rng = np.random.default_rng([seed])
    base = scene.design_scene(comp, "MB1042", rng)
    golden, test = base, base
    if label != "PASS":
        golden, test, _ = defects.apply_defect(base, base, label, severity, rng)
    images = render.render_pair(golden, test, (scene.Camera(), scene.Camera()), 32, scene.LIGHTS)
    return float(np.mean([np.abs(images[1][light] - images[0][light]).mean() for light in scene.LIGHTS]))


@pytest.mark.parametrize("label", defects.DEFECT_LABELS)
def test_every_defect_is_visible_and_grows_with_severity(label):
    comps = [c for c in ("CHIP_RES", "SOIC8", "MELF") if defects.compatible(label, scene.COMPONENT_TYPES[c])]
    for comp in comps:
        assert _pair_difference(comp, "PASS", 0.0, 1) == 0.0
        low = np.mean([_pair_difference(comp, label, 0.0, seed) for seed in range(3)])
        high = np.mean([_pair_difference(comp, label, 1.0, seed) for seed in range(3)])
        assert low > 0.0, comp
        if label != "MISSING":  # a missing part is gross at any severity (which sets the paste left)
            assert low < high, (comp, low, high)


def test_defect_parameters_follow_severity():
    rng = np.random.default_rng(0)
    base = scene.design_scene("CHIP_RES", "PSU220", rng)
    _, shifted, params = defects.apply_defect(base, base, "SHIFT", 0.0, rng)
    assert np.hypot(shifted.dx - base.dx, shifted.dy - base.dy) == pytest.approx(defects.SHIFT_MIN_PX, abs=1e-6)
    assert defects.SHIFT_MIN_PX > defects.PLACEMENT_TOLERANCE_PX  # a subtle SHIFT is still beyond PASS
    _, skewed, _ = defects.apply_defect(base, base, "SKEW", 1.0, rng)
    assert abs(skewed.angle - base.angle) == pytest.approx(defects.SKEW_MAX_DEG)
    _, missing, _ = defects.apply_defect(base, base, "MISSING", 0.0, rng)
    _, bare, _ = defects.apply_defect(base, base, "MISSING", 1.0, rng)
    assert not missing.present and not bare.present
    assert sum(bare.solder) < sum(missing.solder) <= sum(base.solder)  # less paste left at high severity
    melf = scene.design_scene("MELF", "PSU220", rng)
    golden, flipped, _ = defects.apply_defect(melf, melf, "POLARITY", 0.0, rng)
    assert flipped.flipped and golden.mark_strength == flipped.mark_strength == 0.75  # the lot's faintest marking
    with pytest.raises(ValueError, match="not physical"):
        defects.apply_defect(base, replace(base, comp=scene.COMPONENT_TYPES["SOT23"]), "TOMBSTONE", 0.5, rng)


def test_pass_nuisance_modes_stay_within_tolerance():
    for mode in defects.NUISANCE_MODES:
        rng = np.random.default_rng([3, len(mode)])
        nuisance = defects.draw_nuisance(mode, 2, rng)
        dx, dy, angle = nuisance.test_placement
        assert np.hypot(dx, dy) <= defects.PLACEMENT_TOLERANCE_PX and abs(angle) <= defects.PLACEMENT_TOLERANCE_DEG
        assert nuisance.misregistration_px <= 0.6 and abs(nuisance.test.camera.rotation_deg) <= 2.0
        assert bool(nuisance.specks) == (mode == "dust") and nuisance.second_source == (mode == "second_source")
    shifted = defects.draw_nuisance("none", 2, np.random.default_rng(1), misregistration_px=2.0)
    assert 0 < np.hypot(shifted.golden.camera.shift_x, shifted.golden.camera.shift_y) <= 2.0
    assert shifted.golden.blur_sigma > 0
    assert defects.draw_nuisance("jpeg", 2, np.random.default_rng(1)).test.jpeg_quality <= 40


def test_a_second_source_part_changes_body_and_marking_but_not_polarity():
    rng = np.random.default_rng(2)
    base = scene.design_scene("SOIC8", "MB1042", rng)
    other = defects.second_source(base, rng)
    assert other.part.colour != base.part.colour and other.part.body == base.part.body
    assert [m for m in other.part.marks if m.polarity] == [m for m in base.part.marks if m.polarity]
    assert [m for m in other.part.marks if not m.polarity] != [m for m in base.part.marks if not m.polarity]


# --------------------------------------------------------------------------------------------------
# Bare board


def _bare_board_difference(region: str, label: str, severity: float, seed: int) -> float:
    """Max over 3x3 windows of mean |test - golden| at the demo's 64 px (a bare-board defect is local),
    no nuisance."""
    rng = np.random.default_rng([seed])
    build, _ = bare_board.REGIONS[region]
    layout = build(rng, "BB_FR4_A")
    test = layout if label == "PASS" else bare_board.apply_defect(layout, label, severity, rng)[0]
    texture = np.zeros((256, 128), np.float32)  # no laminate or copper texture
    golden_image, test_image = (bare_board.render_image(lay, bare_board.View(), 64, texture) for lay in (layout, test))
    diff = np.abs(test_image - golden_image).mean(axis=-1)
    windows = np.lib.stride_tricks.sliding_window_view(diff, (3, 3)).mean(axis=(-1, -2))
    return float(windows.max())


@pytest.mark.parametrize("label", bare_board.DEFECT_LABELS)
def test_every_bare_board_defect_is_visible_and_grows_with_severity(label):
    grows = []
    for region in bare_board.REGIONS:
        assert _bare_board_difference(region, "PASS", 0.0, 1) == 0.0
        low = np.mean([_bare_board_difference(region, label, 0.0, seed) for seed in range(3)])
        high = np.mean([_bare_board_difference(region, label, 1.0, seed) for seed in range(3)])
        assert low > 20.0, (region, low)  # grey levels in the 3x3 window around the defect
        assert low <= high, (region, low, high)  # equal where the feature caps it (a hole in a 3-mil trace)
        grows.append(low < high)
    assert sum(grows) >= len(grows) - 1


def test_bare_board_defects_edit_copper_where_they_say():
    rng = np.random.default_rng(5)
    layout = bare_board.REGIONS["TRACE_BUNDLE"][0](rng, "BB_FR4_A")
    for label in bare_board.DEFECT_LABELS:
        edited, params = bare_board.apply_defect(layout, label, 0.5, rng)
        adds, removes = len(edited.add) - len(layout.add), len(edited.remove) - len(layout.remove)
        if label in ("SHORT", "SPUR", "SPURIOUS_COPPER"):
            assert adds == 1 and removes == 0, label
        else:
            assert adds == 0 and removes >= 1, label
        assert params, label
    with pytest.raises(ValueError, match="unknown bare-board defect"):
        bare_board.apply_defect(layout, "BRIDGE", 0.5, rng)


def test_bare_board_nuisance_modes():
    for mode in bare_board.NUISANCE_MODES:
        golden, test, etch, tarnish = bare_board.draw_views(mode, np.random.default_rng([7, len(mode)]))
        assert np.hypot(test.shift_x - golden.shift_x, test.shift_y - golden.shift_y) <= 0.5
        assert (abs(etch) >= 0.15) == (mode == "etch") and bool(tarnish) == (mode == "tarnish")
        assert (test.blur_sigma > 0) == (mode == "blur") and (abs(test.gain - 1) > 0.03) <= (mode == "gain")


def test_accepts_a_tree_of_empty_folders(tmp_path):
    """Rule demo_workspace: Snakemake makes its outputs' folders before the job generates into them."""
    out = tmp_path / "ws"
    (out / "train" / "base").mkdir(parents=True)
    (out / "kpi").mkdir()
    generate_workspace(out, small_config())
    assert (out / "kpi/testing_set.csv").is_file() and (out / "train/base/training_set.csv").is_file()
