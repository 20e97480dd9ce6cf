"""The three-phase workflow end to end on a tiny demo: DAG shape, a full run, reruns and stops."""

from __future__ import annotations

import json
import pstats
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aoideft import checkpoint, state
from conftest import REPO, run_snakemake, tiny_config

# The row budget: a share of the base training set's rows per iteration (the tiny config's), half of it
# held for hard examples (the schema's default).
HARD_SHARE = yaml.safe_load((REPO / "config" / "schemas" / "config.schema.yaml").read_text())[
    "properties"]["deft"]["properties"]["budget"]["properties"]["hard_share"]["default"]
TINY_TRAIN_ROWS = 60


def read_json(path: Path):
    return json.loads(path.read_text())


def test_dry_run_plans_phase1_and_no_baseline_training(tmp_path, tiny_workspace):
    config = tiny_config(tiny_workspace, tmp_path / "run")
    proc = run_snakemake(config, tmp_path / "config.yaml", "final_automl/best.pth", extra=("-n",))
    out = proc.stdout + proc.stderr
    assert "automl_train" in out and "automl_suggest" in out and "preseed_deft" in out
    # Phase 2 reuses Phase 1's checkpoint: no job trains the baseline.
    assert "baseline/train/model_epoch" not in out
    assert "deft_train" not in out.split("Job stats")[-1].split("Reasons")[0] or "iter1/train" not in out
    # The nine-section pre-flight is printed at parse time.
    for n in range(1, 10):
        assert f"## {n}." in out
    assert "<TBD>" in out or "checkpoint" in out.lower()
    assert not (tmp_path / "run" / "phase1_automl").exists()


def test_full_run_produces_the_deliverables(tiny_run):
    run, config = tiny_run
    for name in ("final_automl/best.pth", "deft_state.json", "loop_log.jsonl", "DEFT_Loop_Report.html",
                 "best_model.json", "best_model_inference_spec.yaml", "preflight/summary.md",
                 "phase1_automl/best_rec.json", "specs/baseline_spec_automl.yaml",
                 "iter1/dataset/train_combined_iter1.csv", "iter2/dataset/train_combined_iter2.csv",
                 "iter2/decision.json", "deft/summary.json"):
        assert (run / name).is_file(), name
    payload = checkpoint.load_checkpoint(run / "final_automl/best.pth")
    assert "state_dict" in payload
    summary = read_json(run / "deft/summary.json")
    assert summary["iterations_run"] == 2 and summary["stop_reason"] == "max_iterations"
    assert not list(run.glob("iter3"))


