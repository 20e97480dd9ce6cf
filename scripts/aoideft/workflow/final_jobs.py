"""Rule pick_best: the delivered model of the whole run, and its inference spec.

With the KPI holdout (the default) the delivered model is DEFT's incumbent, unless Phase 3's winner
beats it through the same validation gate (``deft.gate``); its threshold is the one calibrated at
100% recall on validation. With ``deft.kpi_holdout: 0`` it is TAO's ``_pick_best``: the lowest KPI
FAR of all phases, at the threshold chosen on the KPI set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import fsutil, spec as tao_spec, state
from . import state_hooks
from .deft_eval_jobs import gate_against
from .settings import RunSettings

AUGMENT_FLAGS = (
    "dataset.classify.augmentation_config.random_flip.enable",
    "dataset.classify.augmentation_config.random_rotate.enable",
    "dataset.classify.augmentation_config.random_color.enable",
    "dataset.classify.augmentation_config.with_scale_random_crop.enable",
)


def training_spec_path(label: str) -> str:
    if label == "baseline":
        return "specs/baseline_spec_automl.yaml"
    if label == "final_automl":
        return "final_automl/best_spec.yaml"
    return f"{label}/train/spec.yaml"


def delivered_on_validation(settings: RunSettings, summary: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """(label, gate) of the delivered model: the DEFT incumbent, or Phase 3's winner if it passes the gate."""
    run = settings.run_dir
    incumbent = summary["best"]["iteration"]
    if summary["phase3"]["skip"]:
        return incumbent, None
    verdict = gate_against(settings, fsutil.read_json(run / incumbent / "evaluate" / "best.json"),
                           fsutil.read_json(run / "final_automl" / "evaluate" / "best.json"),
                           seed=settings.deft_seed + 1000)
    print(verdict.message("final_automl", incumbent))
    return ("final_automl" if verdict.accept else incumbent), verdict.as_dict() | {"incumbent_label": incumbent}


def pick_best(settings: RunSettings, out_model: Path, out_spec: Path) -> None:
    run = settings.run_dir
    summary = fsutil.read_json(run / "deft" / "summary.json")
    current = state.read_state(run / state_hooks.STATE_FILE)
    gate = None
    if settings.selects_on_validation:
        label, gate = delivered_on_validation(settings, summary)
        entry = current["iterations"][label]
    else:
        label, entry = state.pick_best(current)
    spec_rel = training_spec_path(label)
    document = state.best_model_document(current, label, spec_rel)
    evaluated = fsutil.read_json(run / label / "evaluate" / "best.json")
    # The threshold to deploy: calibrated at 100% recall on validation, unless TAO's behaviour is asked for.
    threshold = evaluated["deployable_threshold"] if settings.selects_on_validation else entry["threshold"]
    document.update({
        "selection_basis": evaluated["selection_basis"],
        "deploy_threshold": threshold,
        "deploy_threshold_from": "validation, 100% recall" if settings.selects_on_validation else "KPI set, 100% recall",
        "held_out": (evaluated.get("kpi_halves") or {}).get("held_out"),
        "val_selection": evaluated.get("val_selection"),
        "phase3_gate": gate,
    })
    fsutil.write_json(out_model, document)
    inference_spec = tao_spec.load_spec(run / spec_rel)
    trained_seed = tao_spec.get_dotted(inference_spec, "train.seed")
    overrides = {
        "model.classify.eval_margin": float(threshold),
        "dataset.classify.augmentation_config.augment": False,
        "inference.checkpoint": str(run / entry["best_ckpt_path"]),
        # The seed the delivered model trained with, whichever phase made it (a DEFT retrain's spec
        # names it; Phase 1 and 3 trials train with the spec's own or TAO's default): one shape of file.
        "train.seed": int(tao_spec.schema_default("train.seed") if trained_seed is None else trained_seed),
        "dataset.classify.infer_dataset.csv_path": str(settings.kpi_csv),
        "dataset.classify.infer_dataset.images_dir": str(settings.images_dir),
    }
    overrides.update({flag: False for flag in AUGMENT_FLAGS})
    fsutil.write_yaml(out_spec, tao_spec.deep_merge(inference_spec, overrides))
    hard_stopped = summary["hard_stop"]
    how = (f"chosen on validation{' (Phase 3 ' + ('passed' if gate['accept'] else 'failed') + ' the gate)' if gate else ''}"
           if settings.selects_on_validation else "lowest KPI FAR (TAO)")
    print(f"delivered model: {label} ({how}), KPI FAR@100% recall {entry['far_pct']:.2f}% ({entry['best_ckpt_path']})")
    state_hooks.commit(settings, "final_automl", "pick_best", 0.0,
                       f"delivered model {label} ({how}): KPI FAR {entry['far_pct']:.2f}%",
                       fields={"phase3_gate": gate} if gate else None,
                       state_updates={"status": "hard_stopped" if hard_stopped else "complete"})
