"""The report's model sections: which model to deploy and at which threshold, what it gives on each
row set, whether the loop helped (paired intervals on the basis rows), every model's row, and the
delivered model's score distribution, recall-vs-FAR curve, missed defects and defect types."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import holdout, kpi, kpi_report
from ..deft import gate as gate_rule
from ..report import stats
from .deft_common import lights_and_ext
from .report_data import VALIDATION, Evaluated, maybe_json, same_rows, set_name
from .report_images import pair_images
from .settings import RunSettings

DIFFERENCE_RECALLS = (("100%", 1.0), ("99.9%", 0.999), ("99.5%", 0.995))
MAX_MISSED_SHOWN = 40
KEY_COLUMNS = ("input_path", "golden_path", "label", "object_name", kpi.SCORE_COLUMN)
FEW_VALIDATION_DEFECTS = 30


def basis_name(evaluated: Evaluated) -> str:
    return set_name(evaluated.basis)


def resamples(settings: RunSettings, rows: int) -> int:
    return kpi.bootstrap_resamples(rows, int(settings.config["kpi"]["bootstrap"]))


def difference(settings: RunSettings, model: Evaluated, reference: Evaluated, recall: float) -> dict[str, Any] | None:
    """model - reference FAR at ``recall`` on the basis rows, paired bootstrap; None without both classes'
    rows in common or without resamples."""
    if not same_rows(model, reference):
        return None
    is_defect, scores = model.scores_of(model.basis)
    _, reference_scores = reference.scores_of(model.basis)
    n = resamples(settings, len(scores))
    if n == 0:
        return None
    found = kpi.bootstrap_far_difference(is_defect, scores, reference_scores, n=n, seed=settings.deft_seed,
                                         min_recall=recall)
    return {**found, "model_far_pct": kpi.operating_point_at_recall(is_defect, scores, recall).far_pct,
            "reference_far_pct": kpi.operating_point_at_recall(is_defect, reference_scores, recall).far_pct}


# ---- the model to deploy ---------------------------------------------------------------------------
def delivered_label(settings: RunSettings, labels: list[str]) -> tuple[str, bool]:
    """(label, final): best_model.json's model, or while the run goes on the latest incumbent."""
    best_model = maybe_json(settings.run_dir / "best_model.json")
    if best_model:
        return best_model["iteration"], True
    decided = [maybe_json(settings.run_dir / label / "decision.json") for label in labels]
    incumbents = [decision["incumbent"] for decision in decided if decision]
    return (incumbents[-1] if incumbents else labels[0]), False


def row_set(evaluated: Evaluated, set_key: str, threshold: float) -> dict[str, Any]:
    """One row set at the deploy threshold (Wilson intervals) and at re-chosen thresholds (metrics.json)."""
    is_defect, scores = evaluated.scores_of(set_key)
    point = kpi.operating_point_at_threshold(is_defect, scores, threshold)
    n_defect, n_pass = point.tp + point.fn, point.tn + point.fp
    recall_ci = stats.wilson_interval(point.tp, n_defect)
    far_ci = stats.wilson_interval(point.fp, n_pass)
    metrics = evaluated.metrics(set_key) or {}
    intervals = metrics.get("far_ci95") or {}
    return {
        "name": set_name(set_key), "key": set_key, "is_basis": set_key == evaluated.basis,
        "n_pass": n_pass, "n_defect": n_defect, "recall": point.recall, "missed": point.fn,
        "recall_ci95": list(recall_ci) if recall_ci else None,
        "far_pct": point.far_pct, "far_ci95": [100 * far_ci[0], 100 * far_ci[1]] if far_ci else None,
        "confusion": {"tp": point.tp, "fn": point.fn, "fp": point.fp, "tn": point.tn},
        "far100_pct": metrics.get("far_pct"), "far100_ci95": intervals.get("recall_100"),
        "far_99_9_pct": metrics.get("far_at_recall_99_9"), "far_99_9_ci95": intervals.get("recall_99_9"),
        "far_99_5_pct": metrics.get("far_at_recall_99_5"), "far_99_5_ci95": intervals.get("recall_99_5"),
        "far_99_pct": metrics.get("far_at_recall_99"), "auroc": metrics.get("auroc"), "best_f1": metrics.get("best_f1"),
    }


def _gate_sentence(label: str, gate: dict[str, Any], incumbent: str) -> str:
    verdict = "passed" if gate["accept"] else "did not pass"
    return f"{label} {verdict} the gate: " + gate_rule.describe(gate, incumbent)


def gate_lines(settings: RunSettings, labels: list[str]) -> list[str]:
    """Every accept-or-keep decision of the run, in words (validation)."""
    lines = []
    for label in labels[1:]:
        decision = maybe_json(settings.run_dir / label / "decision.json") or {}
        if decision.get("gate"):
            previous = labels[labels.index(label) - 1]
            incumbent = (maybe_json(settings.run_dir / previous / "decision.json") or {}).get("incumbent", previous)
            lines.append(_gate_sentence(label, decision["gate"], incumbent))
    phase3 = (maybe_json(settings.run_dir / "best_model.json") or {}).get("phase3_gate")
    if phase3:
        lines.append(_gate_sentence("Phase 3's winner (final_automl)", phase3, phase3["incumbent_label"]))
    return lines