def test_the_failure_mode_engine_ran_every_stage_within_its_budgets(tiny_run):
    run, config = tiny_run
    for n, label in ((1, "baseline"), (2, "iter1")):
        modes = read_json(run / label / "rca/failure_modes.json")
        assert modes["modes"] and {"operating", "columns", "settings"} <= set(modes)
        targets = pd.read_parquet(run / label / "rca/failure_mode_targets.parquet")
        assert set(targets["failure_mode"]) == {mode["id"] for mode in modes["modes"]}
        plan = read_json(run / f"iter{n}/routing/routing_plan.json")
        assert plan["routed_by"] == "modes" and plan["status"] == "optimal"
        assert plan["sdg_rows"] <= config["deft"]["sdg"]["num_sdg"]
        assert plan["sdg_rows"] + plan["mining_rows"] <= plan["budget"]["max_new_rows"]
        sdg_summary = read_json(run / f"iter{n}/sdg/sdg_summary.json")
        assert sdg_summary["candidates"] == sdg_summary["accepted"] + sdg_summary["rejected"]
        # the budget scales with the base set; the customer's pre-generated pairs and the hard examples'
        # share were reserved in the plan, so the budget guard dropped none
        budget = round(config["deft"]["budget"]["new_rows_fraction"] * TINY_TRAIN_ROWS)
        assert plan["budget_rows"] == budget and plan["hard_examples_reserved"] == round(HARD_SHARE * budget)
        assert plan["pregenerated_reserved"] == sdg_summary["pregenerated"]["ingested"]
        assert plan["budget"]["max_new_rows"] == budget - plan["pregenerated_reserved"] - plan["hard_examples_reserved"]
        assert "dropped" not in (run / f"logs/iter{n}/assemble.log").read_text()
        synthetic = pd.read_csv(run / f"iter{n}/sdg/sdg_rows.csv", dtype=str, keep_default_na=False)
        accepted = synthetic[synthetic["sdg_mode"] != ""]
        for mode, count in accepted["sdg_mode"].value_counts().items():
            assert count <= next(m["sdg"] for m in plan["modes"] if m["id"] == mode)
        rejected = pd.read_csv(run / f"iter{n}/sdg/verify/rejected.csv", dtype=str, keep_default_na=False)
        for name in rejected["object_name"]:  # rejected candidates leave no images behind
            assert not list((run / "images" / f"sdg/iter{n}/test").glob(f"{name}_*"))
        mined = pd.read_csv(run / f"iter{n}/mining/mined_rows.csv", dtype=str, keep_default_na=False)
        neighbours = mined[mined["mining_reason"] == "neighbour"]
        for mode, count in neighbours["failure_mode"].value_counts().items():
            assert count <= next(m["mining"] for m in plan["modes"] if m["id"] == mode)
        # class-aware mining: a missed defect's neighbours are defects, a false alarm's are PASS rows
        assert ((neighbours["label"] == "PASS") == (neighbours["target_label"] == "PASS")).all()
        # hard examples fill what SDG and the neighbours leave of the budget: it is used
        hard = mined[mined["mining_reason"] == "hard_example"]
        assert len(hard) == budget - plan["sdg_rows"] - plan["pregenerated_reserved"] - len(neighbours)
        assert (hard["weakness"].astype(float).diff().dropna() <= 0).all()
        added = state.read_state(run / "deft_state.json")["iterations"][f"iter{n}"]["rows_added_by_source"]
        added_rows = sum(sum(labels.values()) for labels in added.values())
        assert added_rows == len(mined) + len(accepted) + plan["pregenerated_reserved"]
        assert set(added) <= {"sdg", "mined_neighbour", "mined_hard_example"}
    embeddings = read_json(run / "iter1/embeddings/embeddings.json")
    assert len(embeddings["checkpoint_sha256"]) == 64
    # the pool is scored where a later iteration mines it, and not by the last one the loop may run
    assert embeddings["pool"] == "pool.npy" and (run / "iter1/embeddings/pool_scores.csv").is_file()
    last = read_json(run / "iter2/embeddings/embeddings.json")
    assert last["pool"] is None and not (run / "iter2/embeddings/pool.npy").exists()
    report = (run / "DEFT_Loop_Report.html").read_text()
    assert 'id="it-baseline"' in report and "routed in iter1" in report and 'id="regression-gate"' in report


def test_the_loop_never_reads_the_held_out_half_and_reports_it(tiny_run):
    from aoideft import csvdata, holdout

    run, config = tiny_run
    kpi = pd.read_csv(Path(config["workspace"]) / "kpi/testing_set.csv", dtype=str, keep_default_na=False)
    held_out = set(csvdata.row_key(kpi[holdout.held_out_mask(kpi, 0.5)]))
    assert 0 < len(held_out) < len(kpi)
    for label in ("baseline", "iter1", "iter2"):
        gaps = pd.read_parquet(run / label / "rca/kpi_gaps.parquet")
        targets = pd.read_parquet(run / label / "rca/failure_mode_targets.parquet")
        assert not held_out & set(gaps["row_key"]) and not held_out & set(csvdata.row_key(targets))
        best = read_json(run / label / "evaluate/best.json")
        assert best["selection_basis"] == "validation"
        halves = best["kpi_halves"]
        assert halves["held_out"]["n_pass"] + halves["targeting"]["n_pass"] == (kpi["label"] == "PASS").sum()
        assert set(halves["held_out"]["far_ci95"]) == {"recall_100", "recall_99_9", "recall_99_5"}
        assert best["loop_far_pct"] == halves["targeting"]["far_pct"]
    for n in (1, 2):
        mined = pd.read_csv(run / f"iter{n}/mining/mined_rows.csv", dtype=str, keep_default_na=False)
        assert not held_out & set(mined.loc[mined["mining_reason"] == "neighbour", "target_key"])
    entry = state.read_state(run / "deft_state.json")["iterations"]["iter1"]
    assert {"held_out_far_pct", "targeting_far_pct", "accepted", "incumbent"} <= set(entry)
    best_model = read_json(run / "best_model.json")
    assert best_model["selection_basis"] == "validation" and best_model["held_out"]["far_pct"] is not None
    assert best_model["deploy_threshold_from"] == "validation, 100% recall"
    summary = (run / "preflight/summary.md").read_text()
    assert "KPI holdout ON: 50%" in summary


