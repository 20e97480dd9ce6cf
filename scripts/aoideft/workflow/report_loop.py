"""The report's loop sections: training data added per iteration (by source and label, the training
set's synthetic share), the accept-or-keep gate, each iteration's RCA and what it led to, the AutoML
trial tables and the time per stage (loop_log.jsonl)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from .. import state
from ..deft import assemble
from .deft_common import lights_and_ext
from .report_data import Evaluated, maybe_json
from .report_images import pair_images
from .report_models import basis_histogram
from .settings import RunSettings

SOURCES = ("sdg", "mined_neighbour", "mined_hard_example")
MAX_MODES_SHOWN = 8
MAX_MODE_EXAMPLES = 2
# loop_log stages whose summary line an iteration's section shows, in the order they happen, and their names
STAGE_FACTS = (("routing", "routing"), ("data_mining", "mining"), ("sdg", "SDG"), ("data_merge", "training set"),
               ("train", "retrain"), ("evaluate", "evaluation"), ("loop_stop", "decision"), ("rca", "RCA"))


# ---- training data --------------------------------------------------------------------------------
def synthetic_rows(run: Path, label: str) -> int | None:
    """Synthetic rows in iteration ``label``'s whole training set: each iteration's provenance lists the
    SDG rows it added (iteration_added), and later sets carry every row forward."""
    n = int(label[len("iter"):])
    total = 0
    for k in range(1, n + 1):
        path = run / f"iter{k}" / "dataset" / f"train_combined_iter{k}_provenance.csv"
        if not path.is_file():
            return None
        provenance = pd.read_csv(path, dtype=str, keep_default_na=False)
        total += int(((provenance["source"] == assemble.SYNTHETIC) & (provenance["iteration_added"] == str(k))).sum())
    return total


def training_data(settings: RunSettings, labels: list[str], current: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for label in labels:
        entry = current.get("iterations", {}).get(label, {})
        if label == "baseline" or "rows_added" not in entry:
            continue
        by_source = entry.get("rows_added_by_source") or {}
        additions = [{"source": source, "rows": sum(by_source[source].values()),
                      "by_label": sorted(by_source[source].items(), key=lambda item: (-item[1], item[0]))}
                     for source in [*SOURCES, *sorted(set(by_source) - set(SOURCES))] if by_source.get(source)]
        synthetic = synthetic_rows(settings.run_dir, label)
        training_rows = entry.get("training_rows")
        rows.append({"iteration": label, "training_rows": training_rows, "rows_added": entry.get("rows_added"),
                     "additions": additions, "synthetic_rows": synthetic,
                     "synthetic_share": synthetic / training_rows if synthetic is not None and training_rows else None})
    return rows


# ---- the gate --------------------------------------------------------------------------------------------
def gate_table(settings: RunSettings, labels: list[str]) -> dict[str, Any]:
    """The accept-or-keep gate's decision for every iteration (and Phase 3), on its basis."""
    run = settings.run_dir
    rows = []
    best_model = maybe_json(run / "best_model.json") or {}
    for label in labels[1:] + (["final_automl"] if best_model.get("phase3_gate") else []):
        decision = maybe_json(run / label / "decision.json") or {}
        gate = best_model["phase3_gate"] if label == "final_automl" else decision.get("gate")
        if not gate:
            continue
        if label == "final_automl":
            incumbent = gate["incumbent_label"]
        else:
            previous = labels[labels.index(label) - 1]
            incumbent = (maybe_json(run / previous / "decision.json") or {}).get("incumbent", previous)
        target = gate.get("targeting") or {}
        rows.append({"iteration": label, "incumbent": incumbent, "accepted": gate["accept"], "p_better": gate["p_better"],
                     "p_worse": gate.get("p_worse"),
                     "candidate_expected_far_pct": gate["candidate"]["expected_far_pct"],
                     "incumbent_expected_far_pct": gate["incumbent"]["expected_far_pct"],
                     "targeting_p_better": target.get("p_better"),
                     "targeting_candidate_far_pct": (target.get("candidate") or {}).get("expected_far_pct"),
                     "targeting_incumbent_far_pct": (target.get("incumbent") or {}).get("expected_far_pct"),
                     "note": decision.get("message", "delivered" if gate["accept"] else "the DEFT incumbent is delivered")})
    cfg = settings.deft["gate"]
    return {"enabled": settings.selects_on_validation, "basis": cfg["basis"], "confidence": cfg["confidence"],
            "resamples": cfg["resamples"], "rows": rows}


