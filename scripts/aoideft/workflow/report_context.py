"""Build DEFT_Loop_Report.html's context from the run directory's files, then render it.

Everything comes from files the stages wrote (evaluate/best.json, metrics.json, dataset provenance,
decision files, the state), so the report can be re-rendered at any point of the run.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from .. import csvdata, fsutil, report
from ..decode_cache import eight_bit
from .settings import RunSettings

MAX_SAMPLES_PER_KIND = 3


def _maybe_json(path: Path) -> dict[str, Any] | None:
    return fsutil.read_json(path) if path.is_file() else None


def loop_labels(run: Path) -> list[str]:
    """baseline, iter1, iter2, ... as far as evaluations exist (never globbing blindly)."""
    labels, n = [], 1
    if (run / "baseline" / "evaluate" / "best.json").is_file():
        labels.append("baseline")
    while (run / f"iter{n}" / "evaluate" / "best.json").is_file():
        labels.append(f"iter{n}")
        n += 1
    return labels


def _dataset_counts(run: Path, label: str, settings: RunSettings) -> dict[str, Any]:
    if label == "baseline":
        rows = len(pd.read_csv(settings.train_csv, dtype=str, keep_default_na=False))
        return {"training_rows": rows, "synthetic_rows": 0, "mined_rows": 0, "synthetic_ratio": 0.0}
    provenance_path = run / label / "dataset" / f"train_combined_{label}_provenance.csv"
    if not provenance_path.is_file():
        return {}
    provenance = pd.read_csv(provenance_path, dtype=str, keep_default_na=False)
    synthetic = int((provenance["source"] == "sdg").sum())
    return {
        "training_rows": int(len(provenance)),
        "synthetic_rows": synthetic,
        "mined_rows": int((provenance["source"] == "mining_pool").sum()),
        "synthetic_ratio": synthetic / max(1, len(provenance)),
    }


def phase_rows(settings: RunSettings) -> list[dict[str, Any]]:
    run = settings.run_dir
    rows: list[dict[str, Any]] = []
    phase1 = _maybe_json(run / "phase1_automl" / "best_rec.json")
    if phase1:
        rows.append({"label": f"Phase 1 AutoML best (rec{phase1['best']['rec_id']})", "phase": "Phase 1",
                     "val_far_pct": phase1["best"]["score"] if phase1["metric_name"] == "val_far_pct" else None,
                     "note": "scored on validation; its KPI figures are the baseline row"})
    baseline_far = None
    labels = loop_labels(run)
    final = _maybe_json(run / "final_automl" / "evaluate" / "best.json")
    for label in labels + (["final_automl"] if final else []):
        best = fsutil.read_json(run / label / "evaluate" / "best.json")
        if label == "baseline":
            baseline_far = best["far_pct"]
        decision = _maybe_json(run / label / "decision.json")
        phase = "Phase 3" if label == "final_automl" else "Phase 2"
        row = {
            "label": label, "phase": phase, "far_pct": best["far_pct"],
            "deployable_far_pct": best.get("deployable_far_pct"),
            "deployable_recall": best.get("deployable_recall"),
            "val_far_pct": best.get("val_far_pct"), "threshold": best.get("threshold"),
            "best_ckpt_kind": best.get("best_ckpt_kind"),
            "delta_vs_baseline": None if baseline_far is None else best["far_pct"] - baseline_far,
            "note": decision["message"] if decision else ("pre-seeded from Phase 1" if label == "baseline" else ""),
        }
        if label == "final_automl":
            summary = _maybe_json(run / "deft" / "summary.json") or {}
            row.update(_dataset_counts(run, summary.get("iterations", ["baseline"])[-1], settings))
            row["note"] = _phase3_verdict(run)
        else:
            row.update(_dataset_counts(run, label, settings))
        rows.append(row)
    return rows


def _phase3_verdict(run: Path) -> str:
    gate = (_maybe_json(run / "best_model.json") or {}).get("phase3_gate")
    if not gate:
        return ""
    verdict = "passed" if gate["accept"] else "did not pass"
    return (f"Phase 3's winner {verdict} the validation gate against the DEFT incumbent {gate['incumbent_label']} "
            f"(better in {gate['p_better']:.0%} of paired bootstrap resamples, {gate['confidence']:.0%} needed)")


def augmentation_rows(run: Path, labels: list[str]) -> list[dict[str, Any]]:
    rows = []
    for label in labels:
        if label == "baseline":
            continue
        sdg = run / label / "sdg" / "sdg_rows.csv"
        mined = run / label / "mining" / "mined_rows.csv"
        gate = _maybe_json(run / label / "dataset" / "gate.json") or {}
        rows.append({
            "iteration": label,
            "sdg_generated": len(pd.read_csv(sdg, dtype=str)) if sdg.is_file() else 0,
            "mined": len(pd.read_csv(mined, dtype=str)) if mined.is_file() else 0,
            "total_added": gate.get("rows_added", 0),
        })
    return rows


def _light_strip(images_dir: Path, rel_dir: str, object_name: str, lights, ext: str) -> np.ndarray:
    tiles = [np.asarray(eight_bit(Image.open(csvdata.image_file(images_dir, rel_dir, object_name, light, ext))).convert("RGB"))
             for light in lights]
    height = min(t.shape[0] for t in tiles)
    return np.concatenate([t[:height] for t in tiles], axis=1)


def pair_images(images_dir: Path, row, lights, ext: str, caption: str) -> dict[str, str] | None:
    """Golden and test light strips of one row as base64 PNGs; None (with a warning) if an image is gone."""
    try:
        golden = _light_strip(images_dir, row["golden_path"], row["object_name"], lights, ext)
        test = _light_strip(images_dir, row["input_path"], row["object_name"], lights, ext)
    except OSError as error:  # an image removed since the run: skip the picture, not the report
        print(f"WARNING: report: no picture for {caption}: {error}")
        return None
    return {"caption": caption, "golden_png_b64": report.png_base64(golden), "test_png_b64": report.png_base64(test)}


def sample_pairs(settings: RunSettings, labels: list[str]) -> list[dict[str, Any]]:
    run = settings.run_dir
    record = _maybe_json(run / "inputs" / "workspace.json")
    if not record:
        return []
    lights, ext = record["lights"], record["image_ext"]
    samples: list[dict[str, Any]] = []

    def add(frame: pd.DataFrame, images_dir: Path, kind: str, caption: str) -> None:
        for _, row in frame.head(MAX_SAMPLES_PER_KIND).iterrows():
            pair = pair_images(images_dir, row, lights, ext, f"{caption}: {row['label']} {row['object_name']}")
            if pair:
                samples.append({**pair, "kind": kind})

    gaps = run / "baseline" / "rca" / "kpi_gaps.parquet"
    if gaps.is_file():
        weak = pd.read_parquet(gaps)
        weak = weak[weak["misclassified"]] if "misclassified" in weak else weak
        weak = weak.drop_duplicates(subset=["input_path", "object_name"]).sort_values("weakness", ascending=False)
        add(weak, settings.images_dir, "real", "KPI failure at baseline")
    first = next((label for label in labels if label != "baseline"), None)
    if first:
        sdg = run / first / "sdg" / "sdg_rows.csv"
        if sdg.is_file():
            add(pd.read_csv(sdg, dtype=str, keep_default_na=False), settings.run_images, "synthetic",
                f"SDG {first}")
        mined = run / first / "mining" / "mined_rows.csv"
        if mined.is_file():
            add(pd.read_csv(mined, dtype=str, keep_default_na=False), settings.pool_images_dir, "mined",
                f"mined {first}")
    return samples


MAX_MODES_SHOWN = 8
MAX_MODE_EXAMPLES = 2


def failure_mode_tables(settings: RunSettings, labels: list[str]) -> list[dict[str, Any]]:
    """Per evaluated loop model: its failure modes and what the next iteration's routing gave each."""
    run = settings.run_dir
    record = _maybe_json(run / "inputs" / "workspace.json")
    tables = []
    for position, label in enumerate(labels):
        found = _maybe_json(run / label / "rca" / "failure_modes.json")
        if not found:
            continue
        following = f"iter{position + 1}"
        plan = _maybe_json(run / following / "routing" / "routing_plan.json") or {}
        allocated = {mode["id"]: mode for mode in plan.get("modes", [])}
        modes = []
        for mode in found["modes"][:MAX_MODES_SHOWN]:
            pairs = [pair_images(settings.images_dir, example, record["lights"], record["image_ext"],
                                 f"{example['label']} {example['object_name']} score {example['score']:.3f}")
                     for example in (mode["examples"][:MAX_MODE_EXAMPLES] if record else [])]
            examples = [pair for pair in pairs if pair]
            rows = allocated.get(mode["id"], {})
            modes.append({"id": mode["id"], "description": mode["description"], "size": mode["size"],
                          "share": mode["share"], "lift": mode.get("lift"), "p_value": mode.get("p_value"),
                          "labels": ", ".join(f"{k} {v}" for k, v in mode["labels"].items()),
                          "sdg_rows": rows.get("sdg"), "mining_rows": rows.get("mining"), "examples": examples})
        operating = found["operating"]
        tables.append({
            "iteration": label, "routed_in": following if plan else None,
            "routing": (f"{plan.get('routed_by')} ({plan.get('status')}){': ' + plan['message'] if plan.get('message') else ''}"
                        if plan else ""),
            "summary": (f"{operating['false_alarms']} false alarms at the KPI threshold {operating['kpi_threshold']:.4g}; "
                        f"{operating['missed_at_target']} defects missed at the {operating['target_far_pct']}% FAR "
                        f"threshold {operating['target_threshold']:.4g}; {len(found['modes'])} modes over "
                        f"{operating['weak_false_alarms']} + {operating['weak_missed']} weakest rows"),
            "modes": modes,
        })
    return tables