def test_handoff_matches_the_contract(tiny_run):
    run, _ = tiny_run
    best_rec = read_json(run / "phase1_automl/best_rec.json")
    assert {"schema_version", "metric_name", "direction", "best"} <= set(best_rec)
    assert {"rec_id", "score", "specs", "observed_budget", "checkpoint_uri"} <= set(best_rec["best"])
    ckpts = list((run / "baseline/train").glob("model_epoch_*_step_*.pth"))
    assert ckpts, "winning checkpoint not copied under DEFT's name"
    current = state.read_state(run / "deft_state.json")
    baseline = current["iterations"]["baseline"]
    assert baseline["source"] == "automl_phase1"
    assert (run / baseline["best_ckpt_path"]).is_file()
    log = [json.loads(line) for line in (run / "loop_log.jsonl").read_text().splitlines()]
    assert log[0]["iter"] == "baseline" and log[0]["stage"] == "train"
    assert "reused Phase 1" in log[0]["summary"]
    keys = [(e["iter"], e["stage"]) for e in log]
    assert len(keys) == len(set(keys)), "one log entry per stage"
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    merged = yaml.safe_load((run / "specs/baseline_spec_automl.yaml").read_text())
    lr = best_rec["best"]["specs"]["train.optim.lr"]
    assert merged["train"]["optim"]["lr"] == pytest.approx(lr)


def test_combined_csvs_grow_and_phase3_warm_starts(tiny_run):
    run, _ = tiny_run
    it1 = pd.read_csv(run / "iter1/dataset/train_combined_iter1.csv", dtype=str)
    it2 = pd.read_csv(run / "iter2/dataset/train_combined_iter2.csv", dtype=str)
    assert len(it2) >= len(it1) > 0
    keys1 = set(it1.input_path + "/" + it1.object_name)
    keys2 = set(it2.input_path + "/" + it2.object_name)
    assert keys1 <= keys2
    provenance = pd.read_csv(run / "iter1/dataset/train_combined_iter1_provenance.csv", dtype=str)
    assert set(provenance.source) <= {"base_train", "previous_iter_train", "mining_pool", "sdg"}
    spec = yaml.safe_load((run / "final_automl/rec0/spec.yaml").read_text())
    summary = read_json(run / "deft/summary.json")
    assert spec["train"]["pretrained_model_path"].endswith(summary["best"]["best_ckpt_path"])
    assert spec["dataset"]["classify"]["train_dataset"]["csv_path"].endswith("train_combined_iter2.csv")
    phase1 = read_json(run / "phase1_automl/best_rec.json")["best"]["specs"]
    proposals = read_json(run / "final_automl/round0/proposals.json")["proposals"]
    assert proposals[0]["params"]["train.optim.lr"] == pytest.approx(phase1["train.optim.lr"])
    assert "final_automl" in state.read_state(run / "deft_state.json")["iterations"]


