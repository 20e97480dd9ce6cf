"""The bad-input battery: one case per way a workspace or config can be wrong. Each case breaks a
copy of the tiny demo workspace (or its config) one way and runs the pre-flight gate Snakemake runs
at parse time, before any job: the config schema, then `preflight.check_inputs` (profile, search
space, workspace). Each must be refused
with one message naming the file, row or key (and what to do), or, where the contract says so,
accepted with the problem reported."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from snakemake.utils import validate

from aoideft.errors import InputError
from aoideft.workflow import config_check, inputs, preflight, settings as run_settings
from conftest import REPO, SNAKEMAKE, run_snakemake, tiny_config

SCHEMA = str(REPO / "config" / "schemas" / "config.schema.yaml")
TRAIN = "train/base/training_set.csv"
VALIDATION = "train/base/validation_set.csv"
KPI = "kpi/testing_set.csv"
POOL = "augmentation/mining_pool/mining_pool.csv"


def _csv(ws: Path, rel: str) -> pd.DataFrame:
    return pd.read_csv(ws / rel, dtype=str, keep_default_na=False)


def _write(ws: Path, rel: str, frame: pd.DataFrame) -> None:
    frame.to_csv(ws / rel, index=False)


def _edit(rel: str, change):
    def mutate(ws: Path, config: dict) -> None:
        _write(ws, rel, change(_csv(ws, rel)))
    return mutate


def _image(ws: Path, rel: str, row: int, side: str = "input_path", light: str = "SolderLight") -> Path:
    frame = _csv(ws, rel)
    return ws / "images" / frame.loc[row, side] / f"{frame.loc[row, 'object_name']}_{light}.jpg"


def _config(**changes):
    def mutate(ws: Path, config: dict) -> None:
        for key, value in changes.items():
            node = config
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return mutate


def _spec(change):
    def mutate(ws: Path, config: dict) -> None:
        path = ws / "specs" / "baseline_spec.yaml"
        spec = yaml.safe_load(path.read_text())
        change(spec)
        path.write_text(yaml.safe_dump(spec))
    return mutate


def _remove_image(ws, config):
    _image(ws, TRAIN, 3).unlink()


def _corrupt_image(ws, config):
    _image(ws, VALIDATION, 2).write_bytes(b"this is not a JPEG")


def _truncate_image(ws, config):
    path = _image(ws, KPI, 4)
    path.write_bytes(path.read_bytes()[:200])


def _golden_size_mismatch(ws, config):
    path = _image(ws, TRAIN, 5, side="golden_path")
    with Image.open(path) as image:
        image.resize((image.width + 8, image.height)).save(path)


def _leak(source: str, target: str, row: int = 0):
    def mutate(ws: Path, config: dict) -> None:
        target_frame = _csv(ws, target)
        _write(ws, target, pd.concat([target_frame, _csv(ws, source).iloc[[row]]], ignore_index=True))
    return mutate


def _only(label_is_pass: bool):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[(frame["label"] == "PASS") == label_is_pass]
    return change


def _empty_file(rel: str):
    def mutate(ws: Path, config: dict) -> None:
        (ws / rel).write_text("")
    return mutate


def _drop_spec(ws, config):
    (ws / "specs" / "baseline_spec.yaml").unlink()


def _no_workspace(ws, config):
    shutil.rmtree(ws)


def _set_row(rel: str, row: int, column: str, value: str):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return _edit(rel, change)


def _unwritable_run_dir(ws, config):
    blocker = ws.parent / "a-file"
    blocker.write_text("not a directory")
    config["run_dir"] = str(blocker / "run")


def _run_dir_in_image_root(ws, config):
    """Images outside the workspace (datasets.images_dir absolute) and the run directory inside them."""
    root = ws.parent / "image-root"
    shutil.move(ws / "images", root)
    config["datasets"] = {"images_dir": str(root), "pool_images_dir": str(root)}
    config["run_dir"] = str(root / "aoideft-run")


def _copy_pair(ws: Path, source: str, row: int, target: str, new_dir: str, label: str | None = None) -> None:
    """Append row ``row`` of ``source`` to ``target`` with its images copied byte for byte under
    ``new_dir`` (test and golden, every light): the same pair under other paths."""
    frame = _csv(ws, source).iloc[[row]].copy()
    for side in ("input_path", "golden_path"):
        old_dir = frame[side].iloc[0]
        for image in (ws / "images" / old_dir).glob(f"{frame['object_name'].iloc[0]}_*"):
            (ws / "images" / new_dir / side).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, ws / "images" / new_dir / side / image.name)
        frame[side] = f"{new_dir}/{side}"
    if label is not None:
        frame["label"] = label
    _write(ws, target, pd.concat([_csv(ws, target), frame], ignore_index=True))


def _other_label(ws: Path, rel: str, row: int) -> str:
    return "BRIDGE" if _csv(ws, rel).loc[row, "label"] == "PASS" else "PASS"


def _kpi_copy_in_training(ws, config):
    _copy_pair(ws, KPI, 2, TRAIN, "train/copies")


def _training_pair_twice_other_label(ws, config):
    _copy_pair(ws, TRAIN, 4, TRAIN, "train/copies", label=_other_label(ws, TRAIN, 4))


def _two_label_columns(ws, config):
    """A second `label` column whose values disagree with the first on some rows."""
    path = ws / TRAIN
    lines = path.read_text().splitlines()
    labels = _csv(ws, TRAIN)["label"].tolist()
    flipped = ["PASS" if label != "PASS" else "MISSING" for label in labels]
    path.write_text("\n".join([lines[0] + ",label", *(f"{line},{flip}" for line, flip in zip(lines[1:], flipped))]) + "\n")


def _saved_as_cp1252(ws, config):
    frame = _csv(ws, VALIDATION)
    frame.loc[3, "comp_name"] = "Résistance"
    (ws / VALIDATION).write_bytes(frame.to_csv(index=False).encode("cp1252"))


def _to_16_bit(ws, config):
    """Every image as a 16-bit greyscale PNG (value x 257: the same picture, 16 bits deep)."""
    for jpeg in sorted((ws / "images").rglob("*.jpg")):
        with Image.open(jpeg) as image:
            grey = np.asarray(image.convert("L"), dtype=np.uint16)
        Image.fromarray(grey * 257).save(jpeg.with_suffix(".png"))
        jpeg.unlink()
    _spec(lambda s: s["dataset"]["classify"].update(image_ext=".png"))(ws, config)


# (case id, how to break it, what the message must say)
CASES = [
    ("missing label column", _edit(TRAIN, lambda f: f.drop(columns=["label"])), r"training_set\.csv.*label"),
    ("missing input_path column", _edit(KPI, lambda f: f.drop(columns=["input_path"])), r"testing_set\.csv.*input_path"),
    ("lower-case pass label", _set_row(VALIDATION, 1, "label", "pass"), r"validation_set\.csv.*row 2.*PASS"),
    ("empty label cell", _set_row(TRAIN, 2, "label", ""), r"training_set\.csv.*row 3.*label"),
    ("unknown light in the spec", _spec(lambda s: s["dataset"]["classify"].update(
        input_map={**s["dataset"]["classify"]["input_map"], "InfraredLight": 2})), r"InfraredLight"),
    ("missing image", _remove_image, r"training_set\.csv.*row 4.*SolderLight"),
    ("corrupt image", _corrupt_image, r"validation_set\.csv.*row 3"),
    ("truncated image", _truncate_image, r"testing_set\.csv.*row 5"),
    ("golden/test size mismatch", _golden_size_mismatch, r"training_set\.csv.*row 6.*size"),
    ("empty training split", _edit(TRAIN, lambda f: f.iloc[0:0]), r"training_set\.csv.*no data rows"),
    ("empty CSV file", _empty_file(VALIDATION), r"validation_set\.csv"),
    ("duplicate rows", _edit(TRAIN, lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True)), r"training_set\.csv.*duplicate"),
    ("leakage train/validation", _leak(TRAIN, VALIDATION), r"train.*validation"),
    ("leakage validation/KPI", _leak(VALIDATION, KPI), r"validation.*kpi"),
    ("leakage train/KPI", _leak(TRAIN, KPI), r"train.*kpi"),
    ("KPI set with no defects", _edit(KPI, _only(True)), r"testing_set\.csv.*PASS and defect"),
    ("KPI set with no PASS rows", _edit(KPI, _only(False)), r"testing_set\.csv.*PASS and defect"),
    ("validation set with no defects", _edit(VALIDATION, _only(True)), r"validation_set\.csv.*PASS and defect"),
    ("image path escaping the workspace", _set_row(TRAIN, 0, "input_path", "../../etc"), r"training_set\.csv.*row 1.*outside"),
    ("spec file missing", _drop_spec, r"baseline_spec\.yaml.*not found.*spec"),
    ("spec key typo", _spec(lambda s: s["train"].update(num_epoch=3)), r"num_epoch"),
    ("spec value of the wrong type", _spec(lambda s: s["train"].update(num_epochs="ten")), r"num_epochs"),
    ("workspace missing, no demo", lambda ws, c: (_no_workspace(ws, c), c["demo"].update(generate=False)),
     r"workspace .* does not exist"),
    ("empty mining pool", _edit(POOL, lambda f: f.iloc[0:0]), r"mining_pool\.csv.*no data rows"),
    ("run directory not writable", _unwritable_run_dir, r"run_dir .*a-file/run is not writable"),
    ("unknown config key", _config(**{"deft.max_iteratons": 3}), r"max_iteratons"),
    ("nested config key typo", _config(**{"deft.max_iteration": 3}),
     r"^unknown config key deft\.max_iteration; did you mean deft\.max_iterations\? \(config/schemas"),
    ("run_dir equal to the workspace", lambda ws, c: c.update(run_dir=str(ws)), r"run_dir .* is the workspace"),
    ("run_dir inside the workspace", lambda ws, c: c.update(run_dir=str(ws / "results" / "run")),
     r"run_dir .*/results/run lies inside the workspace .*set `run_dir`"),
    ("run_dir inside the image root", _run_dir_in_image_root, r"run_dir .* lies inside the datasets\.images_dir"),
    ("pinned num_epochs 0", _config(**{"automl.pinned": {"train.num_epochs": 0}}),
     r"^config automl\.pinned: spec key 'train\.num_epochs' must be at least 1, got 0$"),
    ("pinned batch size 1", _config(**{"automl.pinned": {"dataset.classify.batch_size": 1}}),
     r"baseline_spec\.yaml with config automl\.pinned: spec key 'dataset\.classify\.batch_size' must be at least 2"),
    ("KPI pair copied into training under other paths", _kpi_copy_in_training,
     r"hard stop: train and kpi .* 1 image pair\(s\) are in both under other paths \(byte-identical"
     r".*train CSV .* row 61 \(train/copies/input_path/.*= kpi CSV .* row 3 \("),
    ("one pair twice in training with two labels", _training_pair_twice_other_label,
     r"train CSV \(.*training_set\.csv\): rows 5 and 61 hold byte-identical image pairs .* conflicting labels"),
    ("two label columns", _two_label_columns,
     r"training_set\.csv\): the header names a column more than once \('label' in columns 3, 10\); keep one"),
    ("CSV saved as cp1252", _saved_as_cp1252, r"validation_set\.csv\): line 5 is not UTF-8 .*save it as UTF-8"),
    ("16-bit images with backend tao", lambda ws, c: (_to_16_bit(ws, c), c.update(backend="tao")),
     r"16-bit greyscale image files \(train CSV .* 480.*TAO's data loader .* export them as 8-bit"),
    ("negative row budget", _config(**{"deft.budget.max_new_rows": -5}), r"max_new_rows|-5"),
    ("inverted search range", _config(**{"automl.search_space": [
        {"parameter": "train.optim.lr", "valid_min": 0.01, "valid_max": 0.001}]}), r"train\.optim\.lr.*valid_min"),
    ("KPI target above 100%", _config(**{"kpi.target_far_pct": 150}), r"target_far_pct|150"),
    ("zero AutoML recommendations", _config(**{"automl.phase1.max_recommendations": 0}), r"max_recommendations|0"),
]


def _gate(workspace: Path, config: dict) -> inputs.WorkspaceReport | None:
    """What Snakemake runs at parse time (rules/common.smk): the config check, Snakemake's schema
    validation (defaults), then the pre-flight's checks."""
    config_check.check_config(config, config_check.load_schema(SCHEMA))
    validate(config, schema=SCHEMA, set_default=True)
    return preflight.check_inputs(run_settings.resolve(config, REPO))


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("case,break_it,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_clear_message(case, break_it, expected, tmp_path, tiny_workspace):
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    config = tiny_config(workspace, tmp_path / "run")
    _gate(workspace, yaml.safe_load(yaml.safe_dump(config)))  # the unbroken copy passes
    shutil.rmtree(tmp_path / "run")  # ... and made its run directory: the broken one must not
    break_it(workspace, config)
    before = _files(tmp_path)
    # Rows are numbered as the messages number them: the first data row is row 1.
    with pytest.raises(InputError) as refused:
        _gate(workspace, config)
    message = str(refused.value)
    assert re.search(expected, message, re.IGNORECASE | re.DOTALL), message
    assert "Traceback" not in message and "\n" not in message and len(message) < 1200, message
    # Nothing is written before the gate passes (the run directory may be made, empty, by the check
    # that it takes files).
    assert [p for p in _files(tmp_path) if p != tmp_path / "run"] == before, "written before the gate passed"


def test_pool_rows_repeating_kpi_rows_are_excluded_and_reported(tmp_path, tiny_workspace):
    """Contract: pool/KPI overlap is not fatal; mining skips those rows and the pre-flight counts them."""
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    config = tiny_config(workspace, tmp_path / "run")
    before = inputs.check_workspace(run_settings.resolve(config, REPO)).pool.overlaps["kpi"]
    _leak(KPI, POOL)(workspace, config)
    _leak(KPI, POOL, row=1)(workspace, config)
    assert inputs.check_workspace(run_settings.resolve(config, REPO)).pool.overlaps["kpi"] == before + 2


def test_pool_copies_by_content_are_counted_named_and_never_mined(tmp_path, tiny_workspace):
    """The pool holds byte-identical copies of two KPI pairs and of a training pair with the other
    label, under pool paths: the gate passes, counts them, names the label conflict, and the record
    mining reads (inputs/workspace.json, via workspace_ready) excludes all three."""
    from aoideft.workflow import intake

    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    config = tiny_config(workspace, tmp_path / "run")
    _copy_pair(workspace, KPI, 1, POOL, "pool/kpi-copies")
    _copy_pair(workspace, KPI, 3, POOL, "pool/kpi-copies")
    _copy_pair(workspace, TRAIN, 4, POOL, "pool/train-copies", label=_other_label(workspace, TRAIN, 4))
    report = _gate(workspace, config)
    assert report.pool.overlaps == {"train": 1, "validation": 0, "kpi": 2} and report.pool.repeats == 0
    train_row = _csv(workspace, TRAIN).iloc[4]
    conflict = [note for note in report.notes if "with another label" in note]
    assert len(conflict) == 1 and "pool CSV" in conflict[0] and "row 123 (pool/train-copies/input_path/" in conflict[0]
    assert f"train CSV ({workspace / TRAIN}) row 5" in conflict[0] and train_row["label"] in conflict[0]
    settings = run_settings.resolve(config, REPO)
    intake.workspace_ready(settings, settings.run_dir / "inputs" / "workspace.json")
    pool = _csv(workspace, POOL)
    copies = set(pool["input_path"].iloc[-3:] + "/" + pool["object_name"].iloc[-3:])
    assert inputs.pool_exclusions(settings) == copies
    summary = preflight.render_summary(settings, report)
    assert "train 1, validation 0, kpi 2; repeating an earlier pool row: 0" in summary and conflict[0] in summary


def test_16_bit_images_are_scaled_to_8_bits_not_blanked(tmp_path, tiny_workspace):
    """A workspace of 16-bit greyscale PNGs passes with a note, and decodes to the same 8-bit
    picture as before the conversion (PIL's convert alone gives 255 everywhere)."""
    from aoideft.images import decode_pairs

    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    frame = _csv(workspace, TRAIN).iloc[:6]
    lights = ("SolderLight", "UniformLight")
    expected = decode_pairs(frame, images_dir=workspace / "images", lights=lights, image_ext=".jpg", size=(32, 32),
                            channels=1)
    with Image.open(_image(workspace, TRAIN, 0)) as image:
        grey = np.asarray(image.convert("L"))
    _to_16_bit(workspace, {})
    report = _gate(workspace, tiny_config(workspace, tmp_path / "run"))
    assert any(note.startswith("16-bit greyscale image files (train CSV") and "scaled to 8 bits" in note
               for note in report.notes), report.notes
    decoded = decode_pairs(frame, images_dir=workspace / "images", lights=lights, image_ext=".png", size=(32, 32),
                           channels=1)
    # The 8-bit reference decodes the JPEG to L directly; the PNG holds exactly that L picture x 257.
    assert np.array_equal(decoded.test[0, 0, 0].numpy(), grey)
    assert decoded.test.float().mean() < 250 and decoded.test.float().std() > 1, "not a blank (white) frame"
    assert expected.test.shape == decoded.test.shape


def test_tao_7_ea_spec_template_is_accepted_with_a_note(tmp_path, tiny_workspace):
    """TAO 7.0.0-EA's spec_template_train.yaml (checkpoint_interval 200, tests/data) with the
    workspace's dataset settings: accepted; every job spec clamps the interval to the pinned epochs."""
    from aoideft import spec as tao_spec
    from aoideft.workflow import automl_jobs

    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    spec_path = workspace / "specs" / "baseline_spec.yaml"
    ours = yaml.safe_load(spec_path.read_text())["dataset"]["classify"]
    template = yaml.safe_load((REPO / "tests" / "data" / "tao_7_0_0_ea_spec_template_train.yaml").read_text())
    assert template["train"]["checkpoint_interval"] == 200
    template["dataset"]["classify"].update({key: ours[key] for key in ("input_map", "num_input", "image_ext",
                                                                        "image_width", "image_height")})
    spec_path.write_text(yaml.safe_dump(template))
    config = tiny_config(workspace, tmp_path / "run")
    report = _gate(workspace, config)
    assert "train.checkpoint_interval 200 > train.num_epochs 2: every job spec uses 2" in " ".join(report.notes)
    settings = run_settings.resolve(config, REPO)  # _gate filled in the defaults
    job = automl_jobs.rec_spec(settings, automl_jobs.PHASE1, {"train.optim.lr": 0.001})
    assert tao_spec.get_dotted(job, "train.checkpoint_interval") == 2
    assert "every job spec uses 2" in preflight.render_summary(settings, report)


def test_the_gate_stops_snakemake_before_any_job(tmp_path, tiny_workspace):
    """The same check through the real command: one line, exit 1, nothing run or written."""
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    _corrupt_image(workspace, {})
    proc = run_snakemake(tiny_config(workspace, tmp_path / "run"), tmp_path / "config.yaml", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("PRE-FLIGHT FAILED")]
    assert len(lines) == 1 and "validation_set.csv" in lines[0] and "row 3" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "run" / "preflight").exists()


