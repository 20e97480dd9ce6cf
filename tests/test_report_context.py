"""The report's context built from the tiny three-phase run agrees with the run's own files: the
delivered model and its threshold, the figures at that threshold, missed defects, every model, the
training set's synthetic share, the stage times, the trials; and mid-run it shows the incumbent."""

from __future__ import annotations

import copy
import shutil

import pandas as pd
import pytest
from snakemake.utils import validate

from aoideft import state
from aoideft.fsutil import read_json
from aoideft.workflow import report_context, settings as run_settings
from conftest import REPO

SCHEMA = str(REPO / "config/schemas/config.schema.yaml")
LABELS = ["baseline", "iter1", "iter2"]


def settings_of(config: dict) -> run_settings.RunSettings:
    config = copy.deepcopy(config)
    validate(config, schema=SCHEMA, set_default=True)
    return run_settings.resolve(config, REPO)


@pytest.fixture(scope="module")
def built(tiny_run):
    run, config = tiny_run
    return run, report_context.build_context(settings_of(config))


def test_the_top_is_the_delivered_model_at_its_deploy_threshold(built):
    run, context = built
    best_model = read_json(run / "best_model.json")
    delivery = context["delivery"]
    assert delivery["final"] and not context["header"]["in_progress"]
    assert delivery["label"] == best_model["iteration"] and delivery["checkpoint"] == best_model["checkpoint"]
    assert delivery["threshold"] == best_model["deploy_threshold"] and delivery["threshold_from"] == "validation, 100% recall"
    sets = {s["key"]: s for s in delivery["sets"]}
    assert list(sets) == ["validation", "targeting", "held_out", "whole"]
    assert [key for key, s in sets.items() if s["is_basis"]] == ["held_out"]
    held = best_model["held_out"]
    assert sets["held_out"]["far_pct"] == pytest.approx(held["deployable_far_pct"])
    assert sets["held_out"]["recall"] == pytest.approx(held["deployable_recall"])
    assert sets["held_out"]["far100_pct"] == held["far_pct"] and sets["held_out"]["far100_ci95"] == held["far_ci95"]["recall_100"]
    assert (sets["held_out"]["n_pass"], sets["held_out"]["n_defect"]) == (held["n_pass"], held["n_defect"])
    assert sets["validation"]["recall"] == 1.0  # where the threshold was calibrated
    low, high = sets["held_out"]["far_ci95"]
    assert low <= sets["held_out"]["far_pct"] <= high


def test_missed_defects_and_defect_types_are_what_the_deploy_threshold_lets_through(built):
    run, context = built
    best = read_json(run / context["delivery"]["label"] / "evaluate/best.json")
    listed = pd.read_csv(run / best["evaluation_dir"] / "missed_defects.csv", dtype=str, keep_default_na=False)
    deployable = listed[listed["operating_point"] == "deployable"]
    sets = {s["key"]: s for s in context["delivery"]["sets"]}
    missed = context["missed"]
    assert missed["total"] == len(deployable) == sets["whole"]["missed"] > 0
    assert [row["object_name"] for row in missed["rows"]] == deployable["object_name"].tolist()[:len(missed["rows"])]
    assert sum(row["half"] == "held-out" for row in missed["rows"]) == sets["held_out"]["missed"]
    scores = [row["score"] for row in missed["rows"]]
    assert scores == sorted(scores) and all(s <= missed["threshold"] for s in scores)
    assert all(row["pair"] for row in missed["rows"])  # golden and test pictures of every one
    assert sum(t["count"] - t["caught"] for t in context["defect_types"]) == sets["whole"]["missed"]
    assert sum(t["held_out_count"] - t["held_out_caught"] for t in context["defect_types"]
               if t["held_out_count"]) == sets["held_out"]["missed"]


def test_every_model_is_a_row_with_its_gate_and_a_paired_delta(built):
    run, context = built
    rows = {row["label"]: row for row in context["models"]}
    assert list(rows) == [*LABELS, "final_automl"]
    assert rows["baseline"]["delta"] is None and rows[context["delivery"]["label"]]["delivered"]
    baseline = read_json(run / "baseline/evaluate/best.json")["kpi_halves"]["held_out"]["far_pct"]
    for label in ("iter1", "iter2"):
        best = read_json(run / label / "evaluate/best.json")
        assert rows[label]["basis_far_pct"] == best["kpi_halves"]["held_out"]["far_pct"]
        assert rows[label]["kpi_far_pct"] == best["far_pct"]
        assert rows[label]["accepted"] == read_json(run / label / "decision.json")["accepted"]
        delta = rows[label]["delta"]
        assert delta["difference_pp"] == pytest.approx(best["kpi_halves"]["held_out"]["far_pct"] - baseline)
        assert delta["low"] <= delta["high"] and 0 <= delta["p_lower"] <= 1
    assert rows["final_automl"]["accepted"] == read_json(run / "best_model.json")["phase3_gate"]["accept"]
    effect = context["loop_effect"]
    assert effect["model"] == context["delivery"]["label"] and len(effect["validation"]) == 3  # iter1, iter2, Phase 3
    if effect["model"] == "baseline":
        assert effect["differences"] == []
    else:
        assert [d["recall"] for d in effect["differences"]] == ["100%", "99.9%", "99.5%"]


