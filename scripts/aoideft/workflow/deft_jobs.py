"""The DEFT loop's rules: one function per stage, each reading its inputs from files, calling the
stage module (aoideft.deft.*) and committing its result to deft_state.json / loop_log.jsonl."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import csvdata, fsutil, kpi, spec as tao_spec, state
from ..deft import assemble, failure_modes, mining, rca, routing, sdg
from ..errors import InputError
from . import checkpoints, state_hooks
from .loop import walk_loop
from .settings import RunSettings, model_backend


def iteration_number(label: str) -> int:
    return 0 if label == "baseline" else int(label[len("iter"):])


def prev_label(n: int) -> str:
    return state.iteration_label(n - 1)


def _lights_and_ext(settings: RunSettings) -> tuple[tuple[str, ...], str]:
    record = fsutil.read_json(settings.run_dir / "inputs" / "workspace.json")
    return tuple(record["lights"]), record["image_ext"]


def _read(csv_path: Path, images_dir: Path, settings: RunSettings, source: str, check_files=False):
    lights, ext = _lights_and_ext(settings)
    return csvdata.read_pairs_csv(csv_path, images_dir=images_dir, lights=lights, image_ext=ext,
                                  check_files=check_files, source=source)


# ---- inference / evaluate / RCA (baseline, iterations, final_automl) ------------------------
def infer(settings: RunSettings, it: str, manifest: Path, out_summary: Path) -> None:
    started = time.time()
    ckpts = checkpoints.checkpoint_paths(manifest)
    backend = model_backend(settings)
    files: dict[str, dict[str, str]] = {}
    for kind, ckpt in ckpts.items():
        kind_dir = out_summary.parent / kind
        backend.infer(ckpt, settings.kpi_csv, settings.images_dir, kind_dir / "inference.csv")
        backend.infer(ckpt, settings.validation_csv, settings.images_dir,
                      kind_dir / "validation_inference.csv")
        files[kind] = {
            "checkpoint": str(ckpt.resolve().relative_to(settings.run_dir)),
            "kpi": str((kind_dir / "inference.csv").relative_to(settings.run_dir)),
            "validation": str((kind_dir / "validation_inference.csv").relative_to(settings.run_dir)),
        }
    fsutil.write_json(out_summary, {"iteration": it, "kinds": files})
    state_hooks.commit(settings, it, "inference", time.time() - started,
                       f"inference of {', '.join(files)} checkpoints on KPI and validation")


def evaluate(settings: RunSettings, it: str, inference_summary: Path, out_best: Path) -> None:
    started = time.time()
    run = settings.run_dir
    kinds = fsutil.read_json(inference_summary)["kinds"]
    bootstrap = settings.config["kpi"]["bootstrap"]
    results: dict[str, dict[str, Any]] = {}
    for kind, files in kinds.items():
        validation = kpi.evaluate_frame(pd.read_csv(run / files["validation"], keep_default_na=False),
                                        source=files["validation"], bootstrap=0)
        kpi_eval = kpi.evaluate_frame(
            pd.read_csv(run / files["kpi"], keep_default_na=False), source=files["kpi"],
            bootstrap=bootstrap, calibration_threshold=validation.metrics["threshold"],
        )
        kpi.write_evaluation(kpi_eval, out_best.parent / kind)
        kpi.write_evaluation(validation, out_best.parent / kind / "validation")
        results[kind] = {"kpi": kpi_eval.metrics, "validation": validation.metrics}
    # TAO's rule: the checkpoint with the lower KPI far_pct is the iteration's best (ties: best_val).
    best_kind = min(results, key=lambda k: (results[k]["kpi"]["far_pct"], k != "best_val"))
    chosen = results[best_kind]
    deployable = chosen["kpi"].get("deployable", {})
    best = {
        "iteration": it,
        "best_ckpt_kind": best_kind,
        "best_ckpt_path": kinds[best_kind]["checkpoint"],
        "far_pct": chosen["kpi"]["far_pct"],
        "threshold": chosen["kpi"]["threshold"],
        "far_pct_ci95": chosen["kpi"].get("far_pct_ci95"),
        "deployable_far_pct": deployable.get("far_pct"),
        "deployable_recall": deployable.get("recall"),
        "deployable_threshold": deployable.get("threshold"),
        "val_far_pct": chosen["validation"]["far_pct"],
        "auroc": chosen["kpi"].get("auroc"),
        "inference_csv": kinds[best_kind]["kpi"],
        "validation_inference_csv": kinds[best_kind]["validation"],
        "evaluation_dir": str((out_best.parent / best_kind).relative_to(run)),
        "by_kind": {k: {"far_pct": v["kpi"]["far_pct"], "val_far_pct": v["validation"]["far_pct"]}
                    for k, v in results.items()},
    }
    fsutil.write_json(out_best, best)
    fields = {k: best[k] for k in ("best_ckpt_path", "best_ckpt_kind", "far_pct", "threshold",
                                   "inference_csv", "deployable_far_pct", "deployable_recall",
                                   "val_far_pct")}
    state_hooks.commit(settings, it, "evaluate", time.time() - started,
                       f"FAR@100% recall {best['far_pct']:.2f}% ({best_kind}); deployable "
                       f"{_fmt(best['deployable_far_pct'])}% at recall {_fmt(best['deployable_recall'])}",
                       fields=fields)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}"


def run_rca(settings: RunSettings, it: str, best_path: Path, out_metrics: Path) -> None:
    started = time.time()
    best = fsutil.read_json(best_path)
    lights, ext = _lights_and_ext(settings)
    inference = pd.read_csv(settings.run_dir / best["inference_csv"], keep_default_na=False)
    result = rca.analyse(inference, lights=lights, images_dir=settings.images_dir, image_ext=ext,
                         top_k_per_label=settings.deft["top_k_per_label"])
    rca.write_rca(result, out_metrics.parent)
    mode_settings = failure_modes.ModeSettings.from_config(settings.deft["failure_modes"], settings.deft_seed)
    kpi_emb, kpi_keys = _embeddings(settings.run_dir / it / "embeddings" / "kpi.npy")
    modes = failure_modes.find_modes(inference, target_far_pct=settings.kpi_target, settings=mode_settings,
                                     embeddings=kpi_emb, embedding_keys=kpi_keys,
                                     columns=settings.deft["failure_modes"]["columns"], source=best["inference_csv"])
    failure_modes.write_modes(modes, out_metrics.parent, mode_settings)
    for mode in modes.modes:
        print(f"failure mode {mode['id']}: {mode['size']} weak rows, {mode['share']:.0%} of its side")
    metrics = fsutil.read_json(out_metrics)
    state_hooks.commit(settings, it, "rca", time.time() - started,
                       f"{len(result.gaps)} weak (row, light) samples; targets "
                       f"{', '.join(metrics.get('target_defects', [])) or 'none'}; {len(modes.modes)} failure modes",
                       fields={"rca_target_defects": metrics.get("target_defects", []),
                               "rca_gaps_parquet": str((out_metrics.parent / "kpi_gaps.parquet").relative_to(settings.run_dir))})


# ---- the stop decision ------------------------------------------------------------------------
def decide(settings: RunSettings, it: str, best_path: Path, rca_metrics: Path,
           earlier: list[Path], out_decision: Path) -> None:
    best = fsutil.read_json(best_path)
    rca_result = fsutil.read_json(rca_metrics)
    n = iteration_number(it)
    target = settings.kpi_target
    tolerance = settings.deft["regression_tolerance_pp"]
    earlier_val = [fsutil.read_json(p).get("val_far_pct") for p in earlier]
    earlier_val = [v for v in earlier_val if v is not None]
    decision = decide_stop(
        far_pct=best["far_pct"], target=target, iteration=n,
        max_iterations=settings.deft["max_iterations"],
        unreachable=bool(rca_result.get("unreachable")),
        val_far_pct=best.get("val_far_pct"), best_earlier_val=min(earlier_val) if earlier_val else None,
        regression_tolerance_pp=tolerance,
    )
    decision.update({"iteration": it, "far_pct": best["far_pct"], "kpi_target_far_pct": target})
    fsutil.write_json(out_decision, decision)
    print(decision["message"])
    state_hooks.commit(settings, it, "loop_stop", 0.0, decision["message"],
                       fields={"decision": decision["reason"] if decision["stop"] else "continue"},
                       state_updates={"current_iteration": n})
    state_hooks.render_interim_report(settings)


def decide_stop(*, far_pct: float, target: float, iteration: int, max_iterations: int,
                unreachable: bool, val_far_pct: float | None, best_earlier_val: float | None,
                regression_tolerance_pp: float | None) -> dict[str, Any]:
    """The loop's stop rule, in the order that matters: KPI met, unreachable, regression, budget."""
    if far_pct <= target:
        return {"stop": True, "hard_stop": False, "reason": "kpi_met",
                "message": f"KPI met: FAR@100% recall {far_pct:.2f}% <= {target}%"}
    if unreachable:
        return {"stop": True, "hard_stop": True, "reason": "unreachable_kpi",
                "message": "hard stop: 100% recall is unreachable on the KPI set (see rca/unreachable_kpi.txt)"}
    if (iteration > 0 and regression_tolerance_pp is not None and val_far_pct is not None
            and best_earlier_val is not None and val_far_pct > best_earlier_val + regression_tolerance_pp):
        return {"stop": True, "hard_stop": False, "reason": "regression",
                "message": f"regression gate: validation FAR {val_far_pct:.2f}% is worse than the best so far "
                           f"({best_earlier_val:.2f}%) by more than {regression_tolerance_pp}pp"}
    if iteration >= max_iterations:
        return {"stop": True, "hard_stop": False, "reason": "max_iterations",
                "message": f"max iterations reached ({max_iterations}); FAR {far_pct:.2f}% vs target {target}%"}
    return {"stop": False, "hard_stop": False, "reason": "continue",
            "message": f"continue: FAR {far_pct:.2f}% > target {target}%"}


