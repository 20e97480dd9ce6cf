"""Rules automl_suggest / automl_train / automl_select for Phase 1 and Phase 3.

Phase 1 trains on the workspace's base training set from scratch. Phase 3 trains on the DEFT
loop's final training CSV, starts from Phase 1's winning spec (its first trial is exactly that
spec) and warm-starts every trial from the lowest-FAR DEFT iteration, with the architecture width
pinned so the warm start always loads.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import automl, automl_space, fsutil, spec as tao_spec
from ..errors import InputError
from . import checkpoints, state_hooks
from .settings import RunSettings, model_backend

PHASE1, PHASE3 = "phase1_automl", "final_automl"
WIDTH_KEY = "model.classify.learnable_difference_modules"
LR_KEY = "train.optim.lr"


# Each phase's block of the config's automl section.
PHASE_BLOCKS = {PHASE1: "phase1", PHASE3: "phase3"}


def phase_block(settings: RunSettings, phase: str) -> dict[str, Any]:
    return settings.automl[PHASE_BLOCKS[phase]]


def base_spec(settings: RunSettings, phase: str) -> dict[str, Any]:
    if phase == PHASE1:
        return tao_spec.load_spec(settings.spec_path)
    return tao_spec.load_spec(settings.run_dir / "specs" / "baseline_spec_automl.yaml")


def pinned_params(settings: RunSettings, phase: str) -> dict[str, Any]:
    pinned = dict(settings.automl["pinned"])
    if phase == PHASE3:
        spec = base_spec(settings, PHASE3)
        pinned[WIDTH_KEY] = tao_spec.get_dotted(spec, WIDTH_KEY, 4)
        epochs = settings.automl["phase3"]["num_epochs"]
        if epochs is not None:
            pinned["train.num_epochs"] = epochs
    return pinned


def search_space(settings: RunSettings, phase: str) -> list[automl_space.SearchParam]:
    schema = automl_space.load_train_schema()
    # TAO honours every key; only the embedded model leaves some without effect.
    ignored = tao_spec.EMBEDDED_IGNORED_KEYS if settings.config["backend"] == "embedded" else frozenset()
    entries = settings.automl["search_space"] or automl_space.default_search_space(schema, ignored=frozenset(ignored))
    pinned = pinned_params(settings, phase)
    entries = [e for e in entries if e["parameter"] not in pinned]
    space = automl_space.parse_search_space(entries, schema, pinned)
    if phase == PHASE3 and settings.automl["phase3"]["lr_at_most_warm_start"]:
        space = [_lr_at_most(p, float(tao_spec.get_dotted(base_spec(settings, PHASE3), LR_KEY))) if p.name == LR_KEY
                 else p for p in space]
    return space


def _lr_at_most(param: automl_space.SearchParam, rate: float) -> automl_space.SearchParam:
    """The learning rate's range cut at ``rate``, the rate Phase 1's winner trained at: Phase 3's trials
    fine-tune that model, and above it over a third of them collapsed. It did not make the delivered
    models better in the ablation, so it is an option (benchmarks/README.md, "Phase 3's learning rate")."""
    low, high = param.bounds
    high = min(high, rate)
    return replace(param, low=min(low, high), high=high)


def first_trial_params(settings: RunSettings, phase: str, space) -> dict[str, Any]:
    """Phase 1 starts from the workspace spec's own values, Phase 3 from Phase 1's winner."""
    if phase == PHASE1:
        spec = base_spec(settings, PHASE1)
        params = {p.name: tao_spec.get_dotted(spec, p.name) for p in space}
    else:
        winner = fsutil.read_json(settings.run_dir / PHASE1 / "best_rec.json")["best"]["specs"]
        params = {p.name: winner.get(p.name) for p in space}
    return {k: v for k, v in params.items() if v is not None}


def phase_counts(settings: RunSettings, phase: str) -> tuple[int, int]:
    """(max_recommendations, max_concurrent) of a phase."""
    block = phase_block(settings, phase)
    return block["max_recommendations"], block["max_concurrent"]


def suggest(settings: RunSettings, phase: str, round_index: int, out_path: Path) -> None:
    space = search_space(settings, phase)
    total, concurrent = phase_counts(settings, phase)
    rec_ids = automl.round_rec_ids(round_index, concurrent, total)
    # Every rec of the earlier rounds: the study is rebuilt from their result files.
    finished = automl.read_rec_records(settings.run_dir / phase, range(rec_ids[0]),
                                       metric=settings.automl["metric"])
    proposals = automl.propose_round(
        space,
        finished,
        rec_ids,
        algorithm=settings.automl["algorithm"],
        seed=settings.automl["seed"] + (0 if phase == PHASE1 else 1000),
        direction="minimize",
        first_params=first_trial_params(settings, phase, space) if round_index == 0 else None,
    )
    for proposal in proposals:
        print(f"{phase} rec{proposal['rec_id']}: {proposal['params']}")
    automl.write_proposals(out_path, proposals)


def training_data(settings: RunSettings, phase: str) -> tuple[Path, Path, Path | None]:
    """(train CSV, its images dir, warm-start checkpoint) for a phase."""
    if phase == PHASE1:
        return settings.train_csv, settings.images_dir, None
    summary = fsutil.read_json(settings.run_dir / "deft" / "summary.json")
    return (
        settings.run_dir / summary["final_training_csv"],
        settings.run_dir / summary["final_training_images_dir"],
        settings.run_dir / summary["best"]["best_ckpt_path"],
    )


def rec_spec(settings: RunSettings, phase: str, params: dict[str, Any]) -> dict[str, Any]:
    train_csv, train_images, warm_start = training_data(settings, phase)
    overrides = {**params, **pinned_params(settings, phase)}
    overrides.update(
        {
            "dataset.classify.train_dataset.csv_path": str(train_csv),
            "dataset.classify.train_dataset.images_dir": str(train_images),
            "dataset.classify.validation_dataset.csv_path": str(settings.validation_csv),
            "dataset.classify.validation_dataset.images_dir": str(settings.images_dir),
            "train.pretrained_model_path": str(warm_start) if warm_start else None,
        }
    )
    return tao_spec.with_overrides(base_spec(settings, phase), overrides)


def is_collapsed(summary: dict[str, Any], metric: str) -> bool:
    """A recommendation that predicts one class only, judged where the metric looks.

    With val_loss (TAO's pitfall) that is the argmax prediction: a PASS-everything model can have a
    low loss. With FAR@100% recall it is the operating point itself: flagging every validation row
    (FAR 100%) means the scores do not separate the classes. A short run whose argmax still says
    PASS everywhere but whose scores rank the defects first is not collapsed for that metric.
    """
    if metric == "val_loss":
        return bool(summary.get("collapsed", False))
    far = summary.get("best_val_far_pct")
    return far is None or far >= 100.0


def train_rec(settings: RunSettings, phase: str, rec_id: int, proposals_path: Path, out_path: Path) -> None:
    proposal = next((p for p in automl.read_proposals(proposals_path) if p["rec_id"] == rec_id), None)
    if proposal is None:
        raise InputError(f"{proposals_path}: no proposal for rec{rec_id}")
    rec_dir = out_path.parent
    spec = rec_spec(settings, phase, proposal["params"])
    fsutil.write_yaml(rec_dir / "spec.yaml", spec)
    summary = model_backend(settings).train(spec, rec_dir / "train")
    metric = settings.automl["metric"]
    result = {
        "rec_id": rec_id,
        "phase": phase,
        "status": "complete",
        "params": proposal["params"],
        "metric_name": metric,
        "score": summary.get(f"best_{metric}", summary.get(metric)),
        "val_selection": summary.get("best_val_selection"),
        "val_far_pct": summary.get("best_val_far_pct"),
        "val_loss": summary.get("best_val_loss"),
        "collapsed": is_collapsed(summary, metric),
        "checkpoints": checkpoints.relative_block(
            checkpoints.checkpoint_paths(rec_dir / "train" / "train_summary.json"), rec_dir
        ),
        "train_summary": summary,
    }
    fsutil.write_json(out_path, result)


def select(settings: RunSettings, phase: str, outputs: dict[str, Path]) -> None:
    phase_dir = settings.run_dir / phase
    summary = fsutil.read_json(settings.run_dir / "deft" / "summary.json") if phase == PHASE3 else None
    if summary is not None and summary["phase3"]["skip"]:
        message = (f"Phase 3 skipped: the DEFT loop hard-stopped ({summary['stop_reason']}); "
                   f"final_automl/best.pth is the best DEFT checkpoint ({summary['best']['iteration']})")
        _deliver_deft_checkpoint(settings, outputs, summary, message)
        state_hooks.note_phase3_skipped(settings, message)
        return
    total, _ = phase_counts(settings, phase)
    records = automl.read_rec_records(phase_dir, list(range(total)), metric=settings.automl["metric"])
    try:
        best = automl.select_best(records, "minimize")
    except InputError as error:
        if summary is None:
            raise  # Phase 1 has nothing else to deliver
        # Phase 3 refines a model the loop already delivered: its trials all collapsing leaves that one.
        message = (f"Phase 3 found no winner ({error}); final_automl/best.pth is the DEFT loop's delivered "
                   f"checkpoint ({summary['best']['iteration']})")
        _deliver_deft_checkpoint(settings, outputs, summary, message)
        state_hooks.note_phase3_without_winner(settings, message, str(outputs["checkpoint"].relative_to(settings.run_dir)))
        return
    rec_dir = phase_dir / f"rec{best.rec_id}"
    ckpts = checkpoints.checkpoint_paths(rec_dir / "result.json")
    with fsutil.atomic_path(outputs["checkpoint"]) as tmp:
        shutil.copyfile(ckpts["best_val"], tmp)
    fsutil.write_yaml(outputs["spec"], tao_spec.load_spec(rec_dir / "spec.yaml"))
    result = fsutil.read_json(rec_dir / "result.json")
    document = automl.best_rec_document(
        best,
        metric_name=settings.automl["metric"],
        direction="minimize",
        specs={**best.params, **pinned_params(settings, phase)},
        checkpoint_uri=str(outputs["checkpoint"].relative_to(settings.run_dir)),
        observed_budget={"num_epochs": result["train_summary"].get("epochs_run")},
        phase=phase,
        records=records,
    )
    document["checkpoints"] = checkpoints.relative_block(ckpts, outputs["best_rec"].parent)
    print(f"{phase}: best rec{best.rec_id} score {best.score}")
    fsutil.write_json(outputs["best_rec"], document)
    if phase == PHASE3:
        state_hooks.register_final_automl(settings, document)


def _deliver_deft_checkpoint(settings: RunSettings, outputs: dict[str, Path], summary: dict[str, Any],
                             message: str) -> None:
    """Phase 3's outputs hold the DEFT loop's delivered checkpoint (``summary``: deft/summary.json;
    ``message`` says why): the loop hard-stopped, or no Phase 3 trial can win."""
    best_ckpt = settings.run_dir / summary["best"]["best_ckpt_path"]
    with fsutil.atomic_path(outputs["checkpoint"]) as tmp:
        shutil.copyfile(best_ckpt, tmp)
    fsutil.write_yaml(outputs["spec"], base_spec(settings, PHASE3))
    print(message)
    fsutil.write_json(outputs["best_rec"], {
        "schema_version": 1, "phase": PHASE3, "skipped": True, "message": message,
        "metric_name": settings.automl["metric"], "direction": "minimize",
        "best": {"rec_id": None, "score": None, "specs": {}, "observed_budget": {},
                 "checkpoint_uri": str(outputs["checkpoint"].relative_to(settings.run_dir))},
        "checkpoints": {"best_val": "best.pth", "latest": "best.pth"},
    })
