"""Rule pick_best (TAO's `_pick_best`): the lowest-FAR model of the whole run, and its inference spec."""

from __future__ import annotations

from pathlib import Path

from .. import fsutil, spec as tao_spec, state
from . import state_hooks
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


def pick_best(settings: RunSettings, out_model: Path, out_spec: Path) -> None:
    run = settings.run_dir
    summary = fsutil.read_json(run / "deft" / "summary.json")
    current = state.read_state(run / state_hooks.STATE_FILE)
    label, entry = state.pick_best(current)
    spec_rel = training_spec_path(label)
    document = state.best_model_document(current, label, spec_rel)
    fsutil.write_json(out_model, document)
    inference_spec = tao_spec.load_spec(run / spec_rel)
    overrides = {
        "model.classify.eval_margin": float(entry["threshold"]),
        "dataset.classify.augmentation_config.augment": False,
        "inference.checkpoint": str(run / entry["best_ckpt_path"]),
        "dataset.classify.infer_dataset.csv_path": str(settings.kpi_csv),
        "dataset.classify.infer_dataset.images_dir": str(settings.images_dir),
    }
    overrides.update({flag: False for flag in AUGMENT_FLAGS})
    fsutil.write_yaml(out_spec, tao_spec.deep_merge(inference_spec, overrides))
    hard_stopped = summary["hard_stop"]
    print(f"best model: {label} FAR@100% recall {entry['far_pct']:.2f}% ({entry['best_ckpt_path']})")
    state_hooks.commit(settings, "final_automl", "pick_best", 0.0,
                       f"best model {label}: FAR {entry['far_pct']:.2f}%",
                       state_updates={"status": "hard_stopped" if hard_stopped else "complete"})
