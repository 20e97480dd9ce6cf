from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aoideft import csvdata, progress
from aoideft.deft import sdg, sdg_images, sdg_procedural
from aoideft.errors import InputError

LIGHTS = ["SolderLight", "UniformLight"]
EXT = ".png"  # lossless, so pixel assertions see exactly what SDG drew
SIZE = 64


def golden_array(light: str, seed: int = 0) -> np.ndarray:
    """A 64x64 AOI-like crop: textured green board, dark part body, two pads, a polarity dot."""
    rng = np.random.default_rng(seed)
    image = np.empty((SIZE, SIZE, 3), np.float32)
    image[:] = (40, 90, 50)
    image += rng.normal(0, 4, image.shape)
    pad = 235 if light == "SolderLight" else 150
    image[26:38, 14:22] = pad
    image[26:38, 42:50] = pad
    image[24:40, 22:42] = (60, 60, 65)
    image[27:30, 23:26] = 200  # polarity mark: makes the part asymmetric
    return np.clip(image, 0, 255)


def write_png(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.rint(array).astype(np.uint8)).save(path)


@pytest.fixture
def training(tmp_path):
    """Six training rows (3 CAP, 3 RES) with golden and test images for both lights."""
    images = tmp_path / "ws_images"
    rows = []
    for i in range(6):
        name = f"t{i}"
        for light in LIGHTS:
            for rel in ("train/test", "train/golden"):
                write_png(csvdata.image_file(images, rel, name, light, EXT), golden_array(light, seed=i))
        rows.append({"input_path": "train/test", "golden_path": "train/golden", "label": "PASS",
                     "object_name": name, "comp_type_1": "CAP" if i < 3 else "RES", "boardname": f"b{i}"})
    return pd.DataFrame(rows), images


def targets_frame(labels: list[str], comp_type: str = "RES") -> pd.DataFrame:
    """SDG-routed gap rows (per light) for weak KPI samples with the given labels."""
    rows = []
    for i, label in enumerate(labels):
        for light in LIGHTS:
            rows.append({"filepath": f"x_{light}", "light": light, "label": label, "siamese_score": 0.5,
                         "weakness": 0.1 * (len(labels) - i), "row_key": f"kpi/k{i}", "input_path": "kpi",
                         "golden_path": "kpi_g", "object_name": f"k{i}", "comp_type_1": comp_type})
    return pd.DataFrame(rows)


def run_synthesize(training, root, *, labels=("PASS", "PASS", "PASS", "MISSING", "MISSING", "BRIDGE"), **kwargs):
    sources, images = training
    kwargs = {"iteration": 1, "num_sdg": 8, "seed": 3, **kwargs}
    return sdg.synthesize(targets_frame(list(labels)), sources, source_images_dir=images, lights=LIGHTS,
                          image_ext=EXT, run_images_root=root, **kwargs)


def test_synthetic_pairs_follow_the_csv_contract_and_exist_for_every_light(training, tmp_path):
    root = tmp_path / "run" / "images"
    rows = run_synthesize(training, root)
    assert len(rows) == 8 and rows["object_name"].is_unique
    assert set(rows["input_path"]) == {"sdg/iter1/test"} and set(rows["golden_path"]) == {"sdg/iter1/golden"}
    assert list(rows.columns[:4]) == ["input_path", "golden_path", "label", "object_name"]
    assert rows["object_name"].str.fullmatch(r"sdg_iter1_\d{4}").all()
    assert set(rows["sdg_target"]) <= {"kpi/k0", "kpi/k1", "kpi/k2", "kpi/k3", "kpi/k4", "kpi/k5"}
    # sources with the target's comp_type_1 (RES = t3..t5) are preferred; metadata comes from the source
    assert set(rows["sdg_source"]) <= {"train/test/t3", "train/test/t4", "train/test/t5"}
    assert set(rows["comp_type_1"]) == {"RES"} and rows["boardname"].isin(["b3", "b4", "b5"]).all()
    sources, images = training
    for row in rows.itertuples():
        source_name = row.sdg_source.rsplit("/", 1)[1]
        for light in LIGHTS:
            golden = csvdata.image_file(root, row.golden_path, row.object_name, light, EXT)
            assert golden.read_bytes() == csvdata.image_file(images, "train/golden", source_name, light, EXT).read_bytes()
            assert csvdata.image_file(root, row.input_path, row.object_name, light, EXT).is_file()
    csvdata.check_image_files(rows, images_dir=root, lights=LIGHTS, image_ext=EXT, source="sdg rows")
    assert not list(root.rglob("*.tmp"))  # atomic writes leave no temp files


