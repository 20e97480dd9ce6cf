"""Build DEFT_Loop_Report.html's context (``aoideft.report.types``) from the run directory, then render it.

Everything comes from files the stages wrote (evaluate/best.json, the evaluations' metrics and
inference CSVs, decision files, best_model.json, the state and loop_log.jsonl), so the report can be
re-rendered at any point of the run: before best_model.json exists it shows the incumbent so far.
The sections are built by ``report_models`` (the model to deploy, every model, the delivered one in
detail) and ``report_loop`` (training data, gate, iterations, trials, stage times).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import fsutil, report, state
from ..report import text
from . import report_loop, report_models
from .report_data import Evaluated, maybe_json, set_name
from .report_images import sample_pairs
from .settings import RunSettings


def loop_labels(run: Path) -> list[str]:
    """baseline, iter1, iter2, ... as far as evaluations exist (never globbing blindly)."""
    labels, n = [], 1
    if (run / "baseline" / "evaluate" / "best.json").is_file():
        labels.append("baseline")
    while (run / f"iter{n}" / "evaluate" / "best.json").is_file():
        labels.append(f"iter{n}")
        n += 1
    return labels


def validation_disagrees(models: list[dict[str, Any]], basis: str) -> str | None:
    """Advice when a model the gate turned down reads lower on the basis rows than the delivered one:
    validation and the KPI set disagree, and only the user can say which the line resembles."""
    delivered = next((row for row in models if row.get("delivered")), None)
    turned_down = [row for row in models if row.get("accepted") is False and row.get("basis_far_pct") is not None]
    if delivered is None or delivered.get("basis_far_pct") is None or not turned_down:
        return None
    best = min(turned_down, key=lambda row: row["basis_far_pct"])
    if best["basis_far_pct"] >= delivered["basis_far_pct"]:
        return None
    on_validation = (f" ({best['val_far_pct']:.1f}% vs {delivered['val_far_pct']:.1f}% FAR@100% recall)"
                     if best.get("val_far_pct") is not None and delivered.get("val_far_pct") is not None else "")
    return (f"{best['label']} reads {best['basis_far_pct']:.1f}% on the {basis} against the delivered "
            f"{delivered['label']}'s {delivered['basis_far_pct']:.1f}% (FAR@100% recall), yet the gate turned it "
            f"down: it was not better on validation{on_validation}. Validation and the KPI set disagree. Every "
            "choice follows validation, so if the KPI set is what the line will see, add rows like the KPI set's "
            "failure modes (the report's iteration sections) to the validation set and rerun.")


def recommendations(settings: RunSettings, delivery: dict[str, Any] | None, defect_types: list[dict[str, Any]],
                    loop_effect: dict[str, Any] | None, basis: str, models: list[dict[str, Any]]) -> list[str]:
    advice = []
    target = settings.kpi_target
    weak = [item["label"] for item in defect_types if item.get("caught") is not None and item["caught"] < item["count"]]
    kpi_missed = False
    if delivery:
        basis_set = next(s for s in delivery["sets"] if s["is_basis"])
        far = basis_set.get("far100_pct")
        kpi_missed = far is not None and far > target
        if kpi_missed:
            named = f" ({', '.join(sorted(weak))} are missed at the deploy threshold)" if weak else ""
            advice.append(f"KPI not met on the {basis}: FAR@100% recall {far:.2f}% vs {target:g}%. Add real examples of the "
                          f"defect types that stay weak{named}, raise deft.max_iterations or the SDG/mining budgets.")
        if basis_set["missed"]:
            advice.append(f"The validation-calibrated threshold misses {basis_set['missed']} of {basis_set['n_defect']} "
                          f"defects of the {basis}: the validation set under-represents them; add such defects to "
                          "validation before deploying that threshold, or review these parts by hand.")
    if weak and not kpi_missed:  # else the KPI advice above names them
        advice.append("Defect types missed at the deploy threshold: " + ", ".join(sorted(weak)) + ".")
    if loop_effect and loop_effect["model"] == loop_effect["reference"] and loop_effect["validation"]:
        advice.append("No iteration beat the baseline on validation: look at the iterations' failure modes and the "
                      "training data they added.")
    disagreement = validation_disagrees(models, basis)
    if disagreement:
        advice.append(disagreement)
    phase3 = (maybe_json(settings.run_dir / "best_model.json") or {}).get("phase3_gate")
    if phase3 and not phase3["accept"]:
        advice.append("Phase 3 did not beat the DEFT incumbent on validation: best_model.json points at the incumbent; "
                      "consider more Phase 3 trials or more epochs per trial.")
    return advice


def build_context(settings: RunSettings) -> dict[str, Any]:
    run = settings.run_dir
    labels = loop_labels(run)
    current = state.read_state(run / "deft_state.json") if (run / "deft_state.json").is_file() else {}
    log = report_loop.read_log(run)
    summary = maybe_json(run / "deft" / "summary.json") or {}
    loaded = {label: model for label in [*labels, "final_automl"] if (model := Evaluated.load(settings, label))}
    models = list(loaded.values())
    trials = report_loop.trial_tables(run)
    header = {
        "title": "DEFT loop report",
        "run_dir": str(run),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kpi_target": settings.kpi_target,
        "iterations_run": len([label for label in labels if label != "baseline"]),
        "max_iterations": settings.deft["max_iterations"],
        "stop_reason": summary.get("stop_reason", ""),
        "in_progress": not (run / "best_model.json").is_file(),
        "basis": set_name("held_out" if settings.selects_on_validation else "whole"),
        "basis_key": "held_out" if settings.selects_on_validation else "whole",
    }
    context: dict[str, Any] = {
        "header": header, "models": [], "trials": trials, "stage_times": report_loop.stage_times(log, trials),
        "synthetic_cap": settings.deft["budget"]["max_synthetic_share"],
        "training_data": report_loop.training_data(settings, labels, current),
        "gate": report_loop.gate_table(settings, labels),
    }
    if "baseline" not in labels:  # nothing evaluated yet
        return context
    label, final = report_models.delivered_label(settings, labels)
    delivered = loaded[label]
    basis = report_models.basis_name(delivered)
    header.update(basis=basis, basis_key=delivered.basis)
    delivery = report_models.delivery(settings, delivered, final, labels)
    threshold = delivery["threshold"]
    loop_effect = report_models.loop_effect(settings, delivered, loaded["baseline"], labels)
    defect_types = report_models.defect_types(delivered, threshold)
    rows = report_models.model_rows(settings, models, label)
    context.update({
        "models": rows,
        "delivery": delivery,
        "loop_effect": loop_effect,
        "histogram": report_models.basis_histogram(delivered, threshold),
        "curves": report_models.curves(models, delivered),
        "curve_floor_pct": report_models.curve_floor_pct(delivered),
        "missed": report_models.missed_defects(settings, delivered, threshold),
        "defect_types": defect_types,
        "iterations": report_loop.iteration_sections(settings, labels, loaded, current, log),
        "samples": sample_pairs(settings, labels),
        "recommendations": recommendations(settings, delivery, defect_types, loop_effect, basis, rows),
    })
    return context


def render_run_report(settings: RunSettings, out_path: Path, summary_path: Path | None = None) -> None:
    """The HTML report, and with ``summary_path`` its plain-text summary (``report.text``) from the same context."""
    context = build_context(settings)
    report.render_report(context, out_path)
    if summary_path is not None:
        fsutil.write_text(summary_path, text.summary_text(context, str(out_path)))