def regression_gate(settings: RunSettings, labels: list[str]) -> dict[str, Any]:
    """The accept-or-keep gate's decision for every iteration (and Phase 3), on validation."""
    run = settings.run_dir
    rows = []
    gates = [(label, (_maybe_json(run / label / "decision.json") or {}).get("gate")) for label in labels[1:]]
    phase3 = (_maybe_json(run / "best_model.json") or {}).get("phase3_gate")
    for label, gate in gates + ([("final_automl", phase3)] if phase3 else []):
        if not gate:
            continue
        decision = _maybe_json(run / label / "decision.json") or {}
        rows.append({"iteration": label, "incumbent": gate.get("incumbent_label") or _incumbent_before(run, label),
                     "accepted": gate["accept"], "p_better": gate["p_better"],
                     "candidate_expected_far_pct": gate["candidate"]["expected_far_pct"],
                     "incumbent_expected_far_pct": gate["incumbent"]["expected_far_pct"],
                     "note": decision.get("message", "")})
    cfg = settings.deft["gate"]
    return {"enabled": settings.selects_on_validation, "confidence": cfg["confidence"], "resamples": cfg["resamples"],
            "rows": rows}


def _incumbent_before(run: Path, label: str) -> str:
    n = int(label[len("iter"):])
    previous = "baseline" if n == 1 else f"iter{n - 1}"
    return (_maybe_json(run / previous / "decision.json") or {}).get("incumbent", previous)