def _zero_padded_names(ws: Path) -> dict[str, str]:
    """Every object_name of the four CSVs as a zero-padded number ('000019'), its image files renamed to
    match; returns old -> new."""
    names: dict[str, str] = {}
    for rel in (TRAIN, VALIDATION, KPI, POOL):
        for name in _csv(ws, rel)["object_name"]:
            names.setdefault(name, f"{len(names) + 1:06d}")
    lights = yaml.safe_load((ws / "specs" / "baseline_spec.yaml").read_text())["dataset"]["classify"]["input_map"]
    for image in sorted((ws / "images").rglob("*.jpg")):
        light = next(light for light in lights if image.stem.endswith(f"_{light}"))
        image.rename(image.with_name(f"{names[image.stem[:-len(light) - 1]]}_{light}{image.suffix}"))
    for rel in (TRAIN, VALIDATION, KPI, POOL):
        frame = _csv(ws, rel)
        _write(ws, rel, frame.assign(object_name=frame["object_name"].map(names)))
    return names


def test_zero_padded_names_and_pool_copies_through_the_loop(tmp_path, tiny_workspace):
    """Numeric object names with leading zeros stay strings in every CSV the workflow reads and writes
    (RCA used to look up KPI embeddings for 19, not 000019), and the pool's byte-identical copies of
    KPI pairs (similarity 1.0 to their targets) and of a training pair with the other label are never
    mined: the real workflow up to iteration 1's validated training CSV."""
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    names = set(_zero_padded_names(workspace).values())
    for row in (0, 1, 2, 3):
        _copy_pair(workspace, KPI, row, POOL, "pool/kpi-copies")
    _copy_pair(workspace, TRAIN, 4, POOL, "pool/train-copies", label=_other_label(workspace, TRAIN, 4))
    copies = set(_csv(workspace, POOL)["input_path"].iloc[-5:] + "/" + _csv(workspace, POOL)["object_name"].iloc[-5:])
    run = tmp_path / "run"
    config = tiny_config(workspace, run, **{"automl.phase1.max_recommendations": 1, "deft.max_iterations": 1})
    run_snakemake(config, tmp_path / "config.yaml", "iter1/dataset/gate.json")
    mined = pd.read_csv(run / "iter1" / "mining" / "mined_rows.csv", dtype=str, keep_default_na=False)
    summary = yaml.safe_load((run / "iter1" / "mining" / "mining_summary.json").read_text())
    assert not set(mined["input_path"] + "/" + mined["object_name"]) & copies, "a copy was mined"
    assert summary["stats"]["excluded_rows"] == len(copies)
    dataset = run / "iter1" / "dataset"
    combined = pd.read_csv(dataset / "train_combined_iter1.csv", dtype=str, keep_default_na=False)
    provenance = pd.read_csv(dataset / "train_combined_iter1_provenance.csv", dtype=str, keep_default_na=False)
    real = combined["object_name"][provenance["source"].isin(["base_train", "mining_pool"]).to_numpy()]
    assert len(real) == 60 + len(mined) and set(real) <= names, "object names kept as written"
    kpi = pd.read_csv(run / "baseline" / "inference" / "best_val" / "inference.csv", dtype=str, keep_default_na=False)
    assert set(kpi["object_name"]) <= names
    assert yaml.safe_load((run / "iter1" / "dataset" / "gate.json").read_text())["hard_stop"] is False


