"""The bad-input battery: one case per way a workspace or config can be wrong. Each case breaks a
copy of the tiny demo workspace (or its config) one way and runs the pre-flight gate Snakemake runs
at parse time, before any job: the config schema, then `preflight.check_inputs` (profile, search
space, workspace). Each must be refused
with one message naming the file, row or key (and what to do), or, where the contract says so,
accepted with the problem reported."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from aoideft.errors import InputError
from aoideft.workflow import inputs, preflight, settings as run_settings
from conftest import REPO, run_snakemake, tiny_config

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
    ("negative row budget", _config(**{"deft.budget.max_new_rows": -5}), r"max_new_rows|-5"),
    ("inverted search range", _config(**{"automl.search_space": [
        {"parameter": "train.optim.lr", "valid_min": 0.01, "valid_max": 0.001}]}), r"train\.optim\.lr.*valid_min"),
    ("KPI target above 100%", _config(**{"kpi.target_far_pct": 150}), r"target_far_pct|150"),
    ("zero AutoML recommendations", _config(**{"automl.phase1.max_recommendations": 0}), r"max_recommendations|0"),
]


def _gate(workspace: Path, config: dict) -> None:
    """What Snakemake runs at parse time: the config schema, then the pre-flight's checks."""
    validate(config, schema=SCHEMA, set_default=True)
    preflight.check_inputs(run_settings.resolve(config, REPO))


@pytest.mark.parametrize("case,break_it,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_clear_message(case, break_it, expected, tmp_path, tiny_workspace):
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    config = tiny_config(workspace, tmp_path / "run")
    _gate(workspace, yaml.safe_load(yaml.safe_dump(config)))  # the unbroken copy passes
    break_it(workspace, config)
    # Rows are numbered as the messages number them: the first data row is row 1.
    with pytest.raises((InputError, WorkflowError)) as refused:
        _gate(workspace, config)
    message = str(refused.value)
    assert re.search(expected, message, re.IGNORECASE | re.DOTALL), message
    assert "Traceback" not in message
    assert not [p for p in (tmp_path / "run").rglob("*")], "nothing may be written before the gate passes"


def test_pool_rows_repeating_kpi_rows_are_excluded_and_reported(tmp_path, tiny_workspace):
    """Contract: pool/KPI overlap is not fatal; mining skips those rows and the pre-flight counts them."""
    workspace = tmp_path / "workspace"
    shutil.copytree(tiny_workspace, workspace)
    config = tiny_config(workspace, tmp_path / "run")
    before = inputs.check_workspace(run_settings.resolve(config, REPO)).pool_overlaps["kpi"]
    _leak(KPI, POOL)(workspace, config)
    _leak(KPI, POOL, row=1)(workspace, config)
    assert inputs.check_workspace(run_settings.resolve(config, REPO)).pool_overlaps["kpi"] == before + 2


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