# ---- per-iteration data stages ---------------------------------------------------------------
def _require_continue(settings: RunSettings, n: int) -> None:
    decision = fsutil.read_json(settings.run_dir / prev_label(n) / "decision.json")
    if decision["stop"]:
        raise InputError(f"{prev_label(n)}/decision.json stopped the loop ({decision['reason']}): "
                         f"there is no iteration {n} to run")


ROUTED_BY_MODES, ROUTED_BY_LABELS = "modes", "labels"
PLAN_FILE = "routing_plan.json"


def route(settings: RunSettings, n: int, out_summary: Path) -> None:
    started = time.time()
    _require_continue(settings, n)
    state_hooks.start_iteration(settings, n)
    rca_dir = settings.run_dir / prev_label(n) / "rca"
    pool = _read(settings.pool_csv, settings.pool_images_dir, settings, "mining pool CSV")
    out_dir = out_summary.parent
    result = _route_by_modes(settings, n, rca_dir, pool, out_dir) if settings.deft["engine"] == "failure_modes" else None
    if result is None:  # engine tao, or no failure mode to route to
        result = routing.route_by_label(rca.read_gaps(rca_dir), sdg_labels=sdg_labels(settings),
                                        pool_labels=set(pool["label"]))
    if settings.deft["engine"] == "tao":
        fsutil.write_json(out_dir / PLAN_FILE, {"engine": "tao", "routed_by": ROUTED_BY_LABELS, "status": "labels",
                                                "message": "TAO's label routing"})
    routing.write_routing(result, out_dir)
    plan = fsutil.read_json(out_dir / PLAN_FILE)
    it = f"iter{n}"
    state_hooks.commit(settings, it, "routing", time.time() - started,
                       f"{len(result.sdg)} to SDG, {len(result.mining)} to mining, {len(result.dropped)} dropped "
                       f"(routed by {plan['routed_by']}{'; ' + plan['message'] if plan['message'] else ''})",
                       fields={f"routing_{k}_parquet": str((out_summary.parent / f"routing_{k}.parquet").relative_to(settings.run_dir))
                               for k in ("sdg", "mining", "dropped")},
                       state_updates={"current_iteration": n})


