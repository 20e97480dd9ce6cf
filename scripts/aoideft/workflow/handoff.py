"""Rule preseed_deft: the Phase 1 -> Phase 2 handoff in the contract's four steps.

1. deep-merge Phase 1's winning parameters onto the workspace spec -> specs/baseline_spec_automl.yaml
2. copy the winning checkpoint to baseline/train/model_epoch_<EEE>_step_<SSS>.pth
3. initialise deft_state.json with iterations.baseline.stage_completed == "train" and the matching
   loop_log.jsonl entry ("baseline train skipped - reused Phase 1 AutoML winning checkpoint")
4. the DEFT loop then starts at baseline inference (rule deft_infer); no baseline training job exists.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import checkpoint as ckpt_io, fsutil, spec as tao_spec
from . import checkpoints, state_hooks
from .settings import RunSettings


def preseed(settings: RunSettings, outputs: dict[str, Path]) -> None:
    run = settings.run_dir
    best_rec = fsutil.read_json(run / "phase1_automl" / "best_rec.json")
    winner = best_rec["best"]
    # 1. merged spec: workspace spec + winning HPs (+ pinned values), dataset paths untouched.
    merged = tao_spec.with_overrides(tao_spec.load_spec(settings.spec_path), winner["specs"])
    fsutil.write_yaml(outputs["spec"], merged)
    # 2. the winning checkpoints under the names DEFT expects.
    rec_ckpts = checkpoints.checkpoint_paths(run / "phase1_automl" / "best_rec.json")
    train_dir = outputs["handoff"].parent
    names = {}
    for kind, source in rec_ckpts.items():
        name = ckpt_io.checkpoint_name(*ckpt_io.epoch_and_step(source))
        if kind == "latest" and name in names.values():
            name = name.replace(".pth", "_latest.pth")
        with fsutil.atomic_path(train_dir / name) as tmp:
            shutil.copyfile(source, tmp)
        names[kind] = name
    rec_result = fsutil.read_json(run / "phase1_automl" / f"rec{winner['rec_id']}" / "result.json")
    fsutil.write_json(outputs["handoff"], {
        "source": "automl_phase1",
        "rec_id": winner["rec_id"],
        "score": winner["score"],
        "metric_name": best_rec["metric_name"],
        "checkpoints": names,
        "train_metric": {"val_far_pct": rec_result.get("val_far_pct"), "val_loss": rec_result.get("val_loss")},
    })
    # 3. pre-seeded state and log.
    state_hooks.preseed_state(
        settings,
        state_path=outputs["state"],
        log_path=outputs["log"],
        best_ckpt_path=str((train_dir / names["best_val"]).relative_to(run)),
        train_metric={"val_far_pct": rec_result.get("val_far_pct"), "val_loss": rec_result.get("val_loss")},
        spec_path=str(outputs["spec"].relative_to(run)) if outputs["spec"].is_absolute() else str(outputs["spec"]),
        rec_id=winner["rec_id"],
    )