def test_synthesis_logs_its_progress(training, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_EVERY", 5)
    run_synthesize(training, tmp_path / "r")
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert lines[0] == f"SDG iteration 1: 8 pairs x {len(LIGHTS)} lights"
    assert lines[1].startswith("SDG iteration 1: 5/8 pairs (62%) in ") and "ETA" in lines[1]
    assert lines[2].startswith("SDG iteration 1: done, 8 pairs in ") and len(lines) == 3


def test_budget_is_spread_proportionally_with_at_least_one_per_label(training, tmp_path):
    rows = run_synthesize(training, tmp_path / "r")
    assert rows["label"].value_counts().to_dict() == {"PASS": 4, "MISSING": 3, "BRIDGE": 1}
    assert sdg.split_budget({"PASS": 30, "MISSING": 1, "BRIDGE": 1}, 20) == {"PASS": 18, "MISSING": 1, "BRIDGE": 1}
    assert sdg.split_budget({"PASS": 5, "MISSING": 2, "BRIDGE": 2}, 2) == {"PASS": 1, "BRIDGE": 1}
    assert sum(sdg.split_budget({"A": 3, "B": 3, "C": 3}, 20).values()) == 20
    assert sdg.split_budget({"A": 3}, 0) == {}


def test_synthesis_is_deterministic_in_seed_and_iteration(training, tmp_path):
    first = run_synthesize(training, tmp_path / "a")
    second = run_synthesize(training, tmp_path / "b")
    run_synthesize(training, tmp_path / "c", seed=4)
    assert first.equals(second)
    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob(f"*{EXT}"))}

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


CENTRAL = (12, 52, 8, 56)  # the part and its pads in golden_array


def mean_abs_diff(a, b, box=None):
    diff = np.abs(a - b).mean(axis=2)
    if box is None:
        return float(diff.mean())
    y0, y1, x0, x1 = box
    inside = np.zeros(diff.shape, bool)
    inside[y0:y1, x0:x1] = True
    return float(diff[inside].mean()), float(diff[~inside].mean())


def render_pair(label, seed=0):
    goldens = [golden_array(light) for light in LIGHTS]
    plan = sdg_procedural.plan_defect(label, goldens, np.random.default_rng(seed))
    return plan, goldens, [sdg_procedural.render(golden, plan, light) for golden, light in zip(goldens, LIGHTS)]


@pytest.mark.parametrize("seed", range(3))
def test_missing_replaces_the_body_with_board_texture_and_keeps_the_pads(seed):
    plan, goldens, tests = render_pair("MISSING", seed)
    _, outside = mean_abs_diff(tests[0], goldens[0], plan.params["box"])
    assert outside < 2
    body = (slice(25, 39), slice(23, 41))  # golden_array's part body, inside every drawn box
    assert np.abs(tests[0][body] - goldens[0][body]).mean() > 20
    border = np.concatenate([goldens[0][:4].reshape(-1, 3), goldens[0][-4:].reshape(-1, 3)]).mean(axis=0)
    assert np.abs(tests[0][body].reshape(-1, 3).mean(axis=0) - border).max() < 15  # now bare board
    pads = (slice(27, 37), slice(43, 49))
    assert np.abs(tests[0][pads] - goldens[0][pads]).mean() < 10  # the right pad is still there


@pytest.mark.parametrize("label", ["EXCESS_SOLDER", "BRIDGE"])
def test_solder_defects_are_local_and_brightest_under_solder_light(label):
    plan, goldens, tests = render_pair(label)
    diffs = [np.abs(test - golden).mean(axis=2) for test, golden in zip(tests, goldens)]
    assert diffs[0].max() > 60 and diffs[0].mean() > 1.5
    assert (diffs[0] > 5).mean() < 0.35  # a local blob/stroke, not a global change
    assert diffs[0].sum() != diffs[1].sum()
    # same geometry in every light, appearance per light: solder is brighter under SolderLight
    changed = diffs[0] > 5
    assert ((diffs[1] > 1) | ~changed).mean() > 0.9
    assert tests[0][changed].mean() > tests[1][changed].mean()