def delivery(settings: RunSettings, delivered: Evaluated, final: bool, labels: list[str]) -> dict[str, Any]:
    run = settings.run_dir
    best_model = maybe_json(run / "best_model.json") if final else None
    threshold = float(best_model["deploy_threshold"]) if best_model else delivered.deploy_threshold
    on_validation = delivered.best.get("selection_basis") == "validation"
    chosen = delivered.best.get("val_selection") or {}
    how = [f"checkpoint: {delivered.best['best_ckpt_kind']} of {delivered.label}'s training, "
           + (f"the lower validation selection score (expected FAR@100% recall {chosen.get('expected_far_pct', 0):.2f}%)"
              if on_validation else "the lower FAR@100% recall on the KPI set (TAO)")]
    if on_validation:
        how.append("model: the incumbent of the accept-or-keep gate on validation"
                   + ("" if len(labels) > 1 else " (no iteration yet)"))
        how.append("threshold: the highest that still flags every validation defect (100% recall on validation), "
                   "applied unchanged to the KPI rows")
    else:
        how.append("model: TAO's pick_best, the lowest FAR@100% recall on the KPI set; threshold chosen on the KPI set")
    sets = [row_set(delivered, key, threshold) for key in delivered.set_keys()]
    basis = next(s for s in sets if s["is_basis"])
    cautions = []
    if basis["missed"]:
        cautions.append(f"At this threshold {basis['missed']} of {basis['n_defect']} defects of the {basis['name']} "
                        f"escape (recall {basis['recall']:.1%}): see the missed defects below.")
    if not on_validation:
        cautions.append("The threshold was chosen on the KPI set itself, so its KPI figures are optimistic: no "
                        "independent check (deft.kpi_holdout > 0 keeps one).")
    validation = next(s for s in sets if s["key"] == VALIDATION)
    if on_validation and validation["n_defect"] < FEW_VALIDATION_DEFECTS:
        cautions.append(f"The threshold rests on {validation['n_defect']} validation defects: one weak defect more or "
                        "less moves it. A larger validation set makes it steadier.")
    return {"final": final, "label": delivered.label,
            "checkpoint": best_model["checkpoint"] if best_model else delivered.best["best_ckpt_path"],
            "inference_spec": "best_model_inference_spec.yaml" if best_model else None,
            "training_spec": best_model.get("training_spec") if best_model else None,
            "threshold": threshold,
            "threshold_from": (best_model or {}).get("deploy_threshold_from")
            or ("validation, 100% recall" if on_validation else "KPI set, 100% recall"),
            "how_chosen": how, "sets": sets, "cautions": cautions}


def loop_effect(settings: RunSettings, delivered: Evaluated, baseline: Evaluated, labels: list[str]) -> dict[str, Any]:
    differences = []
    if delivered.label != baseline.label:
        for text, recall in DIFFERENCE_RECALLS:
            found = difference(settings, delivered, baseline, recall)
            if found:
                differences.append({"recall": text, **found})
    return {"model": delivered.label, "reference": baseline.label, "differences": differences,
            "validation": gate_lines(settings, labels)}


# ---- every model --------------------------------------------------------------------------------------
def model_rows(settings: RunSettings, models: list[Evaluated], delivered: str) -> list[dict[str, Any]]:
    run = settings.run_dir
    baseline = models[0] if models and models[0].label == "baseline" else None
    phase1 = maybe_json(run / "phase1_automl" / "best_rec.json")
    best_model = maybe_json(run / "best_model.json") or {}
    rows = []
    for model in models:
        basis = model.metrics(model.basis) or {}
        half = (model.best.get("kpi_halves") or {}).get(holdout.HELD_OUT) or {}
        decision = maybe_json(run / model.label / "decision.json") or {}
        if model.label == "final_automl":
            gate = best_model.get("phase3_gate")
            accepted = gate["accept"] if gate else None
            note = "Phase 3 AutoML winner, warm-started from the DEFT incumbent"
        elif model.label == "baseline":
            accepted = None
            note = f"Phase 1 AutoML winner rec{phase1['best']['rec_id']}" if phase1 else "pre-seeded from Phase 1"
        else:
            accepted, note = decision.get("accepted"), decision.get("message", "")
        rows.append({
            "label": model.label, "phase": "Phase 3" if model.label == "final_automl" else "Phase 2",
            "delivered": model.label == delivered, "accepted": accepted,
            "basis_far_pct": basis.get("far_pct", model.best["far_pct"]),
            "basis_far_ci95": (basis.get("far_ci95") or {}).get("recall_100"),
            "delta": difference(settings, model, baseline, 1.0) if baseline and model is not baseline else None,
            "kpi_far_pct": model.best["far_pct"],
            "deployable_far_pct": half.get("deployable_far_pct", model.best.get("deployable_far_pct")),
            "deployable_recall": half.get("deployable_recall", model.best.get("deployable_recall")),
            "val_far_pct": model.best.get("val_far_pct"),
            "val_expected_far_pct": (model.best.get("val_selection") or {}).get("expected_far_pct"),
            "threshold": model.best.get("deployable_threshold"), "best_ckpt_kind": model.best.get("best_ckpt_kind"),
            "note": note,
        })
    return rows


