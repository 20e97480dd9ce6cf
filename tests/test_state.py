"""Tests for aoideft.state: TAO-compatible deft_state.json and loop_log.jsonl."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from aoideft import state
from aoideft.errors import InputError

TEMPLATE = Path(__file__).parent / "data" / "tao_deft_state_template.json"
CONFIG = {
    "specs_file": "/ws/specs/baseline_spec.yaml",
    "training_csv": "/ws/train/base/training_set.csv",
    "validation_csv": "/ws/train/base/validation_set.csv",
    "kpi_test_csv": "/ws/kpi/testing_set.csv",
    "images_dir": "/ws/images",
    "mining_pool_csv": "/ws/augmentation/mining_pool/mining_pool.csv",
    "mining_images_root": "/ws/images",
    "batch_size": 32,
    "num_epochs": 8,
    "mining_filter": {"top_k_per_target": 5, "metric": "cosine", "min_similarity": 0.9,
                      "history_aware": {"enabled": True, "identity": "filepath", "history_file": "mining.json"}},
}


@pytest.fixture
def run(tmp_path) -> tuple[Path, Path]:
    paths = tmp_path / "deft_state.json", tmp_path / "loop_log.jsonl"
    state.init_state(*paths, config=CONFIG, results_dir=tmp_path, kpi_target_far_pct=5.0, max_iterations=3,
                     started_at="2026-01-01T00:00:00+00:00")
    return paths


def commit(paths, iteration, stage, summary="done", **kwargs):
    return state.commit_stage(*paths, iteration=iteration, stage=stage, summary=summary, duration_sec=1.5, **kwargs)


def test_init_writes_a_tao_v4_state_and_an_empty_log(run, tmp_path):
    current = state.read_state(run[0])
    assert current["version"] == 4 and current["status"] == "in_progress"
    assert current["kpi_target"] == "FAR@100% recall <= 5%"
    assert current["metric_contract"]["operator"] == "<=" and current["metric_contract"]["target"] == 5.0
    assert current["metric_contract"]["evaluator"]["path"] == "aoideft.kpi"
    assert current["execution_policy"]["network_mode"] == "offline"
    assert current["config"] == CONFIG and current["results_dir"] == str(tmp_path)
    assert (current["iterations"], current["events"], current["current_iteration"]) == ({}, [], 0)
    assert run[1].read_text() == ""


def test_state_covers_the_tao_template_keys(run):
    template = json.loads(TEMPLATE.read_text())
    current = state.read_state(run[0])
    assert set(template) <= set(current)
    assert set(template["metric_contract"]) <= set(current["metric_contract"])
    assert set(template["execution_policy"]) <= set(current["execution_policy"])
    assert set(template["_status_values"]) <= set(current["_status_values"])
    assert set(template["events"][0]) - {"context_tokens"} <= set(commit(run, "baseline", "train")["events"][0])


def test_init_is_a_no_op_on_resume_and_refuses_another_config(run, tmp_path):
    commit(run, "baseline", "train")
    before = run[0].read_bytes()
    again = state.init_state(*run, config=dict(CONFIG), results_dir=tmp_path, kpi_target_far_pct=5.0,
                             max_iterations=3)
    assert run[0].read_bytes() == before and again["events"][0]["stage"] == "train"
    with pytest.raises(InputError, match=r"deft_state\.json belongs to another run config \(differs in config\)"):
        state.init_state(*run, config={**CONFIG, "batch_size": 16}, results_dir=tmp_path, kpi_target_far_pct=5.0,
                         max_iterations=3)
    with pytest.raises(InputError, match="differs in max_iterations, kpi_target"):
        state.init_state(*run, config=CONFIG, results_dir=tmp_path, kpi_target_far_pct=2.0, max_iterations=4)


def test_preseed_baseline(run):
    current = state.preseed_baseline(*run, best_ckpt_path="baseline/train/model_epoch_007_step_00070.pth",
                                     train_metric={"val_far_pct": 3.2}, spec_path="specs/baseline_spec_automl.yaml",
                                     rec_id=2)
    baseline = current["iterations"]["baseline"]
    assert baseline == {"status": "in_progress", "stage_completed": "train",
                        "best_ckpt_path": "baseline/train/model_epoch_007_step_00070.pth",
                        "train_metric": {"val_far_pct": 3.2}, "source": "automl_phase1",
                        "spec_path": "specs/baseline_spec_automl.yaml", "automl_rec_id": 2}
    (entry,) = state.read_log(run[1])
    assert entry["summary"] == "baseline train skipped - reused Phase 1 AutoML winning checkpoint"
    assert (entry["seq"], entry["iter"], entry["stage"], entry["status"]) == (1, "baseline", "train", "ok")
    assert set(entry) == {"seq", "ts", "iter", "stage", "status", "summary", "duration_sec"}


def test_commit_updates_the_iteration_and_top_level(run):
    current = commit(run, "iter1", "evaluate", fields={"far_pct": 4.2, "threshold": 0.31, "best_ckpt_kind": "latest"},
                     state_updates={"current_iteration": 1})
    assert current["iterations"]["iter1"] == {"status": "in_progress", "stage_completed": "evaluate",
                                              "far_pct": 4.2, "threshold": 0.31, "best_ckpt_kind": "latest"}
    assert current["current_iteration"] == 1 and state.read_state(run[0]) == current


def test_recommitting_a_stage_replaces_its_entry_with_the_next_seq(run):
    commit(run, "baseline", "train")
    commit(run, "baseline", "inference", "first try")
    commit(run, "baseline", "evaluate")
    commit(run, "baseline", "inference", "rerun after a crash")
    log = state.read_log(run[1])
    assert [(e["seq"], e["stage"]) for e in log] == [(1, "train"), (3, "evaluate"), (4, "inference")]
    assert log[-1]["summary"] == "rerun after a crash"
    assert state.read_state(run[0])["events"] == log
    commit(run, "baseline", "inference", "and again")           # replacing the newest entry still moves on
    assert [e["seq"] for e in state.read_log(run[1])] == [1, 3, 5]


def test_an_error_marks_the_iteration_failed_until_a_rerun_succeeds(run):
    current = commit(run, "iter2", "validate", "hard stop: leakage", status="error",
                     state_updates={"status": "hard_stopped"})
    assert current["iterations"]["iter2"] == {"status": "failed", "last_error": "hard stop: leakage"}
    assert current["status"] == "hard_stopped" and state.read_log(run[1])[0]["status"] == "error"
    fixed = commit(run, "iter2", "validate", "dataset valid")
    assert fixed["iterations"]["iter2"] == {"status": "in_progress", "stage_completed": "validate"}
    assert len(state.read_log(run[1])) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"iteration": "iter0", "stage": "train"}, "iteration must be"),
    ({"iteration": "iter1", "stage": "trian"}, "stage must be one of"),
    ({"iteration": "iter1", "stage": "train", "status": "done"}, "log status"),
    ({"iteration": "iter1", "stage": "train", "fields": {"status": "great"}}, "iteration status"),
    ({"iteration": "iter1", "stage": "train", "fields": {"best_ckpt_kind": "best"}}, "best_ckpt_kind"),
    ({"iteration": "iter1", "stage": "train", "state_updates": {"iterations": {}}}, "may not set"),
    ({"iteration": "iter1", "stage": "train", "state_updates": {"current_iteration": -1}}, "current_iteration"),
])
def test_malformed_commits_are_refused_before_writing(run, kwargs, message):
    before = run[0].read_bytes()
    with pytest.raises(ValueError, match=message):
        state.commit_stage(*run, summary="x", duration_sec=0.0, **kwargs)
    assert run[0].read_bytes() == before


def _commit_many(paths: tuple[Path, Path], worker: int) -> None:
    stages = state.STAGES
    for i in range(20):
        state.commit_stage(*paths, iteration=f"iter{worker + 1}", stage=stages[i % len(stages)],
                           summary=f"w{worker} c{i}", duration_sec=0.0, fields={f"k{i}": i})


def test_concurrent_commits_lose_nothing(run):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_commit_many, args=(run, w)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    current = state.read_state(run[0])
    for w in range(4):
        entry = current["iterations"][f"iter{w + 1}"]
        assert {k: entry[k] for k in entry if k.startswith("k")} == {f"k{i}": i for i in range(20)}
    log = state.read_log(run[1])
    assert len(log) == 4 * len(state.STAGES)                    # one entry per (iteration, stage)
    assert sorted(e["seq"] for e in log) == [e["seq"] for e in log] and log[-1]["seq"] == 80
    assert current["events"] == log


def test_writes_leave_no_temp_files(run):
    for stage in ("inference", "evaluate", "rca"):
        commit(run, "baseline", stage)
    assert sorted(p.name for p in run[0].parent.iterdir()) == ["deft_state.json", "deft_state.json.lock",
                                                               "loop_log.jsonl"]


def test_corrupt_files_are_input_errors_naming_them(run):
    run[0].write_text('{"version": 4, "iterat')
    with pytest.raises(InputError, match=rf"{run[0]}: corrupt DEFT state file"):
        state.read_state(run[0])
    with pytest.raises(InputError, match="corrupt DEFT state file"):
        commit(run, "baseline", "train")
    run[1].write_text('{"seq": 1}\nnot json\n')
    with pytest.raises(InputError, match=rf"{run[1]} line 2"):
        state.read_log(run[1])
    with pytest.raises(InputError, match="no DEFT state file"):
        state.read_state(run[0].with_name("missing.json"))


def test_pick_best_takes_the_lowest_far_and_the_earlier_phase_on_ties(run):
    commit(run, "baseline", "evaluate", fields={"far_pct": 9.0, "best_ckpt_path": "b.pth"})
    commit(run, "iter1", "evaluate", fields={"far_pct": 4.0, "best_ckpt_path": "i1.pth"})
    commit(run, "iter2", "train")                                            # no far_pct yet
    commit(run, "iter10", "evaluate", fields={"far_pct": 4.0, "best_ckpt_path": "i10.pth"})
    commit(run, "final_automl", "evaluate", fields={"far_pct": 4.0, "best_ckpt_path": "f.pth"})
    assert state.pick_best(state.read_state(run[0]))[0] == "iter1"
    current = commit(run, "final_automl", "evaluate", fields={"far_pct": 3.9})
    assert state.pick_best(current) == ("final_automl", current["iterations"]["final_automl"])
    with pytest.raises(InputError, match="no iteration .* has a far_pct"):
        state.pick_best({"iterations": {"baseline": {"status": "in_progress"}}})


def test_best_model_document(run):
    current = commit(run, "iter1", "evaluate", fields={"far_pct": 4.0, "threshold": 0.25, "best_ckpt_path": "i1.pth",
                                                       "best_ckpt_kind": "best_val"})
    doc = state.best_model_document(current, "iter1", "iter1/train/spec.yaml")
    assert doc == {"schema_version": 1, "iteration": "iter1", "checkpoint": "i1.pth", "best_ckpt_kind": "best_val",
                   "threshold": 0.25, "far_pct": 4.0, "kpi_target": "FAR@100% recall <= 5%", "kpi_met": True,
                   "training_spec": "iter1/train/spec.yaml"}
    with pytest.raises(InputError, match="iteration baseline has no evaluated checkpoint"):
        state.best_model_document(current, "baseline", "x.yaml")


def test_iteration_label():
    assert [state.iteration_label(n) for n in (0, 1, 12)] == ["baseline", "iter1", "iter12"]
    with pytest.raises(ValueError):
        state.iteration_label(-1)


def test_show_cli(run, capsys):
    commit(run, "baseline", "evaluate", fields={"far_pct": 6.5, "best_ckpt_path": "b.pth"})
    assert state.main([str(run[0])]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "best: baseline far_pct 6.500%" in out


def test_prune_iterations_drops_entries_and_events_of_removed_iterations(tmp_path):
    state_path, log_path = tmp_path / "deft_state.json", tmp_path / "loop_log.jsonl"
    state.init_state(state_path, log_path, config=CONFIG, results_dir=tmp_path, kpi_target_far_pct=5.0,
                     max_iterations=3)
    for label in ("baseline", "iter1", "iter2"):
        state.commit_stage(state_path, log_path, iteration=label, stage="evaluate", summary="x",
                           duration_sec=0.0, fields={"far_pct": 1.0})
    pruned = state.prune_iterations(state_path, log_path, keep=["baseline", "iter1"])
    assert set(pruned["iterations"]) == {"baseline", "iter1"}
    assert {e["iter"] for e in state.read_log(log_path)} == {"baseline", "iter1"}