@pytest.mark.parametrize("label", ["SHIFT", "SKEW", "TOMBSTONE", "POLARITY", "INSUFFICIENT_SOLDER",
                                   "SURFACE_ANOMALY", "LIFTED_LEAD"])
def test_every_defect_label_changes_the_component_region(label):
    for seed in range(3):
        plan, goldens, tests = render_pair(label, seed)
        diff = np.abs(tests[0] - goldens[0]).mean(axis=2)
        inside, outside = mean_abs_diff(tests[0], goldens[0], CENTRAL)
        assert (diff[12:52, 8:56] > 10).sum() >= 20, (label, seed)  # a visible change, even a thin scratch
        assert inside > outside, (label, seed, inside, outside)
    assert sdg_procedural.operation_for("LIFTED_LEAD") == "generic"


@pytest.mark.parametrize("seed", range(6))
def test_pass_nuisance_variants_stay_close_to_the_golden(seed):
    plan, goldens, tests = render_pair("PASS", seed)
    assert plan.kind == "nuisance" and max(abs(v) for v in plan.params["offset"]) <= 3
    dy, dx = plan.params["offset"]
    margin = 4
    for test, golden in zip(tests, goldens):
        assert 0.3 < mean_abs_diff(test, golden) < 16  # 3 px misregistration of sharp pads is most of it
        # once the misregistration is undone the content is the golden's: only drift, noise, dust remain
        aligned = test[margin + dy : SIZE - margin + dy, margin + dx : SIZE - margin + dx]
        assert mean_abs_diff(aligned, golden[margin:-margin, margin:-margin]) < 8


def test_jpeg_output_and_grey_images_keep_their_mode(tmp_path):
    grey = golden_array("SolderLight").mean(axis=2, keepdims=True)
    data = sdg_images.encode_image(grey, "L", ".jpg")
    path = tmp_path / "g.jpg"
    path.write_bytes(data)
    array, mode = sdg_images.load_image(path)
    assert mode == "L" and array.shape == (SIZE, SIZE, 1)
    with pytest.raises(InputError, match="image_ext"):
        sdg_images.encode_image(grey, "L", ".nope")


def test_missing_source_image_is_an_input_error(training, tmp_path):
    sources, images = training
    csvdata.image_file(images, "train/golden", "t3", "UniformLight", EXT).unlink()
    with pytest.raises(InputError, match="t3_UniformLight"):
        sdg.synthesize(targets_frame(["MISSING"] * 3), sources.iloc[3:4], source_images_dir=images, lights=LIGHTS,
                       image_ext=EXT, run_images_root=tmp_path / "r", iteration=1, num_sdg=1, seed=0)


def make_pregenerated(root, names_labels, *, skip=()):
    for name, _ in names_labels:
        for light in LIGHTS:
            for folder in ("reconstructed_image", "original_image"):
                if (name, light, folder) not in skip:
                    write_png(root / folder / f"{name}_{light}{EXT}", golden_array(light))
    pd.DataFrame({"object_name": [n for n, _ in names_labels], "label": [label for _, label in names_labels],
                  "comp_type_1": "CAP"}).to_csv(root / "manifest.csv", index=False)


