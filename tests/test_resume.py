"""Outputs a killed job left behind are found from Snakemake's incomplete marks and removed, so the
job reruns; never while a lock says a run may be live."""

from __future__ import annotations

from base64 import urlsafe_b64encode
from pathlib import Path

from aoideft.workflow.resume import clear_incomplete_outputs, marked_outputs


def _mark(run_dir: Path, output: str, segment: int = 0) -> None:
    """A mark as Snakemake writes it; `segment` > 0 splits the name into "@" segments (long paths)."""
    encoded = urlsafe_b64encode(output.encode()).decode()
    parts = [encoded] if not segment else [encoded[i:i + segment] for i in range(0, len(encoded), segment)]
    parts = ["@" + p for p in parts[:-1]] + [parts[-1]]
    path = run_dir / ".snakemake" / "incomplete" / Path(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "iter2" / "dataset").mkdir(parents=True)
    (run / "iter2" / "dataset" / "train_combined_iter2.csv").write_text("a\n1\n")
    (run / "iter2" / "embeddings").mkdir()
    (run / "iter2" / "embeddings" / "kpi.npy").write_bytes(b"x")
    (run / "iter1" / "dataset").mkdir(parents=True)
    (run / "iter1" / "dataset" / "train_combined_iter1.csv").write_text("a\n1\n")  # finished: no mark
    _mark(run, "iter2/dataset/train_combined_iter2.csv")
    _mark(run, "iter2/embeddings", segment=7)
    _mark(run, "iter2/dataset/never_written.csv")
    return run


def test_every_mark_is_decoded_and_the_outputs_that_exist_are_removed(tmp_path):
    run = _run_dir(tmp_path)
    expected = [run / "iter2" / "dataset" / "train_combined_iter2.csv", run / "iter2" / "embeddings"]
    # The crash harness needs the unwritten one too: its job's side files may be rewritten.
    assert sorted(marked_outputs(run)) == sorted([*expected, run / "iter2" / "dataset" / "never_written.csv"])
    assert sorted(clear_incomplete_outputs(run)) == sorted(expected)
    assert not any(p.exists() for p in expected)
    assert (run / "iter1" / "dataset" / "train_combined_iter1.csv").exists()


def test_nothing_is_removed_while_a_lock_exists(tmp_path):
    run = _run_dir(tmp_path)
    (run / ".snakemake" / "locks").mkdir(parents=True)
    (run / ".snakemake" / "locks" / "0.output.lock").write_text("")
    assert clear_incomplete_outputs(run) == []
    assert (run / "iter2" / "dataset" / "train_combined_iter2.csv").exists()


def test_a_run_dir_without_marks_has_nothing_to_clear(tmp_path):
    assert clear_incomplete_outputs(tmp_path) == []


def test_a_log_one_commit_behind_the_state_is_rewritten_from_it(tmp_path):
    from aoideft import state
    from aoideft.workflow import resume

    run = tmp_path / "run"
    run.mkdir()
    state.init_state(run / "deft_state.json", run / "loop_log.jsonl", config={"specs_file": "s", "training_csv": "t",
                     "validation_csv": "v", "kpi_test_csv": "k", "images_dir": "i"}, results_dir=str(run),
                     kpi_target_far_pct=5.0, max_iterations=2)
    state.commit_stage(run / "deft_state.json", run / "loop_log.jsonl", iteration="baseline", stage="inference",
                       summary="scored", duration_sec=1.0)
    lines = (run / "loop_log.jsonl").read_text().splitlines()
    (run / "loop_log.jsonl").write_text("\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else ""))  # the kill
    assert resume.repair_state_log(run)
    assert state.read_log(run / "loop_log.jsonl") == state.read_state(run / "deft_state.json")["events"]
    assert not resume.repair_state_log(run)  # nothing to do the second time
