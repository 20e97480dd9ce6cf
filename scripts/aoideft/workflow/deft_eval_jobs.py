"""The DEFT loop's model-side rules: inference, evaluation, embeddings, RCA and the accept-or-keep
decision, each reading its inputs from files and committing its result to the state and log.

With ``deft.kpi_holdout`` > 0 (the default) no choice of model reads the held-out half: an
iteration's checkpoint is chosen on validation (``kpi.selection_score``), and whether the iteration
replaces the incumbent on the targeting half and validation (``deft.gate``). The KPI set is scored
and reported on the whole set (TAO's figure), its targeting half (what RCA, the gate and the stop
rule read) and its held-out half (read by nothing in the loop). ``kpi_holdout: 0`` is TAO's
behaviour: checkpoints chosen by KPI FAR, every iteration accepted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import fsutil, holdout, kpi, kpi_report
from ..deft import failure_modes, gate, rca
from . import checkpoints, state_hooks
from .deft_common import fmt, lights_and_ext, prev_label, read_embeddings
from .loop import embeds_pool, iteration_number
from .settings import RunSettings, model_backend

HALVES = (holdout.TARGETING, holdout.HELD_OUT)


# ---- scoring: one pass per (checkpoint, CSV) ------------------------------------------------------
def _scored(path: Path, source: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    frame = kpi_report.read_inference_csv(path)
    return frame, kpi.defect_mask(frame["label"], source=source), kpi.parse_scores(frame[kpi.SCORE_COLUMN], source=source)


def choose_kind(settings: RunSettings, selection: dict[str, kpi.SelectionScore],
                kpi_far: dict[str, float]) -> str:
    """An iteration's checkpoint: the better validation selection score, or with TAO's behaviour the
    lower KPI FAR; ties go to best_val."""
    if settings.selects_on_validation:
        return min(selection, key=lambda k: (selection[k].key, k != "best_val"))
    return min(kpi_far, key=lambda k: (kpi_far[k], k != "best_val"))


def score(settings: RunSettings, it: str, manifest: Path, out_summary: Path,
          embeddings_summary: Path | None = None) -> None:
    """Score what the loop needs, each (checkpoint, CSV) in one forward pass: both checkpoints on
    validation, then the chosen one on the KPI set (with TAO's behaviour, both: the choice reads it)
    and, for loop iterations (``embeddings_summary``), on the pool, each with its embeddings. The
    pool pass is left out where no later iteration can mine it (``loop.embeds_pool``)."""
    started = time.time()
    run = settings.run_dir
    backend = model_backend(settings)
    ckpts = checkpoints.checkpoint_paths(manifest)
    files: dict[str, dict[str, str]] = {}
    for kind, ckpt in ckpts.items():
        kind_dir = out_summary.parent / kind
        backend.infer(ckpt, settings.validation_csv, settings.images_dir, kind_dir / "validation_inference.csv")
        files[kind] = {"checkpoint": str(ckpt.resolve().relative_to(run)),
                       "validation": str((kind_dir / "validation_inference.csv").relative_to(run))}
    selection = {kind: kpi.selection_score(*_scored(run / f["validation"], f["validation"])[1:])
                 for kind, f in files.items()}
    kpi_far: dict[str, float] = {}
    if not settings.selects_on_validation:
        for kind, ckpt in ckpts.items():
            kind_csv = out_summary.parent / kind / "inference.csv"
            backend.infer(ckpt, settings.kpi_csv, settings.images_dir, kind_csv)
            files[kind]["kpi"] = str(kind_csv.relative_to(run))
            kpi_far[kind] = kpi.operating_point_at_recall(*_scored(kind_csv, files[kind]["kpi"])[1:]).far_pct
    chosen = choose_kind(settings, selection, kpi_far)
    ckpt, kind_csv = ckpts[chosen], out_summary.parent / chosen / "inference.csv"
    with_pool = embeddings_summary is not None and embeds_pool(it, settings.deft["max_iterations"])
    if embeddings_summary is not None:
        emb_dir = embeddings_summary.parent
        backend.embed(ckpt, settings.kpi_csv, settings.images_dir, emb_dir / "kpi.npy",
                      scores_csv=None if kpi_far else kind_csv)
        if with_pool:
            backend.embed(ckpt, settings.pool_csv, settings.pool_images_dir, emb_dir / "pool.npy",
                          scores_csv=emb_dir / "pool_scores.csv")
    elif not kpi_far:
        backend.infer(ckpt, settings.kpi_csv, settings.images_dir, kind_csv)
    files[chosen]["kpi"] = str(kind_csv.relative_to(run))
    fsutil.write_json(out_summary, {"iteration": it, "chosen": chosen, "kinds": files})
    if embeddings_summary is not None:
        pool = {"pool": "pool.npy", "pool_scores": "pool_scores.csv"} if with_pool else {"pool": None, "pool_scores": None}
        fsutil.write_json(embeddings_summary, {
            "checkpoint": files[chosen]["checkpoint"], "checkpoint_sha256": fsutil.sha256_file(ckpt),
            "kpi": "kpi.npy", **pool})
    passes = [f"{kind}: validation" + (", KPI" if "kpi" in f else "") for kind, f in files.items()]
    state_hooks.commit(settings, it, "inference", time.time() - started,
                       f"scored {'; '.join(passes)}" + ("; the pool, with embeddings" if with_pool else "")
                       + f"; {chosen} chosen on {'validation' if settings.selects_on_validation else 'the KPI set'}")


# ---- evaluation ----------------------------------------------------------------------------------
def kpi_halves(settings: RunSettings, frame: pd.DataFrame) -> np.ndarray:
    """The held-out mask of a KPI frame (rows in the KPI CSV's order)."""
    return holdout.held_out_mask(frame, settings.kpi_holdout, settings.deft["kpi_holdout_group"],
                                 source=str(settings.kpi_csv))


def _half_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    deployable = metrics.get("deployable", {})
    return {"far_pct": metrics["far_pct"], "threshold": metrics["threshold"],
            "far_at_recall_99_9": metrics["far_at_recall_99_9"], "far_at_recall_99_5": metrics["far_at_recall_99_5"],
            "far_ci95": metrics["far_ci95"], "deployable_far_pct": deployable.get("far_pct"),
            "deployable_recall": deployable.get("recall"), "n_pass": metrics["n_pass"], "n_defect": metrics["n_defect"]}


def evaluate(settings: RunSettings, it: str, inference_summary: Path, out_best: Path) -> None:
    started = time.time()
    run = settings.run_dir
    summary = fsutil.read_json(inference_summary)
    kinds, best_kind = summary["kinds"], summary["chosen"]
    scored = {kind: {split: _scored(run / files[split], files[split]) for split in ("validation", "kpi") if split in files}
              for kind, files in kinds.items()}
    selection = {kind: kpi.selection_score(*data["validation"][1:]) for kind, data in scored.items()}
    kpi_far = {kind: kpi.operating_point_at_recall(*data["kpi"][1:]).far_pct for kind, data in scored.items()
               if "kpi" in data}
    bootstrap = settings.config["kpi"]["bootstrap"]
    out_dir = out_best.parent / best_kind
    validation = kpi_report.evaluate_frame(scored[best_kind]["validation"][0], source=kinds[best_kind]["validation"],
                                    bootstrap=0)
    calibration = validation.metrics["threshold"]
    kpi_frame = scored[best_kind]["kpi"][0]
    whole = kpi_report.evaluate_frame(kpi_frame, source=kinds[best_kind]["kpi"], bootstrap=bootstrap,
                               calibration_threshold=calibration)
    kpi_report.write_evaluation(whole, out_dir)
    kpi_report.write_evaluation(validation, out_dir / "validation")
    halves: dict[str, dict[str, Any]] = {}
    if settings.selects_on_validation:
        held_out = kpi_halves(settings, kpi_frame)
        for name, rows in ((holdout.TARGETING, ~held_out), (holdout.HELD_OUT, held_out)):
            half = kpi_report.evaluate_frame(kpi_frame[rows], source=f"{kinds[best_kind]['kpi']} ({name} half)",
                                      bootstrap=bootstrap, calibration_threshold=calibration)
            kpi_report.write_evaluation(half, out_dir / name)
            halves[name] = _half_summary(half.metrics)
    deployable = whole.metrics.get("deployable", {})
    chosen = selection[best_kind]
    best = {
        "iteration": it,
        "selection_basis": "validation" if settings.selects_on_validation else "kpi",
        "best_ckpt_kind": best_kind,
        "best_ckpt_path": kinds[best_kind]["checkpoint"],
        "far_pct": whole.metrics["far_pct"],
        "threshold": whole.metrics["threshold"],
        "far_pct_ci95": whole.metrics["far_pct_ci95"],
        "far_at_recall_99_9": whole.metrics["far_at_recall_99_9"],
        "deployable_far_pct": deployable.get("far_pct"),
        "deployable_recall": deployable.get("recall"),
        "deployable_threshold": deployable.get("threshold"),
        "val_far_pct": validation.metrics["far_pct"],
        "val_selection": {"expected_far_pct": chosen.expected_far_pct, "margin": chosen.margin, "value": chosen.value},
        # What the loop may read to stop: the targeting half, or with TAO's behaviour the whole KPI set.
        "loop_far_pct": halves[holdout.TARGETING]["far_pct"] if halves else whole.metrics["far_pct"],
        "kpi_halves": halves or None,
        "auroc": whole.metrics.get("auroc"),
        "inference_csv": kinds[best_kind]["kpi"],
        "validation_inference_csv": kinds[best_kind]["validation"],
        "evaluation_dir": str(out_dir.relative_to(run)),
        "by_kind": {k: {"far_pct": kpi_far.get(k), "val_expected_far_pct": selection[k].expected_far_pct,
                        "val_far_pct": selection[k].far_pct} for k in kinds},
    }
    fsutil.write_json(out_best, best)
    fields = {k: best[k] for k in ("best_ckpt_path", "best_ckpt_kind", "far_pct", "threshold", "inference_csv",
                                   "deployable_far_pct", "deployable_recall", "val_far_pct", "selection_basis")}
    fields["val_expected_far_pct"] = chosen.expected_far_pct
    if halves:
        fields["held_out_far_pct"] = halves[holdout.HELD_OUT]["far_pct"]
        fields["targeting_far_pct"] = halves[holdout.TARGETING]["far_pct"]
    held = f"; held-out half {fmt(halves[holdout.HELD_OUT]['far_pct'])}%" if halves else ""
    state_hooks.commit(settings, it, "evaluate", time.time() - started,
                       f"FAR@100% recall {best['far_pct']:.2f}% ({best_kind}, chosen on {best['selection_basis']})"
                       f"{held}; deployable {fmt(best['deployable_far_pct'])}% at recall {fmt(best['deployable_recall'])}",
                       fields=fields)


# ---- RCA ------------------------------------------------------------------------------------------
def targeting_rows(settings: RunSettings, inference: pd.DataFrame) -> pd.DataFrame:
    """The KPI rows the loop may target: all of them with TAO's behaviour, else the targeting half."""
    if not settings.selects_on_validation:
        return inference
    return inference[~kpi_halves(settings, inference)].reset_index(drop=True)


def run_rca(settings: RunSettings, it: str, best_path: Path, out_metrics: Path) -> None:
    started = time.time()
    best = fsutil.read_json(best_path)
    lights, ext = lights_and_ext(settings)
    # As text: a zero-padded object_name ('000019') must stay the key the embeddings were written with.
    inference = targeting_rows(settings, kpi_report.read_inference_csv(settings.run_dir / best["inference_csv"]))
    result = rca.analyse(inference, lights=lights, images_dir=settings.images_dir, image_ext=ext,
                         top_k_per_label=settings.deft["top_k_per_label"])
    rca.write_rca(result, out_metrics.parent)
    mode_settings = failure_modes.ModeSettings.from_config(settings.deft["failure_modes"], settings.deft_seed,
                                                           missed_weight=settings.deft["budget"]["defect_share"])
    kpi_emb, kpi_keys = read_embeddings(settings.run_dir / it / "embeddings" / "kpi.npy")
    modes = failure_modes.find_modes(inference, target_far_pct=settings.kpi_target, settings=mode_settings,
                                     embeddings=kpi_emb, embedding_keys=kpi_keys,
                                     columns=settings.deft["failure_modes"]["columns"], source=best["inference_csv"])
    failure_modes.write_modes(modes, out_metrics.parent, mode_settings)
    for mode in modes.modes:
        print(f"failure mode {mode['id']}: {mode['size']} weak rows, {mode['share']:.0%} of its side")
    metrics = fsutil.read_json(out_metrics)
    rows = "the targeting half's" if settings.selects_on_validation else "the KPI set's"
    state_hooks.commit(settings, it, "rca", time.time() - started,
                       f"{len(result.gaps)} weak (row, light) samples of {rows} {len(inference)} rows; targets "
                       f"{', '.join(metrics.get('target_defects', [])) or 'none'}; {len(modes.modes)} failure modes",
                       fields={"rca_target_defects": metrics.get("target_defects", []),
                               "rca_gaps_parquet": str((out_metrics.parent / "kpi_gaps.parquet").relative_to(settings.run_dir))})


# ---- the accept-or-keep decision and the stop rule -----------------------------------------------
def gate_against(settings: RunSettings, incumbent_best: dict[str, Any], candidate_best: dict[str, Any],
                 seed: int) -> gate.GateResult:
    """The gate between two evaluated models (their chosen checkpoints' scores): on validation, and with
    ``deft.gate.basis: targeting`` on the KPI targeting half too."""
    run = settings.run_dir
    cfg = settings.deft["gate"]

    def paired(csv_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
        incumbent = _scored(run / incumbent_best[csv_key], incumbent_best[csv_key])
        candidate = _scored(run / candidate_best[csv_key], candidate_best[csv_key])
        if not incumbent[0]["object_name"].equals(candidate[0]["object_name"]):
            raise ValueError(f"the two models' {csv_key} files list different rows: "
                             f"{incumbent_best[csv_key]}, {candidate_best[csv_key]}")
        return incumbent[1], incumbent[2], candidate[2], incumbent[0]

    validation = paired("validation_inference_csv")[:3]
    targeting = None
    if cfg["basis"] == "targeting":
        is_defect, incumbent_scores, candidate_scores, frame = paired("inference_csv")
        rows = ~kpi_halves(settings, frame)
        targeting = (is_defect[rows], incumbent_scores[rows], candidate_scores[rows])
    return gate.compare(validation, targeting, resamples=cfg["resamples"], confidence=cfg["confidence"], seed=seed)


def decide(settings: RunSettings, it: str, best_path: Path, rca_metrics: Path, out_decision: Path) -> None:
    """Accept the iteration or keep the incumbent (the gate), then the stop rule on the incumbent."""
    run = settings.run_dir
    best = fsutil.read_json(best_path)
    n = iteration_number(it)
    incumbent, previous, verdict = it, None, None
    if n > 0:
        previous = fsutil.read_json(run / prev_label(n) / "decision.json")["incumbent"]
        if settings.selects_on_validation:
            verdict = gate_against(settings, fsutil.read_json(run / previous / "evaluate" / "best.json"), best,
                                   seed=settings.deft_seed + n)
            print(verdict.message(it, previous))
            incumbent = it if verdict.accept else previous
    incumbent_best = best if incumbent == it else fsutil.read_json(run / incumbent / "evaluate" / "best.json")
    decision = decide_stop(far_pct=incumbent_best["loop_far_pct"], target=settings.kpi_target, iteration=n,
                           max_iterations=settings.deft["max_iterations"],
                           unreachable=bool(fsutil.read_json(rca_metrics).get("unreachable")))
    decision.update({"iteration": it, "far_pct": best["far_pct"], "kpi_target_far_pct": settings.kpi_target,
                     "accepted": incumbent == it, "incumbent": incumbent,
                     "incumbent_loop_far_pct": incumbent_best["loop_far_pct"],
                     "gate": verdict.as_dict() if verdict else None})
    fsutil.write_json(out_decision, decision)
    print(decision["message"])
    summary = f"{verdict.message(it, previous)}; " if verdict else ""
    state_hooks.commit(settings, it, "loop_stop", 0.0, summary + decision["message"],
                       fields={"decision": decision["reason"] if decision["stop"] else "continue",
                               "accepted": decision["accepted"], "incumbent": incumbent,
                               "gate": decision["gate"]},
                       state_updates={"current_iteration": n})
    state_hooks.render_interim_report(settings)


def decide_stop(*, far_pct: float, target: float, iteration: int, max_iterations: int,
                unreachable: bool) -> dict[str, Any]:
    """The loop's stop rule on the incumbent's loop FAR, in the order that matters: KPI met, unreachable, budget."""
    if far_pct <= target:
        return {"stop": True, "hard_stop": False, "reason": "kpi_met",
                "message": f"KPI met: FAR@100% recall {far_pct:.2f}% <= {target}%"}
    if unreachable:
        return {"stop": True, "hard_stop": True, "reason": "unreachable_kpi",
                "message": "hard stop: 100% recall is unreachable on the KPI set (see rca/unreachable_kpi.txt)"}
    if iteration >= max_iterations:
        return {"stop": True, "hard_stop": False, "reason": "max_iterations",
                "message": f"max iterations reached ({max_iterations}); FAR {far_pct:.2f}% vs target {target}%"}
    return {"stop": False, "hard_stop": False, "reason": "continue",
            "message": f"continue: FAR {far_pct:.2f}% > target {target}%"}