def test_ingest_pairs_by_stem_and_skips_history_and_incomplete_sets(tmp_path):
    synthetic = tmp_path / "synthetic"
    make_pregenerated(synthetic, [("a", "BRIDGE"), ("b", "MISSING"), ("c", "PASS")],
                      skip={("b", "UniformLight", "reconstructed_image")})
    write_png(synthetic / "reconstructed_image" / f"stray_SolderLight{EXT}", golden_array("SolderLight"))
    root = tmp_path / "run" / "images"
    rows = sdg.ingest_pregenerated(synthetic, lights=LIGHTS, image_ext=EXT, out_images_root=root, iteration=1,
                                   history={"c"})
    report = rows.attrs["ingest_report"]
    assert list(rows["object_name"]) == ["a"] and list(rows["label"]) == ["BRIDGE"]
    assert report["ingested"] == 1 and report["already_ingested"] == ["c"]
    assert report["incomplete"] == {"b": [f"reconstructed_image/b_UniformLight{EXT}"]}
    assert report["unlisted"] == ["stray_SolderLight"]
    row = rows.iloc[0]
    assert (row.input_path, row.golden_path, row.comp_type_1, row.sdg_method) == (
        "sdg/iter1/test", "sdg/iter1/golden", "CAP", "pregenerated")
    for light in LIGHTS:
        assert csvdata.image_file(root, "sdg/iter1/test", "a", light, EXT).read_bytes() == \
            (synthetic / "reconstructed_image" / f"a_{light}{EXT}").read_bytes()
        assert csvdata.image_file(root, "sdg/iter1/golden", "a", light, EXT).is_file()

    # iteration 2 finds what iteration 1 ingested on disk and takes only the rest
    second = sdg.ingest_pregenerated(synthetic, lights=LIGHTS, image_ext=EXT, out_images_root=root, iteration=2)
    assert list(second["object_name"]) == ["c"] and second.attrs["ingest_report"]["already_ingested"] == ["a"]
    limited = sdg.ingest_pregenerated(synthetic, lights=LIGHTS, image_ext=EXT, out_images_root=tmp_path / "x",
                                      iteration=1, max_pairs=1)
    assert list(limited["object_name"]) == ["a"] and limited.attrs["ingest_report"]["deferred"] == ["c"]


def test_ingest_without_manifest_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="manifest.csv"):
        sdg.ingest_pregenerated(tmp_path, lights=LIGHTS, image_ext=EXT, out_images_root=tmp_path / "o", iteration=1)


def test_write_sdg_manifest(training, tmp_path):
    rows = run_synthesize(training, tmp_path / "r")
    sdg.write_sdg_manifest(rows, tmp_path / "out", details={"num_sdg": 8})
    back = pd.read_csv(tmp_path / "out" / "sdg_rows.csv")
    assert list(back["object_name"]) == list(rows["object_name"])
    summary = json.loads((tmp_path / "out" / "sdg_summary.json").read_text())
    assert summary["total"] == 8 and summary["per_label"] == {"BRIDGE": 1, "MISSING": 3, "PASS": 4}
    assert summary["num_sdg"] == 8 and sum(summary["per_method"].values()) == 8


def mode_targets(modes: dict[str, tuple[str, int]], comp_type: str = "RES") -> pd.DataFrame:
    """Routed failure-mode targets: {mode id: (label, quota)}, two weak rows per mode."""
    rows = []
    for m, (mode, (label, quota)) in enumerate(modes.items()):
        for j in range(2):
            rows.append({"input_path": "kpi", "golden_path": "kpi_g", "label": label, "object_name": f"k{m}{j}",
                         "row_key": f"kpi/k{m}{j}", "siamese_score": 0.3, "weakness": 0.5 - 0.1 * j,
                         "severity": 0.0 if j == 0 else 1.0, "failure_mode": mode, "mode_quota": quota,
                         "comp_type_1": comp_type, "boardname": "b1" if label == "PASS" else "b4"})
    return pd.DataFrame(rows)