def iteration_cards(run: Path, labels: list[str], state: dict[str, Any]) -> list[dict[str, Any]]:
    cards = []
    for label in labels:
        entry = state.get("iterations", {}).get(label, {})
        decision = _maybe_json(run / label / "decision.json") or {}
        facts = [(key, entry[key]) for key in ("stage_completed", "far_pct", "threshold", "best_ckpt_kind",
                                               "training_rows", "rows_added", "sdg_generated_count",
                                               "mining_mined_count", "rca_target_defects")
                 if entry.get(key) is not None]
        plan = _maybe_json(run / label / "routing" / "routing_plan.json")
        if plan:
            facts.append(("routing", f"by {plan['routed_by']}, {plan['status']}"
                                     + (f": {plan['message']}" if plan.get("message") else "")))
        sdg_summary = _maybe_json(run / label / "sdg" / "sdg_summary.json") or {}
        if "rejected" in sdg_summary:
            reasons = ", ".join(f"{k} {v}" for k, v in sdg_summary["reject_reasons"].items())
            facts.append(("SDG verification", f"{sdg_summary['accepted']} of {sdg_summary['candidates']} candidates "
                                              f"kept; rejected: {reasons or 'none'}"))
        if decision:
            facts.append(("decision", decision["message"]))
        cards.append({"title": label, "facts": facts, "warnings": list(entry.get("mining_warnings") or [])})
    return cards