def _unprivileged() -> list[str]:
    """A command prefix under which file modes apply: nothing for a normal user; for root, setpriv
    without the capabilities that bypass them (root can read any file otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: an unreadable file cannot be made")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def _unreadable(rel: str):
    def mutate(ws: Path, config: dict) -> None:
        (ws / rel).chmod(0)
    return mutate


def _nested_typo(ws, config):
    config["deft"]["max_iteration"] = 3


SNAKEMAKE_CASES = [
    ("run_dir inside the workspace", lambda ws, c: c.update(run_dir=str(ws / "results" / "run")),
     r"run_dir .*/workspace/results/run lies inside the workspace"),
    ("run_dir equal to the workspace", lambda ws, c: c.update(run_dir=str(ws)), r"run_dir .*/workspace is the workspace"),
    ("unreadable CSV", _unreadable(KPI), r"testing_set\.csv\): cannot read the CSV \(permission denied for this user\)"),
    ("unreadable spec file", _unreadable("specs/baseline_spec.yaml"),
     r"baseline_spec\.yaml: cannot read the spec file \(permission denied for this user\); make it readable"),
    ("unreadable spec folder", _unreadable("specs"),
     r"specs/baseline_spec\.yaml: permission denied for this user .*make it and its folders readable"),
    ("nested config key typo", _nested_typo, r"unknown config key deft\.max_iteration; did you mean deft\.max_iterations\?"),
]


@pytest.mark.parametrize("case,break_it,expected", SNAKEMAKE_CASES, ids=[c[0] for c in SNAKEMAKE_CASES])
def test_snakemake_n_refuses_in_one_line_and_writes_nothing_into_the_workspace(case, break_it, expected, tmp_path,
                                                                               tiny_workspace):
    """Through the real `snakemake -n`: what went wrong before reached the user as a PermissionError
    traceback through rules/common.smk, a 445-line schema dump, or a .snakemake/ folder inside the
    (read-only) workspace. Now: exit 1, one PRE-FLIGHT FAILED line, the workspace untouched."""
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    config = tiny_config(workspace, tmp_path / "run")
    before = _files(workspace)
    break_it(workspace, config)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    command = [*_unprivileged(), SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "-n",
               "--cores", "1"]
    try:
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        for path in (workspace / "specs", workspace / KPI, workspace / "specs" / "baseline_spec.yaml"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("PRE-FLIGHT FAILED: ")]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr and "additionalProperties" not in proc.stderr, proc.stderr[-3000:]
    assert len(proc.stderr.splitlines()) < 10, proc.stderr
    assert _files(workspace) == before, "the workspace is read-only to the workflow (no .snakemake/)"
    assert _files(tmp_path / "run") == [], "nothing written (the run directory itself may have been made)"


def test_a_full_disk_stops_with_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """Simulated: the flush to disk fails with ENOSPC while a state file is rewritten."""
    import errno
    import os

    from aoideft import fsutil

    target = tmp_path / "deft_state.json"
    fsutil.write_json(target, {"iteration": 1})

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(InputError, match=r"deft_state\.json: no space left on the device .* free space under"):
        fsutil.write_json(target, {"iteration": 2})
    monkeypatch.undo()
    assert fsutil.read_json_input(target, what="state", fix="-") == {"iteration": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["deft_state.json"], "no temp file is left behind"
