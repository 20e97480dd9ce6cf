"""Data integrity beyond the pre-flight (issue 16): file modes on a shared run directory, the
GPU-slot lock folder shared by several users, TAO's output in the rule log, TAO 7.0.0-EA files
(spec template, state layout) and the iteration status of a finished run."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from aoideft import fsutil
from aoideft.errors import InputError
from aoideft.tao import runtime
from aoideft.workflow import gpu_slots

DATA = Path(__file__).resolve().parent / "data"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test (and restore it)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def use(value: int) -> None:
        os.umask(value)

    yield use
    os.umask(saved)


# ---- written files follow the umask ----------------------------------------------------------
@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    import pandas as pd

    fsutil.write_json(tmp_path / "best_model.json", {"far_pct": 1.0})
    fsutil.write_csv(tmp_path / "rows.csv", pd.DataFrame({"object_name": ["007"]}))
    fsutil.write_bytes(tmp_path / "cache" / "entry", b"x", durable=False)
    for name in ("best_model.json", "rows.csv", "cache/entry"):
        assert _mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.json", "cache", "rows.csv"], "no temp files left"


def test_a_tiny_run_leaves_files_colleagues_can_read(tiny_run):
    """Every file of the end-to-end tiny run has the group/other bits the umask allows (not 0600)."""
    run, _ = tiny_run
    allowed = 0o666 & ~_current_umask()
    files = [p for p in run.rglob("*") if p.is_file() and not p.is_symlink() and ".snakemake" not in p.parts]
    wrong = [str(p.relative_to(run)) for p in files if _mode(p) & 0o066 != allowed & 0o066]
    assert len(files) > 100 and not wrong, wrong[:10]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- the GPU-slot lock folder is shared by every user --------------------------------------------
def test_lock_folder_and_files_are_shared_whatever_the_umask(tmp_path, umask, monkeypatch):
    umask(0o077)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    lock_dir = tmp_path / "aoideft-gpu-slots" / "slurm-job-7"
    slot = gpu_slots.acquire(lock_dir, wait_seconds=1)
    try:
        assert slot.device == "0"
        assert _mode(lock_dir) == _mode(lock_dir.parent) == 0o1777
        assert _mode(lock_dir / "gpu0.lock") == 0o666
    finally:
        slot.release()


UNPRIVILEGED = ["setpriv", "--inh-caps=-dac_override,-dac_read_search,-fowner",
                "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def _unprivileged(command: list[str]) -> list[str]:
    """Run as root without the capabilities that ignore file modes: what another user's job sees of
    files root did not make readable for it (root owns nothing here, see the chown below)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop the file-mode capabilities")
    return [*UNPRIVILEGED, *command]