def recommendations(rows: list[dict[str, Any]], target: float, best_eval: dict[str, Any] | None,
                    phase3: dict[str, Any] | None) -> list[str]:
    advice = []
    scored = [r for r in rows if r.get("far_pct") is not None]
    if scored:
        best = min(scored, key=lambda r: r["far_pct"])
        if best["far_pct"] > target:
            advice.append(f"KPI not met: best FAR@100% recall {best['far_pct']:.2f}% ({best['label']}) vs "
                          f"{target}%. Add real defect examples of the labels that stay weak, raise "
                          "deft.max_iterations or the SDG/mining budgets.")
        if best.get("deployable_recall") is not None and best["deployable_recall"] < 1:
            advice.append(f"The validation-calibrated threshold reaches only {best['deployable_recall']:.1%} recall "
                          "on the KPI set: the validation set under-represents some defects; enlarge it before "
                          "deploying that threshold.")
    if best_eval:
        undetectable = [label for label, info in best_eval.get("per_label", {}).items()
                        if info.get("detectable_deployable") is False]
        if undetectable:
            advice.append("Defect types missed at the deployable threshold: " + ", ".join(sorted(undetectable)))
    if phase3 and phase3.get("improved_over_deft") is False:
        advice.append("Phase 3 did not beat the DEFT winner on validation: best_model.json points at the "
                      "better model; consider more Phase 3 trials or fewer epochs per trial.")
    return advice


def build_context(settings: RunSettings) -> dict[str, Any]:
    run = settings.run_dir
    state = _maybe_json(run / "deft_state.json") or {}
    labels = loop_labels(run)
    rows = phase_rows(settings)
    summary = _maybe_json(run / "deft" / "summary.json")
    best_model = _maybe_json(run / "best_model.json")
    scored = [r for r in rows if r.get("far_pct") is not None]
    final_row = next((r for r in scored if r["label"] == (best_model or {}).get("iteration")), None)
    final_row = final_row or (min(scored, key=lambda r: r["far_pct"]) if scored else None)
    best_eval = None
    curves: list[dict[str, Any]] = []
    score_distribution = None
    for row in scored:
        best = fsutil.read_json(run / row["label"] / "evaluate" / "best.json")
        table = pd.read_csv(run / best["evaluation_dir"] / "recall_far.csv")
        if row["label"] in ("baseline", final_row["label"]):
            curves.append({"label": row["label"], "far_pct": table["far_pct"].tolist(),
                           "recall": table["recall"].tolist()})
        if row is final_row:
            best_eval = fsutil.read_json(run / best["evaluation_dir"] / "metrics.json")
            score_distribution = {"label": f"{row['label']} on the KPI set", **best_eval["score_histogram"],
                                  "threshold": best_eval["threshold"]}
    phase3 = None
    best_rec3 = _maybe_json(run / "final_automl" / "best_rec.json")
    if best_rec3:
        gate = (_maybe_json(run / "best_model.json") or {}).get("phase3_gate")
        phase3 = {"ran": not best_rec3.get("skipped", False),
                  "message": best_rec3.get("message") or _phase3_verdict(run),
                  "improved_over_deft": gate["accept"] if gate else None}
    defect_types = []
    if best_eval:
        for label, info in sorted(best_eval["per_label"].items()):
            if info.get("is_defect"):
                defect_types.append({"label": label, "count": info["count"], "score_min": info["score_min"],
                                     "score_median": info["score_median"], "score_max": info["score_max"],
                                     "detectable": info.get("detectable_kpi")})
    return {
        "header": {
            "title": "DEFT loop report",
            "run_dir": str(run),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "kpi_target": settings.kpi_target,
            "iterations_run": len([label for label in labels if label != "baseline"]),
            "max_iterations": settings.deft["max_iterations"],
            "stop_reason": (summary or {}).get("stop_reason", ""),
            "final_far_pct": final_row["far_pct"] if final_row else None,
            "final_label": final_row["label"] if final_row else "",
            "in_progress": best_model is None,
        },
        "rows": rows,
        "augmentation": augmentation_rows(run, labels),
        "score_distribution": score_distribution,
        "recall_far_curves": curves,
        "defect_types": defect_types,
        "samples": sample_pairs(settings, labels),
        "iteration_cards": iteration_cards(run, labels, state),
        "failure_modes": failure_mode_tables(settings, labels),
        "regression_gate": regression_gate(settings, labels),
        "phase3": phase3,
        "recommendations": recommendations(rows, settings.kpi_target, best_eval, phase3),
    }


def render_run_report(settings: RunSettings, out_path: Path) -> None:
    report.render_report(build_context(settings), out_path)
