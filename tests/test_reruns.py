"""Reruns follow inputs: what Snakemake plans after the workspace spec, a CSV row or a config value
changes, on a tiny run up to the baseline's decision (Phase 1, the handoff, the baseline's
inference, evaluation, RCA and decision); the declarations behind it (aoideft.workflow.rerun); and
the commands that only show or check the workflow, which need no workspace."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from aoideft.workflow import preflight, rerun, settings as run_settings
from conftest import REPO, run_snakemake, tiny_config

TARGETS = ("baseline/decision.json", "preflight/summary.md")
PHASE1 = {("automl_suggest", "phase=phase1_automl, r=0"), ("automl_train", "k=0, phase=phase1_automl"),
          ("automl_train", "k=1, phase=phase1_automl"), ("automl_select", "phase=phase1_automl"),
          ("preseed_deft", "")}
BASELINE = {("deft_infer", "loopit=baseline"), ("deft_evaluate", "it=baseline"), ("deft_rca", "loopit=baseline"),
            ("deft_decide", "loopit=baseline")}
INTAKE = {("workspace_ready", ""), ("preflight", "")}
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)", re.MULTILINE)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_workspace) -> Path:
    """A run of its own on a copy of the tiny workspace, which the tests edit."""
    base = tmp_path_factory.mktemp("reruns")
    shutil.copytree(tiny_workspace, base / "workspace", symlinks=True)
    run_snakemake(tiny_config(base / "workspace", base / "run"), base / "config.yaml", *TARGETS)
    return base


def plan(base: Path, **overrides) -> set[tuple[str, str]]:
    """The (rule, wildcards) of every job a dry run would run."""
    config = tiny_config(base / "workspace", base / "run", **overrides)
    proc = run_snakemake(config, base / "config.yaml", *TARGETS, extra=("-n",))
    jobs = set()
    for name, body in JOB.findall(proc.stdout + proc.stderr):
        wildcards = re.search(r"^    wildcards: (.*)$", body, re.MULTILINE)
        jobs.add((name, ", ".join(sorted(wildcards.group(1).split(", "))) if wildcards else ""))
    return jobs


def edit(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} in {path}"
    path.write_text(text.replace(old, new))
    return text


def test_a_finished_run_has_nothing_to_do_and_a_touch_changes_nothing(run):
    assert plan(run) == set()
    for path in (run / "workspace").rglob("*.csv"):
        path.touch()
    (run / "workspace" / "specs" / "baseline_spec.yaml").touch()
    assert plan(run) == set()  # Snakemake compares the recorded checksums, not only the times


def test_the_spec_learning_rate_reruns_phase1_and_everything_after_it(run):
    spec = run / "workspace" / "specs" / "baseline_spec.yaml"
    original = edit(spec, "lr: 0.001\n", "lr: 0.002\n")
    try:
        assert plan(run) == INTAKE | PHASE1 | BASELINE
    finally:
        spec.write_text(original)
    assert plan(run) == set()  # the same content again: nothing to do


def test_a_config_value_reruns_only_the_rules_that_read_it(run):
    # The stop rule's budget: the baseline's decision (and the pre-flight summary, which states it).
    assert plan(run, **{"deft.max_iterations": 3}) == {("deft_decide", "loopit=baseline"), ("preflight", "")}
    # Where and how fast jobs run changes no result.
    assert plan(run, **{"resources.gpu.threads": 2, "embedded.device": "cpu"}) == {("preflight", "")}
    # A Phase 3 setting reruns no job of Phase 1 (nor, here, anything else up to the baseline's decision).
    assert plan(run, **{"automl.phase3.num_epochs": 2}) == {("preflight", "")}
    # A model setting: every model job and what follows it; the bookkeeping of Phase 1 is not redone
    # for its own sake, only as the trials' dependant.
    planned = plan(run, **{"embedded.ema_epochs": 0.5})
    assert {("automl_train", "k=0, phase=phase1_automl"), ("deft_infer", "loopit=baseline")} <= planned
    assert ("automl_suggest", "phase=phase1_automl, r=0") not in planned


def test_the_report_has_the_workflow_description_and_each_results_caption(run):
    """`snakemake --report` of the run so far: report/workflow.rst rendered with the run's config, and the
    pre-flight summary with its caption."""
    config = tiny_config(run / "workspace", run / "run")
    run_snakemake(config, run / "config.yaml", *TARGETS, extra=("--report", str(run / "report.html")))
    html = (run / "report.html").read_text()
    assert "Optuna (bayesian sampler) proposes\\n2 trainings" in html  # automl.phase1.max_recommendations
    assert f"{run / 'workspace'}</span></tt>." in html  # the config's workspace, in the description
    assert "The pre-flight's nine-section summary" in html and '"preflight/summary.md"' in html


def test_a_kpi_row_reruns_the_loop_from_the_baseline_inference_and_not_phase1(run):
    kpi = run / "workspace" / "kpi" / "testing_set.csv"
    row = kpi.read_text().splitlines()[1]
    edit(kpi, row + "\n", row.rsplit(",", 1)[0] + ",99\n")  # one metadata cell (number_of_pins)
    assert plan(run) == INTAKE | BASELINE

    phase1 = {path: path.stat().st_mtime_ns for path in (run / "run" / "phase1_automl").rglob("*") if path.is_file()}
    scored = run / "run" / "baseline" / "inference" / "inference_summary.json"
    before = scored.stat().st_mtime_ns
    proc = run_snakemake(tiny_config(run / "workspace", run / "run"), run / "config.yaml", *TARGETS)
    assert scored.stat().st_mtime_ns > before, proc.stderr[-2000:]
    assert {path: path.stat().st_mtime_ns for path in phase1} == phase1  # Phase 1 untouched
    assert plan(run) == set()


def _settings(tmp_path: Path, **overrides) -> run_settings.RunSettings:
    from snakemake.utils import validate

    config = tiny_config(tmp_path / "workspace", tmp_path / "run", **overrides)
    validate(config, str(REPO / "config" / "schemas" / "config.schema.yaml"), set_default=True)
    return run_settings.resolve(config, REPO)


def test_config_values_are_looked_up_by_dotted_key_and_a_wrong_key_fails(tmp_path):
    config = _settings(tmp_path).config
    values = rerun.config_values(config, ["deft.budget", "kpi.target_far_pct"])
    assert values == {"deft.budget": config["deft"]["budget"], "kpi.target_far_pct": 0.0}
    with pytest.raises(KeyError, match="deft.budgett"):
        rerun.config_values(config, ["deft.budgett"])


def test_model_keys_leave_out_what_only_places_a_job(tmp_path):
    keys = rerun.model_keys(_settings(tmp_path).config)
    assert keys[0] == "backend" and "embedded.base_width" in keys and "embedded.ema_epochs" in keys
    assert "embedded.device" not in keys and "embedded.compile" not in keys
    tao = rerun.model_keys(_settings(tmp_path, backend="tao").config)
    assert "tao.image" in tao and "tao.gpu_memory_gb" not in tao and not any(k.startswith("embedded.") for k in tao)


def test_workspace_files_name_the_manifest_only_where_there_is_one(tmp_path, tiny_workspace):
    settings = _settings(tmp_path)
    assert rerun.demo_pending(settings)  # nothing at the workspace path yet, demo.generate true
    shutil.copytree(tiny_workspace, tmp_path / "workspace", symlinks=True)
    settings = _settings(tmp_path)
    assert not rerun.demo_pending(settings)
    files = rerun.workspace_files(settings)
    assert files[rerun.SPEC] == settings.spec_path and files[rerun.KPI] == settings.kpi_csv
    assert (rerun.SYNTHETIC in files) == (settings.synthetic_dir / rerun.SYNTHETIC_MANIFEST).is_file()
    (settings.synthetic_dir / rerun.SYNTHETIC_MANIFEST).unlink(missing_ok=True)
    assert rerun.SYNTHETIC not in rerun.workspace_files(settings)


@pytest.mark.parametrize(("argv", "flag"), [
    (["snakemake", "--lint"], "--lint"), (["snakemake", "--dag=dot", "all"], "--dag"),
    (["snakemake", "--report", "report.html"], "--report"), (["snakemake", "-S"], "-S"),
    (["snakemake", "--list-changes", "params"], "--list-changes"),
    (["snakemake", "-n", "--cores", "2"], None), (["snakemake", "all"], None),
])
def test_inspection_commands_are_recognised(argv, flag):
    assert preflight.inspection_command(argv) == flag


def test_lint_and_dag_need_no_workspace_and_print_no_pre_flight(tmp_path):
    """No workspace: --lint checks the workflow, --dag draws it with the demo's generation as its first job."""
    config = tiny_config(tmp_path / "absent", tmp_path / "run")
    lint = run_snakemake({**config, "demo": {"generate": False}}, tmp_path / "lint.yaml", extra=("--lint",))
    dag = run_snakemake(config, tmp_path / "dag.yaml", extra=("--dag",))
    for proc in (lint, dag):
        assert "pre-flight" not in proc.stdout + proc.stderr
    assert "good condition" in lint.stdout + lint.stderr
    assert dag.stdout.lstrip().startswith("digraph") and "demo_workspace" in dag.stdout
    assert not (tmp_path / "absent").exists()