@pytest.mark.parametrize("capped", [True, False])
def test_phase3_searches_the_learning_rate_up_to_the_rate_that_trained_its_warm_start(tiny_run, capped):
    from snakemake.utils import validate

    from aoideft.workflow import automl_jobs, settings

    run, config = tiny_run
    config = json.loads(json.dumps(config))
    config["automl"]["phase3"]["lr_at_most_warm_start"] = capped
    validate(config, str(REPO / "config" / "schemas" / "config.schema.yaml"), set_default=True)
    space = {p.name: p for p in automl_jobs.search_space(settings.resolve(config, REPO), automl_jobs.PHASE3)}
    rate = read_json(run / "phase1_automl/best_rec.json")["best"]["specs"]["train.optim.lr"]
    assert space["train.optim.lr"].bounds == (0.0005, pytest.approx(rate if capped else 0.005))


def test_each_image_file_is_decoded_once_per_run(tiny_run):
    run, _ = tiny_run
    assert [p for p in (run / "cache" / "decoded").rglob("*") if p.is_file()]
    # Iteration 2 retrains on iteration 1's rows plus new ones: the old rows come from the cache.
    retrain = read_json(run / "iter2/train/train_summary.json")["decode_cache"]
    assert retrain["hits"] > retrain["misses"]
    # Phase 3 trains on iteration 2's CSV and validation, which iteration 2 decoded: nothing is decoded again.
    trials = [read_json(p)["decode_cache"] for p in sorted(run.glob("final_automl/rec*/train/train_summary.json"))]
    assert len(trials) == 2 and all(t["misses"] == 0 and t["hits"] > 0 for t in trials)


def test_second_run_has_nothing_to_do(tiny_run, tmp_path):
    run, config = tiny_run
    proc = run_snakemake(config, tmp_path / "config.yaml", extra=("-n",))
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert "AOI DEFT run" not in proc.stdout + proc.stderr  # the summary is printed only by the run that wrote it


def _copy_run(tiny_run, tmp_path) -> tuple[Path, dict]:
    run, config = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, symlinks=True)
    config = {**config, "run_dir": str(copy)}
    return copy, config


def test_deleting_iter2_reruns_only_from_there(tiny_run, tmp_path):
    run, config = _copy_run(tiny_run, tmp_path)
    phase1_mtime = (run / "phase1_automl/best.pth").stat().st_mtime
    iter1_mtime = (run / "iter1/train/train_summary.json").stat().st_mtime
    shutil.rmtree(run / "iter2")
    proc = run_snakemake(config, tmp_path / "config.yaml", extra=("-n",))
    plan = proc.stdout
    assert "iter2/dataset/train_combined_iter2.csv" in plan
    assert "phase1_automl/rec0/result.json" not in plan
    assert "iter1/train/train_summary.json" not in plan
    run_snakemake(config, tmp_path / "config.yaml")
    assert (run / "iter2/dataset/train_combined_iter2.csv").is_file()
    assert (run / "phase1_automl/best.pth").stat().st_mtime == phase1_mtime
    assert (run / "iter1/train/train_summary.json").stat().st_mtime == iter1_mtime


def test_targeting_iteration1_dataset_alone(tmp_path, tiny_workspace):
    """Also the developer's profile: AOIDEFT_PROFILE_DIR gets one cProfile file per job's body, and
    every job's log says how long its process ran before the body (the job's start cost)."""
    config = tiny_config(tiny_workspace, tmp_path / "run")
    profiles = tmp_path / "profiles"
    run_snakemake(config, tmp_path / "config.yaml", "iter1/dataset/train_combined_iter1.csv",
                  env={"AOIDEFT_PROFILE_DIR": str(profiles)})
    run = tmp_path / "run"
    assert (run / "iter1/dataset/train_combined_iter1.csv").is_file()
    assert not (run / "iter1/train").exists()
    assert not (run / "final_automl").exists()
    mining = pstats.Stats(str(profiles / "logs--iter1--mining.prof"))
    assert any(function == "mine" for _, _, function in mining.stats), "the body was not profiled"
    logs = sorted((run / "logs").rglob("*.log"))
    assert len(list(profiles.glob("*.prof"))) == len(logs) > 10
    assert all(re.search(r"body starts \d+\.\d\ds after its process", log.read_text()) for log in logs)