def routed_by(settings: RunSettings, n: int) -> str:
    return fsutil.read_json(settings.run_dir / f"iter{n}" / "routing" / PLAN_FILE)["routed_by"]


def _route_by_modes(settings: RunSettings, n: int, rca_dir: Path, pool: pd.DataFrame,
                    out_dir: Path) -> routing.Routing | None:
    """The budgeted integer program over the failure modes; None (label routing) when there is no mode."""
    modes, targets = failure_modes.read_modes(rca_dir)
    available = mining.rows_per_mode(_mine_targets(settings, n, targets, pool))
    demands = [routing.ModeDemand(m["id"], m["weight"], m["size"], available.get(m["id"], 0)) for m in modes]
    previous, provenance = previous_training(settings, n)
    budget_cfg, routing_cfg = settings.deft["budget"], settings.deft["routing"]
    # The customer's pre-generated pairs this iteration will ingest come first: the plan gets what they leave.
    reserved = _pregenerated_pending(settings, n)
    budget = routing.Budget(
        max_new_rows=max(0, budget_cfg["max_new_rows"] - reserved), sdg_rows=settings.deft["sdg"]["num_sdg"],
        compute_s=budget_cfg["compute_s"], sdg_row_cost_s=budget_cfg["sdg_row_cost_s"],
        row_train_cost_s=budget_cfg["row_train_cost_s"], max_synthetic_share=budget_cfg["max_synthetic_share"],
        previous_rows=len(previous) + reserved, previous_synthetic_rows=_synthetic_rows(provenance) + reserved)
    plan = routing.plan_rows(demands, budget, rows_per_weak_row=routing_cfg["rows_per_weak_row"],
                             synthetic_value=routing_cfg["synthetic_value"])
    by_labels = plan.status == "no_modes"
    message = plan.message + ("; fallback: TAO's label routing" if by_labels else "")
    if message:
        print(f"routing: {message}")
    routing.write_plan(plan, demands, budget, out_dir, engine="failure_modes", message=message,
                       routed_by=ROUTED_BY_LABELS if by_labels else ROUTED_BY_MODES, pregenerated_reserved=reserved)
    if by_labels:
        return None
    served = {mode for mode, rows in plan.rows.items() if rows["sdg"] or rows["mining"]}
    return routing.Routing(
        sdg=routing.mode_targets(targets, plan, "sdg"),
        mining=routing.mode_targets(targets, plan, "mining"),
        dropped=targets[~targets["failure_mode"].isin(served)].assign(
            drop_reason="its failure mode got no rows within the budgets").reset_index(drop=True),
    )