# ---- iterations -----------------------------------------------------------------------------------------
def latest_log_entries(log: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last loop_log entry of each (iteration, stage): a rerun's entry replaces the earlier one."""
    return {(entry["iter"], entry["stage"]): entry for entry in log}


def _failure_modes(settings: RunSettings, labels: list[str], label: str) -> tuple[list[dict[str, Any]], str, str | None, str]:
    """(modes, RCA summary, the iteration that routed them, routing in words) of one model's RCA."""
    run = settings.run_dir
    found = maybe_json(run / label / "rca" / "failure_modes.json")
    if not found:
        return [], "", None, ""
    following = f"iter{labels.index(label) + 1}"
    plan = maybe_json(run / following / "routing" / "routing_plan.json") or {}
    allocated = {mode["id"]: mode for mode in plan.get("modes", [])}
    lights, ext = lights_and_ext(settings)
    modes = []
    for mode in found["modes"][:MAX_MODES_SHOWN]:
        pairs = [pair_images(settings.images_dir, example, lights, ext,
                             f"{example['label']} {example['object_name']} score {example['score']:.3f}")
                 for example in mode["examples"][:MAX_MODE_EXAMPLES]]
        rows = allocated.get(mode["id"], {})
        modes.append({"id": mode["id"], "description": mode["description"], "size": mode["size"], "share": mode["share"],
                      "lift": mode.get("lift"), "p_value": mode.get("p_value"),
                      "labels": ", ".join(f"{k} {v}" for k, v in mode["labels"].items()),
                      "sdg_rows": rows.get("sdg"), "mining_rows": rows.get("mining"),
                      "examples": [pair for pair in pairs if pair]})
    operating = found["operating"]
    summary = (f"{operating['false_alarms']} false alarms of {operating['pass_rows']} PASS parts at the threshold "
               f"{operating['kpi_threshold']:.4g} (100% recall on these rows); {operating['missed_at_target']} of "
               f"{operating['defect_rows']} defects missed at the {operating['target_far_pct']:g}% FAR threshold "
               f"{operating['target_threshold']:.4g}; {len(found['modes'])} failure modes over "
               f"{operating['weak_false_alarms']} + {operating['weak_missed']} weakest rows.")
    routing = (f"{plan.get('routed_by')} ({plan.get('status')}){': ' + plan['message'] if plan.get('message') else ''}"
               if plan else "")
    return modes, summary, (following if plan else None), routing


def iteration_sections(settings: RunSettings, labels: list[str], models: dict[str, Evaluated],
                       current: dict[str, Any], log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entries = latest_log_entries(log)
    sections = []
    for label in labels:
        model = models[label]
        decision = maybe_json(settings.run_dir / label / "decision.json") or {}
        modes, summary, routed_in, routing = _failure_modes(settings, labels, label)
        facts = [(name, entries[(label, stage)]["summary"]) for stage, name in STAGE_FACTS if (label, stage) in entries]
        sdg_summary = maybe_json(settings.run_dir / label / "sdg" / "sdg_summary.json") or {}
        if "rejected" in sdg_summary and sdg_summary["candidates"]:  # verified, and there was something to verify
            reasons = ", ".join(f"{k} {v}" for k, v in sdg_summary["reject_reasons"].items())
            at = next((i + 1 for i, (name, _) in enumerate(facts) if name == "SDG"), len(facts))
            facts.insert(at, ("SDG verification", f"{sdg_summary['accepted']} of {sdg_summary['candidates']} candidates "
                                                  f"kept; rejected: {reasons or 'none'}"))
        seconds = [entry["duration_sec"] for (it, _), entry in entries.items() if it == label]
        rca_rows = "targeting" if model.has_halves else "whole"
        sections.append({
            "label": label, "accepted": decision.get("accepted") if label != "baseline" else None,
            "incumbent": decision.get("incumbent"), "decision": decision.get("message", ""),
            "histogram": basis_histogram(model, model.deploy_threshold, set_key=rca_rows,
                                         title=f"Scores of {label}, the KPI rows its RCA read"),
            "rca_summary": summary, "routed_in": routed_in, "routing": routing, "modes": modes, "facts": facts,
            "warnings": list(current.get("iterations", {}).get(label, {}).get("mining_warnings") or []),
            "seconds": sum(seconds) if seconds else None,
        })
    return sections


# ---- AutoML trials --------------------------------------------------------------------------------------
def trial_table(run: Path, phase_dir: str, title: str) -> dict[str, Any] | None:
    document = maybe_json(run / phase_dir / "best_rec.json")
    if not document:
        return None
    if document.get("skipped"):
        return {"phase": title, "metric_name": document.get("metric_name", ""), "params": [], "trials": [],
                "winner": {}, "note": document.get("message", "skipped")}
    best = document["best"]
    trials = []
    for rec in document.get("recommendations", []):
        result = maybe_json(run / phase_dir / f"rec{rec['rec_id']}" / "result.json") or {}
        trials.append({"rec_id": rec["rec_id"], "status": rec.get("status", ""), "score": rec.get("score"),
                       "val_loss": rec.get("val_loss"), "collapsed": rec.get("collapsed"),
                       "seconds": (result.get("train_summary") or {}).get("seconds"), "params": rec.get("params", {}),
                       "winner": rec["rec_id"] == best["rec_id"]})
    params = sorted({name for trial in trials for name in trial["params"]})
    note = ("The first trial is Phase 1's winner; every trial warm-starts from the DEFT incumbent."
            if phase_dir == "final_automl" else "The first trial is the workspace spec's own values.")
    if document.get("message"):
        note += " " + document["message"]
    return {"phase": title, "metric_name": document["metric_name"], "params": params, "trials": trials,
            "winner": best.get("specs", {}), "note": note}


def trial_tables(run: Path) -> list[dict[str, Any]]:
    tables = [trial_table(run, "phase1_automl", "Phase 1 AutoML"), trial_table(run, "final_automl", "Phase 3 AutoML")]
    return [table for table in tables if table]


# ---- time per stage ----------------------------------------------------------------------------------------
def stage_times(log: list[dict[str, Any]], trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds per (iteration, stage) from loop_log.jsonl (a rerun's entry replaces the earlier one),
    with totals, and the AutoML phases' trial time."""
    entries = latest_log_entries(log)
    stages = list(dict.fromkeys(stage for (_, stage), entry in entries.items() if entry.get("duration_sec")))
    by_iteration: dict[str, dict[str, float]] = defaultdict(dict)
    for (iteration, stage), entry in entries.items():
        if stage in stages:
            by_iteration[iteration][stage] = float(entry.get("duration_sec") or 0.0)
    rows = [{"iteration": iteration, "seconds": seconds, "total": sum(seconds.values())}
            for iteration, seconds in by_iteration.items()]
    totals = {stage: sum(row["seconds"].get(stage, 0.0) for row in rows) for stage in stages}
    totals["total"] = sum(row["total"] for row in rows)
    phase_seconds = [(f"{table['phase']} trials (sum of {len(table['trials'])})",
                      sum(t["seconds"] or 0.0 for t in table["trials"])) for table in trials if table["trials"]]
    return {"stages": stages, "rows": rows, "totals": totals, "phase_seconds": phase_seconds}


def read_log(run: Path) -> list[dict[str, Any]]:
    path = run / "loop_log.jsonl"
    return state.read_log(path) if path.is_file() else []