def test_kpi_met_stops_the_loop_at_iteration1(tiny_run, tmp_path):
    run, config = _copy_run(tiny_run, tmp_path)
    for path in ("iter1/decision.json",):
        (run / path).unlink()
    shutil.rmtree(run / "iter2")
    shutil.rmtree(run / "deft")
    shutil.rmtree(run / "final_automl")
    (run / "best_model.json").unlink()
    config["kpi"] = {**config["kpi"], "target_far_pct": 100.0}
    run_snakemake(config, tmp_path / "config.yaml", "deft/summary.json", extra=("--forcerun", "deft_decide"))
    summary = read_json(run / "deft/summary.json")
    assert summary["stop_reason"] == "kpi_met"
    assert not (run / "iter2").exists()


def test_hard_stop_skips_phase3(tiny_run, tmp_path):
    run, config = _copy_run(tiny_run, tmp_path)
    for name in ("iter1", "iter2", "deft", "final_automl"):
        shutil.rmtree(run / name)
    (run / "best_model.json").unlink()
    # Nothing can be added: no synthesis, no ingestion, a similarity floor no pool row reaches, no hard examples.
    config["deft"] = {**config["deft"], "sdg": {"num_sdg": 0, "ingest_pregenerated": False},
                      "mining": {"top_k_per_target": 3, "min_similarity": 1.0}, "budget": {"hard_share": 0.0}}
    run_snakemake(config, tmp_path / "config.yaml")
    summary = read_json(run / "deft/summary.json")
    assert summary["hard_stop"] and summary["phase3"]["skip"]
    assert "added no rows" in summary["stop_reason"]
    best_rec = read_json(run / "final_automl/best_rec.json")
    assert best_rec["skipped"] and "Phase 3 skipped" in best_rec["message"]
    assert not list((run / "final_automl").glob("rec*"))
    assert (run / "final_automl/best.pth").is_file()
    assert not (run / "iter1/train").exists()
    current = state.read_state(run / "deft_state.json")
    assert current["status"] == "hard_stopped"
    assert "Phase 3 skipped" in (run / "DEFT_Loop_Report.html").read_text()


def test_phase3_without_a_winner_delivers_the_loops_model(tiny_run, tmp_path):
    """Every Phase 3 trial collapsed: final_automl/best.pth is the DEFT loop's delivered checkpoint,
    the run finishes and says why, instead of failing after the whole loop."""
    run, config = _copy_run(tiny_run, tmp_path)
    for result in sorted((run / "final_automl").glob("rec*/result.json")):
        document = read_json(result)
        result.write_text(json.dumps({**document, "collapsed": True}))  # newer than best_rec.json: select reruns
    run_snakemake(config, tmp_path / "config.yaml")
    best_rec = read_json(run / "final_automl/best_rec.json")
    assert "Phase 3 found no winner" in best_rec["message"] and "rec0: collapsed" in best_rec["message"]
    summary = read_json(run / "deft/summary.json")
    loop_checkpoint = run / summary["best"]["best_ckpt_path"]
    assert (run / "final_automl/best.pth").read_bytes() == loop_checkpoint.read_bytes()
    assert read_json(run / "best_model.json")["iteration"] == summary["best"]["iteration"]
    entry = state.read_state(run / "deft_state.json")["iterations"]["final_automl"]
    assert entry["source"] == "deft_incumbent" and "Phase 3 found no winner" in (run / "loop_log.jsonl").read_text()


def _restart_loop_at(run: Path, n: int) -> None:
    """Remove iteration n's decision and everything after it, as if the loop had just trained iter n."""
    (run / f"iter{n}/decision.json").unlink()
    for name in [f"iter{m}" for m in range(n + 1, 10)] + ["deft", "final_automl"]:
        shutil.rmtree(run / name, ignore_errors=True)
    (run / "best_model.json").unlink(missing_ok=True)


def _rescore(run: Path, label: str, defect: float, passing: float, scored: str = "validation_inference_csv") -> None:
    """Give ``label``'s chosen checkpoint constant scores on validation (or, with ``scored`` =
    "inference_csv", the KPI set): one for defects, one for PASS rows."""
    path = run / read_json(run / label / "evaluate/best.json")[scored]
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["siamese_score"] = [defect if label != "PASS" else passing for label in frame["label"]]
    frame.to_csv(path, index=False)