# ---- the delivered model in detail --------------------------------------------------------------------
def basis_histogram(model: Evaluated, threshold: float, *, set_key: str | None = None, title: str = "") -> dict[str, Any]:
    """Logit-binned scores of a row set with its own FAR@100% recall threshold and the deploy threshold."""
    set_key = set_key or model.basis
    is_defect, scores = model.scores_of(set_key)
    own = kpi.operating_point_at_recall(is_defect, scores).threshold
    return {"title": title or f"Scores of {model.label}, {set_name(set_key)}",
            **stats.logit_histogram(is_defect, scores),
            "thresholds": [{"value": own, "label": "100% recall on these rows", "color": "#2f6fb0"},
                           {"value": threshold, "label": "deploy threshold", "color": "#8e5cc2"}]}


def curves(models: list[Evaluated], delivered: Evaluated) -> list[dict[str, Any]]:
    """Recall vs FAR on the basis rows: baseline, the delivered model, the last iteration, Phase 3."""
    chosen = {m.label: m for m in models if m.label in ("baseline", delivered.label, "final_automl")}
    loop = [m for m in models if m.label.startswith("iter")]
    if loop:
        chosen.setdefault(loop[-1].label, loop[-1])
    out = []
    for model in chosen.values():
        is_defect, scores = model.scores_of(model.basis)
        table = kpi.recall_far_table(is_defect, scores)
        point = kpi.operating_point_at_threshold(is_defect, scores, model.deploy_threshold)
        out.append({"label": model.label, "far_pct": table["far_pct"].tolist(), "recall": table["recall"].tolist(),
                    "marker": {"far_pct": point.far_pct, "recall": point.recall, "label": model.label}})
    return out


def missed_defects(settings: RunSettings, model: Evaluated, threshold: float) -> dict[str, Any]:
    """The KPI defects the deploy threshold lets through, lowest score first, with their pictures."""
    is_defect, scores = model.kpi_scores
    point = kpi.operating_point_at_threshold(is_defect, scores, threshold)
    missed = kpi_report.missed_defect_rows(model.kpi_frame, is_defect, scores, {"deploy": point})
    halves = np.where(model.held_out, "held-out", "targeting") if model.has_halves else np.full(len(scores), "whole")
    lights, ext = lights_and_ext(settings)
    metadata_columns = [c for c in model.kpi_frame.columns if c not in KEY_COLUMNS]
    rows = []
    for _, row in missed.head(MAX_MISSED_SHOWN).iterrows():
        score = float(row[kpi.SCORE_COLUMN])
        caption = f"{row['label']} {row['object_name']} score {score:.4g}"
        rows.append({"half": str(halves[int(row["row"]) - 1]), "label": row["label"], "object_name": row["object_name"],
                     "score": score, "margin": float(row["margin"]),
                     "metadata": ", ".join(f"{c} {row[c]}" for c in metadata_columns if str(row[c]) != ""),
                     "pair": pair_images(settings.images_dir, row, lights, ext, caption)})
    return {"threshold": threshold, "rows": rows, "total": len(missed),
            "file": f"{model.best['evaluation_dir']}/{kpi_report.MISSED_FILE} (operating point 'deployable')"}


def defect_types(model: Evaluated, threshold: float) -> list[dict[str, Any]]:
    """Per defect label of the KPI set: scores, and how many the deploy threshold catches (per half)."""
    is_defect, scores = model.kpi_scores
    labels = model.kpi_frame["label"]
    whole = kpi_report.per_label_summary(labels, scores, {"deploy": threshold})
    held = kpi_report.per_label_summary(labels[model.held_out], scores[model.held_out], {"deploy": threshold}) \
        if model.has_halves and model.held_out.any() else None
    held_by_label = {} if held is None else {r["label"]: r for _, r in held.iterrows()}
    out = []
    for _, row in whole[whole["is_defect"]].iterrows():
        other = held_by_label.get(row["label"])
        out.append({"label": row["label"], "count": int(row["count"]), "score_min": float(row["score_min"]),
                    "score_median": float(row["score_median"]), "score_max": float(row["score_max"]),
                    "caught": int(row["flagged_deploy"]),
                    "held_out_count": int(other["count"]) if other is not None else None,
                    "held_out_caught": int(other["flagged_deploy"]) if other is not None else None})
    return out


def curve_floor_pct(model: Evaluated) -> float:
    is_defect, _ = model.scores_of(model.basis)
    return 100.0 / max(1, int((~is_defect).sum()))