def test_training_data_shows_additions_and_the_training_sets_synthetic_share(built):
    run, context = built
    current = state.read_state(run / "deft_state.json")
    assert [item["iteration"] for item in context["training_data"]] == ["iter1", "iter2"]
    for item in context["training_data"]:
        label = item["iteration"]
        provenance = pd.read_csv(run / f"{label}/dataset/train_combined_{label}_provenance.csv", dtype=str)
        assert item["synthetic_rows"] == (provenance["source"] == "sdg").sum()  # carried synthetic rows stay sdg
        assert item["synthetic_share"] == pytest.approx(item["synthetic_rows"] / len(provenance))
        assert item["synthetic_share"] == pytest.approx(current["iterations"][label]["synthetic_share"])
        by_source = current["iterations"][label]["rows_added_by_source"]
        assert {a["source"]: a["rows"] for a in item["additions"]} == {s: sum(v.values()) for s, v in by_source.items()}
    first, second = context["training_data"]
    assert second["synthetic_rows"] == first["synthetic_rows"] + sum(
        a["rows"] for a in second["additions"] if a["source"] == "sdg")


def test_iterations_trials_and_stage_times(built):
    run, context = built
    sections = {s["label"]: s for s in context["iterations"]}
    assert list(sections) == LABELS
    targeting = read_json(run / "iter1/evaluate/best.json")["kpi_halves"]["targeting"]
    histogram = sections["iter1"]["histogram"]
    assert sum(histogram["pass"]) + histogram["unscored_pass"] == targeting["n_pass"]  # the rows its RCA read
    assert sum(histogram["defect"]) + histogram["unscored_defect"] == targeting["n_defect"]
    assert sections["baseline"]["routed_in"] == "iter1" and sections["baseline"]["modes"]
    assert [name for name, _ in sections["iter1"]["facts"]][:3] == ["routing", "mining", "SDG"]
    best_rec = read_json(run / "phase1_automl/best_rec.json")
    phase1 = next(t for t in context["trials"] if t["phase"] == "Phase 1 AutoML")
    assert [t["rec_id"] for t in phase1["trials"]] == [r["rec_id"] for r in best_rec["recommendations"]]
    assert [t["rec_id"] for t in phase1["trials"] if t["winner"]] == [best_rec["best"]["rec_id"]]
    assert phase1["winner"] == best_rec["best"]["specs"] and all(t["seconds"] > 0 for t in phase1["trials"])
    assert [t["phase"] for t in context["trials"]] == ["Phase 1 AutoML", "Phase 3 AutoML"]
    log = state.read_log(run / "loop_log.jsonl")
    times = context["stage_times"]
    assert times["totals"]["total"] == pytest.approx(sum(entry["duration_sec"] for entry in log))
    assert {"inference", "evaluate", "rca", "train"} <= set(times["stages"])
    assert [row["iteration"] for row in times["rows"]] == [*LABELS, "final_automl"]


def test_mid_run_the_report_shows_the_incumbent_so_far(tiny_run, tmp_path):
    run, config = tiny_run
    copy_dir = tmp_path / "run"
    shutil.copytree(run, copy_dir, symlinks=True)
    (copy_dir / "best_model.json").unlink()
    context = report_context.build_context(settings_of({**config, "run_dir": str(copy_dir)}))
    incumbent = read_json(copy_dir / "iter2/decision.json")["incumbent"]
    assert context["header"]["in_progress"] and not context["delivery"]["final"]
    assert context["delivery"]["label"] == incumbent and context["delivery"]["inference_spec"] is None
    best = read_json(copy_dir / incumbent / "evaluate/best.json")
    assert context["delivery"]["threshold"] == best["deployable_threshold"]


def test_the_runs_text_summary_names_the_delivered_model_with_the_reports_figures(built):
    run, context = built
    best_model = read_json(run / "best_model.json")
    summary = (run / "summary.txt").read_text()
    delivered = next(line for line in summary.splitlines() if "<- delivered" in line)
    assert delivered.split()[0] == best_model["iteration"]
    assert f"{best_model['held_out']['far_pct']:.1f}%" in delivered.split()
    assert f"threshold {best_model['deploy_threshold']:.4f} (validation, 100% recall)" in summary
    assert [line.split()[0] for line in summary.splitlines() if line.startswith(("baseline", "iter", "final_automl"))] \
        == [row["label"] for row in context["models"]]


def test_the_advice_names_a_turned_down_model_that_reads_better_on_the_held_out_half():
    def row(label, held, val, accepted=None, delivered=False):
        return {"label": label, "basis_far_pct": held, "val_far_pct": val, "accepted": accepted, "delivered": delivered}

    models = [row("baseline", 63.2, 6.9, delivered=True), row("iter1", 26.4, 13.8, accepted=False),
              row("iter2", 43.6, 21.2, accepted=False), row("final_automl", 70.0, 8.8, accepted=False)]
    advice = report_context.validation_disagrees(models, "held-out KPI half")
    assert advice.startswith("iter1 reads 26.4% on the held-out KPI half against the delivered baseline's 63.2%")
    assert "(13.8% vs 6.9% FAR@100% recall)" in advice
    # nothing to say when every turned-down model reads worse there, or when nothing was turned down
    assert report_context.validation_disagrees([models[0], row("iter1", 70.0, 9.0, accepted=False)], "x") is None
    assert report_context.validation_disagrees([models[0], row("iter1", 20.0, 5.0, accepted=True)], "x") is None