def test_the_gate_accepts_a_better_iteration_and_keeps_the_incumbent_against_a_worse_one(tiny_run, tmp_path):
    run, config = _copy_run(tiny_run, tmp_path)
    config["deft"].setdefault("gate", {})["basis"] = "targeting"
    _restart_loop_at(run, 1)
    _rescore(run, "baseline", defect=0.5, passing=0.5, scored="inference_csv")  # flags every KPI PASS row
    _rescore(run, "iter1", defect=0.99, passing=0.01, scored="inference_csv")  # separates every KPI row
    _rescore(run, "iter1", defect=0.99, passing=0.01)  # and every validation row
    run_snakemake(config, tmp_path / "config.yaml", "iter1/decision.json")
    decision = read_json(run / "iter1/decision.json")
    assert decision["accepted"] and decision["incumbent"] == "iter1" and decision["gate"]["basis"] == "targeting"
    assert decision["gate"]["targeting"]["p_better"] >= 0.8 and decision["gate"]["p_worse"] < 0.8

    _restart_loop_at(run, 1)
    _rescore(run, "iter1", defect=0.01, passing=0.99)  # better on the targeted rows, lost on validation
    run_snakemake(config, tmp_path / "config.yaml", "deft/summary.json")
    decision = read_json(run / "iter1/decision.json")
    assert not decision["accepted"] and decision["incumbent"] == "baseline" and not decision["stop"]
    assert decision["gate"]["p_worse"] > 0.9 and decision["gate"]["targeting"]["p_better"] >= 0.8
    # the data stays, the weights do not: iteration 2 trains on iter1's rows, from the baseline
    spec = yaml.safe_load((run / "iter2/train/spec.yaml").read_text())
    baseline = read_json(run / "baseline/evaluate/best.json")["best_ckpt_path"]
    assert spec["train"]["pretrained_model_path"].endswith(baseline)
    it1 = pd.read_csv(run / "iter1/dataset/train_combined_iter1.csv", dtype=str)
    it2 = pd.read_csv(run / spec["dataset"]["classify"]["train_dataset"]["csv_path"], dtype=str)
    assert set(it1["object_name"]) <= set(it2["object_name"])
    # and iteration 2's targets come from the incumbent's RCA
    assert read_json(run / "iter2/routing/routing_plan.json")["status"]
    assert "from baseline" in (run / "loop_log.jsonl").read_text()
    entry = state.read_state(run / "deft_state.json")["iterations"]["iter1"]
    assert entry["accepted"] is False and entry["incumbent"] == "baseline"
    summary = read_json(run / "deft/summary.json")
    assert summary["best"]["iteration"] in {"baseline", "iter2"} and "iter1" not in summary["accepted"]
    report = (run / "DEFT_Loop_Report.html").read_text()
    assert "rejected, incumbent kept" in report


def test_the_random_control_fills_the_budget_with_random_pool_rows(tiny_run, tmp_path):
    run, config = _copy_run(tiny_run, tmp_path)
    for name in ("iter1", "iter2", "deft", "final_automl"):
        shutil.rmtree(run / name)
    (run / "best_model.json").unlink()
    config["deft"] = {**config["deft"], "engine": "random", "max_iterations": 1}
    run_snakemake(config, tmp_path / "config.yaml", "iter1/dataset/gate.json")
    mined = pd.read_csv(run / "iter1/mining/mined_rows.csv", dtype=str, keep_default_na=False)
    assert len(mined) == round(config["deft"]["budget"]["new_rows_fraction"] * TINY_TRAIN_ROWS)
    assert (mined["mining_reason"] == "random").all()
    assert pd.read_csv(run / "iter1/sdg/sdg_rows.csv", dtype=str).empty  # no synthesis, no ingestion
    assert read_json(run / "iter1/routing/routing_plan.json")["routed_by"] == "random"