def test_mode_slots_follow_quotas_severity_and_the_modes_column(training, tmp_path):
    targets = mode_targets({"missed:label=MISSING": ("MISSING", 2), "false_alarm:boardname=b1": ("PASS", 1)})
    modes = [{"id": "missed:label=MISSING", "definition": {"label": "MISSING"}},
             {"id": "false_alarm:boardname=b1", "definition": {"boardname": "b1"}}]
    slots = sdg.mode_slots(targets, modes, oversample=2)
    assert [s.mode for s in slots] == ["false_alarm:boardname=b1"] * 2 + ["missed:label=MISSING"] * 4
    missed = [s for s in slots if s.mode.startswith("missed")]
    # weakest row first; the lowest-scored defect (severity 0) is drawn at half strength
    assert [s.target["object_name"] for s in missed] == ["k00", "k01", "k00", "k01"]
    assert [s.strength for s in missed] == [sdg.MIN_STRENGTH, 1.0, sdg.MIN_STRENGTH, 1.0]
    assert all(s.strength == 1.0 for s in slots if s.mode.startswith("false_alarm"))  # nuisance variants
    assert slots[0].match_columns == ("boardname",) and missed[0].match_columns == ()
    sources, images = training
    rows = sdg.synthesize(targets, sources, source_images_dir=images, lights=LIGHTS, image_ext=EXT,
                          run_images_root=tmp_path / "r", iteration=1, seed=3, slots=slots)
    # the false-alarm mode's pairs come from its board b1 (the RES comp_type of the target has none there: relaxed)
    assert set(rows.loc[rows["sdg_mode"].str.startswith("false_alarm"), "boardname"]) == {"b1"}
    assert rows["sdg_strength"].tolist() == [1.0, 1.0, 0.5, 1.0, 0.5, 1.0]
    half = rows[rows["sdg_strength"] == 0.5]["sdg_change"].mean()
    full = rows[(rows["sdg_strength"] == 1.0) & (rows["label"] == "MISSING")]["sdg_change"].mean()
    assert 0 < half < full


def candidate_rows(specs: list[tuple[str, str, float]]) -> pd.DataFrame:
    """(label, mode, change) per candidate."""
    return pd.DataFrame({"input_path": "sdg/iter1/test", "golden_path": "sdg/iter1/golden",
                         "label": [s[0] for s in specs], "object_name": [f"sdg_iter1_{i:04d}" for i in range(len(specs))],
                         "sdg_mode": [s[1] for s in specs], "sdg_change": [s[2] for s in specs]})


def test_verification_rejects_what_teaches_nothing():
    rules = sdg.VerifyRules(pass_threshold=0.4, defect_threshold=0.6, margin=0.1, near_duplicate_cosine=0.99,
                            min_change=0.5)
    candidates = candidate_rows([
        ("MISSING", "m", 5.0),  # 0 kept: scored 0.55, below the defect threshold: the model misses it
        ("MISSING", "m", 0.1),  # 1 invisible
        ("MISSING", "m", 5.0),  # 2 already caught: 0.8 >= 0.6 + 0.1
        ("PASS", "p", 2.0),  # 3 already passed: 0.2 <= 0.4 - 0.1
        ("PASS", "p", 2.0),  # 4 kept: 0.45 raises a false alarm
        ("MISSING", "m", 5.0),  # 5 near-duplicate of 0
        ("MISSING", "m", 5.0),  # 6 kept (second of quota 2)
        ("MISSING", "m", 5.0),  # 7 surplus: quota of m is 2
    ])
    scores = np.array([0.55, 0.5, 0.8, 0.2, 0.45, 0.5, 0.52, 0.5])
    embeddings = np.eye(8)
    embeddings[5] = embeddings[0] + 0.01
    accepted, rejected = sdg.verify(candidates, scores, embeddings, rules, quotas={"m": 2, "p": 1})
    assert accepted["object_name"].str[-1].tolist() == ["0", "4", "6"]
    assert dict(zip(rejected["object_name"].str[-1], rejected["reject_reason"])) == {
        "1": "no_visible_change", "2": "already_flagged", "3": "already_passed", "5": "near_duplicate", "7": "surplus"}
    assert "sdg_iter1_0000" in rejected.set_index("reject_reason").at["near_duplicate", "reject_detail"]
    assert list(accepted.columns) == list(candidates.columns)


def test_rejected_pairs_are_deleted(training, tmp_path):
    rows = run_synthesize(training, tmp_path / "r", num_sdg=2)
    sdg.delete_pairs(rows.iloc[:1], run_images_root=tmp_path / "r", lights=LIGHTS, image_ext=EXT)
    for light in LIGHTS:
        assert not csvdata.image_file(tmp_path / "r", rows.at[0, "input_path"], rows.at[0, "object_name"], light, EXT).exists()
        assert csvdata.image_file(tmp_path / "r", rows.at[1, "input_path"], rows.at[1, "object_name"], light, EXT).exists()