def _ingests_pregenerated(settings: RunSettings) -> bool:
    return bool(settings.deft["sdg"]["ingest_pregenerated"]) and settings.synthetic_dir.is_dir()


def _pregenerated_pending(settings: RunSettings, n: int) -> int:
    """Pre-generated pairs iteration n's SDG stage will ingest (complete, not ingested before)."""
    if not _ingests_pregenerated(settings):
        return 0
    lights, ext = _lights_and_ext(settings)
    history = sdg.ingested_before(settings.run_images, n, lights=lights, image_ext=ext)
    return len(sdg.pregenerated_to_ingest(settings.synthetic_dir, lights=lights, image_ext=ext, history=history)[0])


def _synthetic_rows(provenance: pd.DataFrame | None) -> int:
    return 0 if provenance is None else int((provenance["source"] == assemble.SYNTHETIC).sum())


def previous_training(settings: RunSettings, n: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training CSV iteration n builds on and its provenance; for n == 1 the workspace's base CSV
    as written (paths relative to the workspace image root) and no provenance."""
    if n == 1:
        return _read(settings.train_csv, settings.images_dir, settings, "base training CSV"), None
    folder = settings.run_dir / f"iter{n - 1}" / "dataset"
    return (pd.read_csv(folder / f"train_combined_iter{n - 1}.csv", dtype=str, keep_default_na=False),
            pd.read_csv(folder / f"train_combined_iter{n - 1}_provenance.csv", dtype=str, keep_default_na=False))


def sdg_labels(settings: RunSettings) -> set[str]:
    """deft.sdg.labels, or (null) every label the workspace has examples of (inputs/workspace.json)."""
    datasets = fsutil.read_json(settings.run_dir / "inputs" / "workspace.json")["datasets"]
    return sdg.routed_labels(settings.deft["sdg"]["labels"], datasets)


def run_sdg(settings: RunSettings, n: int, out_rows: Path) -> None:
    started = time.time()
    lights, ext = _lights_and_ext(settings)
    out_dir = out_rows.parent
    targets = pd.read_parquet(out_dir.parent / "routing" / "routing_sdg.parquet")
    sources, provenance = previous_training(settings, n)
    if provenance is None:  # the base CSV: address its images through <run>/images like the rest
        sources = assemble.rebase(sources, "workspace")
    cfg = settings.deft["sdg"]
    by_modes = routed_by(settings, n) == ROUTED_BY_MODES
    verify = by_modes and cfg["verify"]
    rca_dir = settings.run_dir / prev_label(n) / "rca"
    if by_modes:
        slots = sdg.mode_slots(targets, failure_modes.read_modes(rca_dir)[0], oversample=cfg["oversample"] if verify else 1)
    else:
        slots = sdg.label_slots(targets, cfg["num_sdg"])
    # the routed targets are KPI rows: their images are under the workspace's image root
    candidates = sdg.synthesize(targets, sources, source_images_dir=settings.run_images, lights=lights,
                                image_ext=ext, run_images_root=settings.run_images, iteration=n,
                                seed=settings.deft_seed + n, slots=slots, method=cfg["method"],
                                procedural_labels=cfg["procedural_labels"], target_images_dir=settings.images_dir)
    details: dict[str, Any] = {"routed_by": "modes" if by_modes else "labels", "candidates": len(candidates)}
    if verify and len(candidates):
        candidates = _verified(settings, n, candidates, targets, rca_dir, out_dir, details)
    frames = [candidates]
    if _ingests_pregenerated(settings):
        ingested = sdg.ingest_pregenerated(settings.synthetic_dir, lights=lights, image_ext=ext,
                                           out_images_root=settings.run_images, iteration=n)
        details["pregenerated"] = ingested.attrs.get("ingest_report")
        frames.append(ingested)
    rows = pd.concat(frames, ignore_index=True)
    sdg.write_sdg_manifest(rows, out_dir, details=details)
    verified = f" ({details['rejected']} of {details['candidates']} candidates rejected)" if "rejected" in details else ""
    state_hooks.commit(settings, f"iter{n}", "sdg", time.time() - started,
                       f"{len(rows)} synthetic pairs{verified}", fields={"sdg_generated_count": int(len(rows))})


def _verified(settings: RunSettings, n: int, candidates: pd.DataFrame, targets: pd.DataFrame, rca_dir: Path,
              out_dir: Path, details: dict[str, Any]) -> pd.DataFrame:
    """The candidates the current model does not already get right, one per mode quota; rejected images deleted."""
    lights, ext = _lights_and_ext(settings)
    cfg = settings.deft["sdg"]
    best = fsutil.read_json(settings.run_dir / prev_label(n) / "evaluate" / "best.json")
    ckpt = settings.run_dir / best["best_ckpt_path"]
    backend = model_backend(settings)
    candidates_csv = out_dir / "verify" / "candidates.csv"
    fsutil.write_csv(candidates_csv, candidates)
    scored = backend.infer(ckpt, candidates_csv, settings.run_images, out_dir / "verify" / "candidates_scored.csv")
    backend.embed(ckpt, candidates_csv, settings.run_images, out_dir / "verify" / "candidates.npy")
    scores = pd.read_csv(scored, keep_default_na=False)[kpi.SCORE_COLUMN].to_numpy(dtype=float)
    operating = fsutil.read_json(rca_dir / failure_modes.MODES_FILE)["operating"]
    rules = sdg.VerifyRules(pass_threshold=operating["kpi_threshold"], defect_threshold=operating["target_threshold"],
                            margin=cfg["reject_margin"], near_duplicate_cosine=cfg["near_duplicate_cosine"],
                            min_change=cfg["min_change"])
    quotas = _mode_quotas(targets)
    accepted, rejected = sdg.verify(candidates, scores, np.load(out_dir / "verify" / "candidates.npy", allow_pickle=False),
                                    rules, quotas)
    sdg.delete_pairs(rejected, run_images_root=settings.run_images, lights=lights, image_ext=ext)
    fsutil.write_csv(out_dir / "verify" / "rejected.csv", rejected)
    reasons = rejected["reject_reason"].value_counts().sort_index()
    details.update({"rejected": len(rejected), "accepted": len(accepted),
                    "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
                    "quotas": quotas, "accepted_per_mode": {str(k): int(v) for k, v in
                                                            accepted["sdg_mode"].value_counts().items()}})
    return accepted


def _mode_quotas(targets: pd.DataFrame) -> dict[str, int]:
    """{failure mode: rows} of routed mode targets (routing.mode_targets)."""
    return {str(k): int(v) for k, v in targets.drop_duplicates("failure_mode")
            .set_index("failure_mode")["mode_quota"].items()}


def embed(settings: RunSettings, it: str, out_summary: Path) -> None:
    """KPI and pool embeddings by ``it``'s best model, keyed by the checkpoint's content hash."""
    best = fsutil.read_json(settings.run_dir / it / "evaluate" / "best.json")
    ckpt = settings.run_dir / best["best_ckpt_path"]
    backend = model_backend(settings)
    out_dir = out_summary.parent
    backend.embed(ckpt, settings.kpi_csv, settings.images_dir, out_dir / "kpi.npy")
    backend.embed(ckpt, settings.pool_csv, settings.pool_images_dir, out_dir / "pool.npy")
    fsutil.write_json(out_summary, {"checkpoint": best["best_ckpt_path"], "checkpoint_sha256": fsutil.sha256_file(ckpt),
                                    "kpi": "kpi.npy", "pool": "pool.npy"})


def _embeddings(npy: Path) -> tuple[np.ndarray, pd.Series]:
    keys = pd.read_csv(csvdata.embedding_keys_path(npy), dtype=str, keep_default_na=False)
    return np.load(npy, mmap_mode="r", allow_pickle=False), csvdata.row_key(keys)  # the k-NN reads it in chunks


def _mine_targets(settings: RunSettings, n: int, targets: pd.DataFrame, pool: pd.DataFrame,
                  **selection: Any) -> mining.MiningResult:
    """Mine the pool for ``targets`` with the previous model's embeddings, history and exclusions."""
    run = settings.run_dir
    cfg = settings.deft["mining"]
    emb_dir = run / prev_label(n) / "embeddings"
    kpi_emb, kpi_keys = _embeddings(emb_dir / "kpi.npy")
    pool_emb, pool_keys = _embeddings(emb_dir / "pool.npy")
    if not pool_keys.equals(csvdata.row_key(pool)):
        raise InputError(f"{emb_dir / 'pool.npy'} was computed from another mining pool CSV; delete "
                         f"{emb_dir} and rerun.")
    target_rows = targets.drop_duplicates(subset=["input_path", "object_name"])
    index = {key: i for i, key in enumerate(kpi_keys)}
    target_emb = kpi_emb[[index[k] for k in csvdata.row_key(target_rows)]] if len(target_rows) else kpi_emb[:0]
    history = _history_before(settings, n)
    exclude = set(csvdata.row_key(_read(settings.validation_csv, settings.images_dir, settings, "validation CSV")))
    exclude |= set(kpi_keys)
    return mining.mine(target_rows, target_emb, pool, pool_emb,
                       top_k_per_target=cfg["top_k_per_target"], min_similarity=cfg["min_similarity"],
                       history=history, exclude_keys=exclude, label_aware=cfg["label_aware"],
                       history_aware=cfg["history_aware"], iteration=n, **selection)


def _history_before(settings: RunSettings, n: int) -> dict[str, list[str]]:
    path = settings.run_dir / f"iter{n - 1}" / "mining" / "mining_history.json"
    return mining.read_history(path) if n > 1 else {}


def mine(settings: RunSettings, n: int, out_rows: Path, out_history: Path) -> None:
    started = time.time()
    targets = pd.read_parquet(settings.run_dir / f"iter{n}" / "routing" / "routing_mining.parquet")
    pool = _read(settings.pool_csv, settings.pool_images_dir, settings, "mining pool CSV")
    if routed_by(settings, n) == ROUTED_BY_MODES:
        result = _mine_targets(settings, n, targets, pool, quotas=_mode_quotas(targets))
    else:  # TAO's per-target mining, cut to what the row budget leaves after TAO's SDG allocation
        sdg_targets = pd.read_parquet(settings.run_dir / f"iter{n}" / "routing" / "routing_sdg.parquet")
        planned_sdg = len(sdg.label_slots(sdg_targets, settings.deft["sdg"]["num_sdg"]))
        result = _mine_targets(settings, n, targets, pool,
                               max_rows=max(0, settings.deft["budget"]["max_new_rows"] - planned_sdg))
    history = _history_before(settings, n)
    mining.write_mining(result, out_rows.parent, out_history, history=history, iteration=n)
    for warning in result.warnings:
        print(f"WARNING: {warning}")
    state_hooks.commit(settings, f"iter{n}", "data_mining", time.time() - started,
                       f"{len(result.rows)} rows mined" + (f"; {len(result.warnings)} warnings" if result.warnings else ""),
                       fields={"mining_mined_count": int(len(result.rows)), "mining_warnings": result.warnings})


def run_assemble(settings: RunSettings, n: int, out_csv: Path) -> None:
    """Writes out_csv and, beside it, its provenance CSV (assemble.write_dataset names both)."""
    started = time.time()
    previous, previous_provenance = previous_training(settings, n)
    it_dir = settings.run_dir / f"iter{n}"
    sdg_rows = pd.read_csv(it_dir / "sdg" / "sdg_rows.csv", dtype=str, keep_default_na=False)
    mined = pd.read_csv(it_dir / "mining" / "mined_rows.csv", dtype=str, keep_default_na=False)
    budget = settings.deft["budget"]
    sdg_rows, mined, notes = assemble.trim_to_budget(
        sdg_rows, mined, max_new_rows=budget["max_new_rows"], max_synthetic_share=budget["max_synthetic_share"],
        previous_rows=len(previous), previous_synthetic_rows=_synthetic_rows(previous_provenance))
    for note in notes:
        print(f"WARNING: {note}")
    combined, provenance = assemble.assemble(
        previous, {"sdg": sdg_rows, "mining_pool": mined},
        iteration=n, previous_is_base=previous_provenance is None, previous_provenance=previous_provenance)
    assemble.write_dataset(combined, provenance, out_csv.parent, n)
    added = int((provenance["iteration_added"].astype(int) == n).sum())
    state_hooks.commit(settings, f"iter{n}", "data_merge", time.time() - started,
                       f"train_combined_iter{n}.csv: {len(combined)} rows ({added} new)"
                       + "".join(f"; {note}" for note in notes),
                       fields={"training_csv": str(out_csv.relative_to(settings.run_dir)),
                               "training_rows": int(len(combined)), "rows_added": added})


def validate(settings: RunSettings, n: int, csv_path: Path, provenance_path: Path, out_gate: Path) -> None:
    lights, ext = _lights_and_ext(settings)
    combined = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    provenance = pd.read_csv(provenance_path, dtype=str, keep_default_na=False)
    added = int((provenance["iteration_added"].astype(int) == n).sum())
    gate = {"iteration": f"iter{n}", "rows": int(len(combined)), "rows_added": added,
            "hard_stop": False, "reason": "ok"}
    try:
        if added == 0:
            raise InputError(f"iteration {n} added no rows (SDG and mining both empty)")
        assemble.validate_combined(
            combined, images_dir=settings.run_images, lights=lights, image_ext=ext,
            validation=_read(settings.validation_csv, settings.images_dir, settings, "validation CSV"),
            kpi=_read(settings.kpi_csv, settings.images_dir, settings, "KPI CSV"))
    except InputError as error:
        gate.update({"hard_stop": True, "reason": str(error)})
        print(f"HARD STOP: {error}")
    fsutil.write_json(out_gate, gate)
    state_hooks.commit(settings, f"iter{n}", "validate", 0.0,
                       "dataset valid" if not gate["hard_stop"] else f"hard stop: {gate['reason']}",
                       status="ok" if not gate["hard_stop"] else "error",
                       state_updates={"status": "hard_stopped"} if gate["hard_stop"] else None)


def train(settings: RunSettings, n: int, csv_path: Path, out_summary: Path) -> None:
    started = time.time()
    run = settings.run_dir
    best = fsutil.read_json(run / prev_label(n) / "evaluate" / "best.json")
    overrides: dict[str, Any] = {
        "dataset.classify.train_dataset.csv_path": str(csv_path),
        "dataset.classify.train_dataset.images_dir": str(settings.run_images),
        "dataset.classify.validation_dataset.csv_path": str(settings.validation_csv),
        "dataset.classify.validation_dataset.images_dir": str(settings.images_dir),
        "train.pretrained_model_path": str(run / best["best_ckpt_path"]),
        "train.seed": settings.deft_seed + n,
    }
    if settings.deft["retrain_epochs"]:
        overrides["train.num_epochs"] = settings.deft["retrain_epochs"]
    spec = tao_spec.with_overrides(tao_spec.load_spec(run / "specs" / "baseline_spec_automl.yaml"), overrides)
    fsutil.write_yaml(out_summary.parent / "spec.yaml", spec)
    summary = model_backend(settings).train(spec, out_summary.parent)
    state_hooks.commit(settings, f"iter{n}", "train", time.time() - started,
                       f"retrained from {prev_label(n)} ({best['best_ckpt_kind']}); best val FAR "
                       f"{_fmt(summary.get('best_val_far_pct'))}%",
                       fields={"val_loss": summary.get("best_val_loss"),
                               "train_summary": str(out_summary.relative_to(run))})


# ---- end of the loop --------------------------------------------------------------------------
def finish(settings: RunSettings, out_summary: Path) -> None:
    """Summarise the loop for Phase 3: stop reason, best iteration, final training CSV."""
    run = settings.run_dir
    walk = walk_loop(lambda label: fsutil.read_json(run / label / "decision.json"),
                     lambda n: fsutil.read_json(run / f"iter{n}" / "dataset" / "gate.json"))
    labels = walk.labels
    bests = {label: fsutil.read_json(run / label / "evaluate" / "best.json") for label in labels}
    # Lowest KPI FAR wins; ties go to the earlier iteration (less data, same quality).
    best_label = min(labels, key=lambda label: (bests[label]["far_pct"], labels.index(label)))
    trained = [label for label in labels if label != "baseline"]
    if trained:
        final_csv = f"{trained[-1]}/dataset/train_combined_{trained[-1]}.csv"
        final_images = "images"
    else:
        final_csv = str(settings.train_csv)
        final_images = str(settings.images_dir)
    if walk.hard_gate is not None:
        reason, hard = f"hard stop in iter{walk.hard_stop_iteration}: {walk.hard_gate['reason']}", True
    else:
        reason, hard = walk.decision["reason"], bool(walk.decision.get("hard_stop"))
    summary = {
        "iterations_run": len(trained),
        "iterations": labels,
        "stop_reason": reason,
        "hard_stop": hard,
        "best": {"iteration": best_label, **{k: bests[best_label][k] for k in
                 ("best_ckpt_path", "best_ckpt_kind", "far_pct", "threshold", "val_far_pct")}},
        "final_training_csv": final_csv,
        "final_training_images_dir": final_images,
        "hard_stop_iteration": f"iter{walk.hard_stop_iteration}" if walk.hard_gate is not None else None,
        "phase3": {"skip": hard, "reason": reason if hard else None},
        "kpi_met": any(bests[label]["far_pct"] <= settings.kpi_target for label in labels),
    }
    fsutil.write_json(out_summary, summary)
    print(f"DEFT loop finished: {reason}; best {best_label} FAR {bests[best_label]['far_pct']:.2f}%")
    state_hooks.finish_loop(settings, summary)