def test_the_tao_style_engine_runs_the_same_stages(tiny_run, tmp_path):
    run, config = _copy_run(tiny_run, tmp_path)
    for name in ("iter1", "iter2", "deft", "final_automl"):
        shutil.rmtree(run / name)
    (run / "best_model.json").unlink()
    # TAO's loop and TAO's selection (kpi_holdout 0): the baseline is evaluated again, on the KPI set
    for name in ("baseline/evaluate", "baseline/embeddings", "baseline/rca"):
        shutil.rmtree(run / name)
    (run / "baseline/decision.json").unlink()
    config["deft"] = {**config["deft"], "engine": "tao", "max_iterations": 1, "budget": {"max_new_rows": 12},
                      "kpi_holdout": 0}
    proc = run_snakemake(config, tmp_path / "config.yaml")
    plan = read_json(run / "iter1/routing/routing_plan.json")
    assert plan["routed_by"] == "labels"
    assert not (run / "iter1/sdg/verify").exists()  # TAO does not verify its synthetic pairs
    provenance = pd.read_csv(run / "iter1/dataset/train_combined_iter1_provenance.csv", dtype=str)
    assert 0 < (provenance["iteration_added"] == "1").sum() <= 12
    assert read_json(run / "deft/summary.json")["stop_reason"] == "max_iterations"
    for label in ("baseline", "iter1"):
        best = read_json(run / label / "evaluate/best.json")
        kinds = best["by_kind"]
        assert best["selection_basis"] == "kpi" and best["kpi_halves"] is None
        assert best["far_pct"] == min(kinds[k]["far_pct"] for k in kinds) and best["loop_far_pct"] == best["far_pct"]
    decision = read_json(run / "iter1/decision.json")
    assert decision["accepted"] and decision["gate"] is None
    best_model = read_json(run / "best_model.json")
    farthest = {label: read_json(run / label / "evaluate/best.json")["far_pct"]
                for label in ("baseline", "iter1", "final_automl")}
    assert best_model["far_pct"] == min(farthest.values()) and best_model["selection_basis"] == "kpi"
    assert best_model["deploy_threshold"] == best_model["threshold"]
    assert "KPI holdout OFF" in proc.stdout + proc.stderr  # the parse-time pre-flight says which is on
    # the report judges on the whole KPI set, says so, and warns that its threshold was chosen there
    report = (run / "DEFT_Loop_Report.html").read_text()
    assert "judged on <b>whole KPI set</b>" in report and "basis: whole KPI set" in report
    assert "held-out KPI half" not in report and "chosen on the KPI set itself" in report
    assert f'Deploy <span class="big">{best_model["iteration"]}</span>' in report


def test_the_bare_board_world_runs_all_three_phases(tmp_path):
    """The second demo world (bare copper, one light) through Phase 1, one DEFT iteration and Phase 3:
    the single-light spec reaches every stage, and the deliverable loads."""
    config = tiny_config(tmp_path / "workspace", tmp_path / "run", **{
        "demo.kind": "bare_board", "deft.max_iterations": 1})
    proc = run_snakemake(config, tmp_path / "config.yaml")
    run = tmp_path / "run"
    # the run ends with its result in the terminal: summary.txt, which the report rule wrote
    assert "\n" + (run / "summary.txt").read_text() in proc.stderr
    manifest = read_json(tmp_path / "workspace" / "demo_manifest.json")
    assert manifest["kind"] == "bare_board" and manifest["lights"] == ["UniformLight"]
    spec = yaml.safe_load((run / "specs/baseline_spec_automl.yaml").read_text())
    assert spec["dataset"]["classify"]["num_input"] == 1
    summary = read_json(run / "deft/summary.json")
    assert summary["iterations_run"] == 1 and summary["stop_reason"] in {"max_iterations", "kpi_met"}
    combined = pd.read_csv(run / "iter1/dataset/train_combined_iter1.csv", dtype=str, keep_default_na=False)
    assert len(combined) > TINY_TRAIN_ROWS
    assert "state_dict" in checkpoint.load_checkpoint(run / "final_automl/best.pth")
    assert (run / "DEFT_Loop_Report.html").is_file()