ACQUIRE = """
import sys
from pathlib import Path
from aoideft.errors import InputError
from aoideft.workflow import gpu_slots
try:
    slot = gpu_slots.acquire(Path(sys.argv[1]), wait_seconds=1)
except InputError as error:
    print("REFUSED", error)
else:
    print("SLOT", slot.device)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="making files of another user needs root (chown)")
def test_another_users_lock_files_still_give_a_slot_or_one_clear_line(tmp_path):
    """A folder and lock file left by another user's job (the layout before this fix: 0755 and
    0644): the lock file still takes a flock (read-only), and an unwritable folder is one line."""
    tmp_path.chmod(0o755)
    shared = tmp_path / "slots"
    shared.mkdir(mode=0o755)
    (shared / "gpu0.lock").touch(mode=0o644)
    for path in (shared, shared / "gpu0.lock"):
        os.chown(path, 65534, 65534)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    env.pop("SLURM_JOB_ID", None)

    def acquire(lock_dir: Path) -> str:
        proc = subprocess.run(_unprivileged([sys.executable, "-c", ACQUIRE, str(lock_dir)]), env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert acquire(shared) == "SLOT 0"
    env["CUDA_VISIBLE_DEVICES"] = "1"  # gpu1.lock is new: the folder must take it, and does not
    refused = acquire(shared)
    assert refused.startswith("REFUSED GPU-slot lock") and str(shared) in refused and "chmod 1777" in refused
    assert "AOIDEFT_GPU_LOCK_DIR" in refused and "\n" not in refused


# ---- TAO's own output reaches the rule log -----------------------------------------------------
def test_tao_output_and_traceback_go_to_the_rule_log(tmp_path, monkeypatch):
    log = tmp_path / "train.log"
    # What the fake prints is not spelt out in its command line (which the log shows too).
    fake = ("import sys; print('epoch', 0, 'loss', 0.7); "
            "print('RuntimeError:', 'CUDA', 'out of memory', file=sys.stderr); sys.exit(3)")
    with open(log, "a", buffering=1, encoding="utf-8") as stream:
        monkeypatch.setattr(sys, "stdout", stream)  # what rulekit.run_rule does in a rule script
        monkeypatch.setattr(sys, "stderr", stream)
        code = runtime.run_command([sys.executable, "-c", fake], tmp_path)
        monkeypatch.undo()
    text = log.read_text()
    assert code == 3
    assert "epoch 0 loss 0.7" in text and "RuntimeError: CUDA out of memory" in text, text


# ---- TAO 7.0.0-EA state: read, migrated on resume -------------------------------------------------
EA_STATE, EA_LOG = DATA / "tao_7_0_0_ea_deft_state.json", DATA / "tao_7_0_0_ea_loop_log.jsonl"


@pytest.fixture
def ea_run(tmp_path) -> tuple[Path, Path]:
    paths = tmp_path / "deft_state.json", tmp_path / "loop_log.jsonl"
    shutil.copyfile(EA_STATE, paths[0])
    shutil.copyfile(EA_LOG, paths[1])
    return paths


def test_an_ea_state_is_read_with_its_log_as_events(ea_run):
    from aoideft import state

    ea = json.loads(EA_STATE.read_text())
    current = state.read_state(ea_run[0])
    assert current["version"] == 4 and current["migrated_from"]["version"] == 2
    assert current["iterations"] == ea["iterations"] and current["config"] == ea["config"]
    assert current["kpi_target"] == ea["kpi_target"] and current["metric_contract"]["target"] == 5.0
    # One event per (iteration, stage): the retried data_mining keeps its last (ok) entry.
    assert [(e["seq"], e["iter"], e["stage"], e["status"]) for e in current["events"]] == [
        (1, "baseline", "train", "ok"), (2, "baseline", "evaluate", "ok"), (3, "baseline", "rca", "ok"),
        (4, "iter1", "routing", "ok"), (5, "iter1", "anomalygen", "ok"), (7, "iter1", "data_mining", "ok")]
    assert "anomalygen" in current["_completed_step_values"]
    assert ea_run[0].read_bytes() == EA_STATE.read_bytes(), "reading does not write"
    label, entry = state.pick_best(current)
    assert (label, entry["far_pct"]) == ("baseline", 41.2)


def test_resuming_an_ea_run_migrates_it_and_keeps_the_ea_files(ea_run):
    from aoideft import state

    state.commit_stage(*ea_run, iteration="iter1", stage="data_merge", summary="merged", duration_sec=3.0,
                       fields={"training_rows": 120})
    written = json.loads(ea_run[0].read_text())
    assert written["version"] == 4 and written["events"][-1]["seq"] == 8
    assert written["iterations"]["iter1"]["stage_completed"] == "data_merge"
    assert state.read_log(ea_run[1]) == written["events"]
    assert (ea_run[0].parent / "deft_state.ea.json").read_bytes() == EA_STATE.read_bytes()
    assert (ea_run[0].parent / "loop_log.ea.jsonl").read_bytes() == EA_LOG.read_bytes(), "superseded entries kept"
    state.commit_stage(*ea_run, iteration="iter1", stage="train", summary="trained", duration_sec=3.0)
    assert (ea_run[0].parent / "deft_state.ea.json").read_bytes() == EA_STATE.read_bytes(), "backed up once"


def test_init_state_on_an_ea_state_compares_the_data_not_ea_wording(ea_run):
    from aoideft import state

    ea = json.loads(EA_STATE.read_text())
    ours = {key: ea["config"][key] for key in ("specs_file", "training_csv", "validation_csv", "kpi_test_csv",
                                                "images_dir")}
    same = dict(results_dir=ea["results_dir"], kpi_target_far_pct=5.0, max_iterations=3)
    resumed = state.init_state(*ea_run, config={**ours, "backend": "embedded"}, **same)
    assert resumed["iterations"] == ea["iterations"]
    with pytest.raises(InputError, match=r"belongs to another run config \(differs in config\.training_csv\)"):
        state.init_state(*ea_run, config={**ours, "training_csv": "/elsewhere.csv"}, **same)


def test_an_ea_log_line_without_a_stage_is_named(ea_run):
    from aoideft import state

    ea_run[1].write_text(EA_LOG.read_text() + '{"seq": 8, "summary": "no stage"}\n')
    with pytest.raises(InputError, match=r"loop_log\.jsonl line 8: not a stage log entry"):
        state.read_state(ea_run[0])


# ---- an iteration is complete when the stage that ends it commits --------------------------------
def test_the_stage_that_ends_an_iteration_marks_it_complete(tmp_path):
    from aoideft import state

    paths = tmp_path / "deft_state.json", tmp_path / "loop_log.jsonl"
    config = {key: f"/ws/{key}" for key in ("specs_file", "training_csv", "validation_csv", "kpi_test_csv",
                                            "images_dir")}
    state.init_state(*paths, config=config, results_dir=tmp_path, kpi_target_far_pct=5.0, max_iterations=2)

    def commit(iteration, stage, **kwargs):
        return state.commit_stage(*paths, iteration=iteration, stage=stage, summary="-", duration_sec=0, **kwargs)

    assert commit("baseline", "evaluate")["iterations"]["baseline"]["status"] == "in_progress"
    assert commit("baseline", "loop_stop")["iterations"]["baseline"]["status"] == "complete"
    assert commit("iter1", "loop_stop", status="error")["iterations"]["iter1"]["status"] == "failed"
    assert commit("iter1", "loop_stop")["iterations"]["iter1"]["status"] == "complete"
    assert commit("final_automl", "train", fields={"status": "skipped"})["iterations"]["final_automl"]["status"] \
        == "skipped"
    assert commit("final_automl", "train")["iterations"]["final_automl"]["status"] == "complete"


def test_a_finished_tiny_run_has_every_iteration_complete(tiny_run):
    from aoideft import state

    run, _ = tiny_run
    current = state.read_state(run / "deft_state.json")
    assert current["status"] == "complete"
    assert {label: entry["status"] for label, entry in current["iterations"].items()} == {
        "baseline": "complete", "iter1": "complete", "iter2": "complete", "final_automl": "complete"}


# ---- pairs by content: the pool's own repeats and conflicts --------------------------------------
def test_pool_repeats_and_conflicts_within_the_pool():
    """pair_content on frames with given pair keys: a pool pair repeated with one label keeps its first
    row; one repeated with two labels loses every row; pool copies of split rows are counted per split."""
    import pandas as pd

    from aoideft import pair_content

    def frame(*rows):
        return pd.DataFrame([{"input_path": d, "golden_path": d, "label": label, "object_name": name}
                             for d, name, label in rows])

    frames = {"train": frame(("t", "000019", "PASS")), "validation": frame(("v", "a", "PASS")),
              "kpi": frame(("k", "b", "BRIDGE")),
              "pool": frame(("p", "1", "PASS"), ("p", "2", "PASS"), ("p", "3", "PASS"), ("p", "4", "MISSING"),
                            ("p", "5", "PASS"), ("k", "b", "BRIDGE"))}
    keys = {"train": ["T"], "validation": ["V"], "kpi": ["K"], "pool": ["A", "A", "B", "B", "T", "Z"]}
    content = pair_content.check_content(frames, keys, {name: f"{name} CSV" for name in frames})
    assert content.overlaps == {"train": 1, "validation": 0, "kpi": 1} and content.repeats == 1
    assert content.excluded == ["k/b", "p/2", "p/3", "p/4", "p/5"]
    assert content.notes == ["pool rows 3, 4 hold one image pair (p/3, ...) with conflicting labels MISSING vs PASS: "
                             "all excluded from mining"]
    with pytest.raises(InputError, match=r"^hard stop: validation and kpi must not overlap, but 1 image pair\(s\) .*"
                                         r"validation CSV row 1 \(v/a, PASS\) = kpi CSV row 1 \(k/b, BRIDGE\) "
                                         r"\(conflicting labels\)"):
        pair_content.check_content(frames, {**keys, "kpi": ["V"]}, {name: f"{name} CSV" for name in frames})
