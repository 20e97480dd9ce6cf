"""The DEFT loop's data rules (routing, SDG, mining, assembly, the dataset gate, the retrain, the
loop's summary): one function per stage, each reading its inputs from files, calling the stage module
(aoideft.deft.*) and committing its result to deft_state.json / loop_log.jsonl. The model-side rules
(inference, evaluation, embeddings, RCA, the accept-or-keep decision) are in deft_eval_jobs.py.

Each iteration builds on the incumbent (``deft_common.incumbent_before``): its RCA, embeddings and
checkpoint drive the routing, mining, SDG verification and the warm start."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import csvdata, fsutil, kpi, kpi_report, spec as tao_spec
from ..deft import assemble, failure_modes, mining, rca, routing, sdg
from ..errors import InputError
from . import inputs, state_hooks
from .deft_common import fmt, incumbent_before, lights_and_ext, prev_label, read_embeddings, read_pairs
from .loop import walk_loop
from .settings import RunSettings, model_backend


# ---- per-iteration data stages ---------------------------------------------------------------
def _require_continue(settings: RunSettings, n: int) -> None:
    decision = fsutil.read_json(settings.run_dir / prev_label(n) / "decision.json")
    if decision["stop"]:
        raise InputError(f"{prev_label(n)}/decision.json stopped the loop ({decision['reason']}): "
                         f"there is no iteration {n} to run")


ROUTED_BY_MODES, ROUTED_BY_LABELS, ROUTED_AT_RANDOM = "modes", "labels", "random"
PLAN_FILE = "routing_plan.json"


def new_rows_budget(settings: RunSettings) -> int:
    """New rows per iteration: ``deft.budget.max_new_rows``, or ``new_rows_fraction`` of the base set."""
    budget = settings.deft["budget"]
    if budget["max_new_rows"] is not None:
        return int(budget["max_new_rows"])
    base_rows = len(read_pairs(settings.train_csv, settings.images_dir, settings, "base training CSV"))
    return max(1, round(budget["new_rows_fraction"] * base_rows))


def _hard_reserve(settings: RunSettings) -> int:
    """Rows of the budget held for hard examples before the failure modes are served (engine failure_modes)."""
    if settings.deft["engine"] != "failure_modes":
        return 0
    return round(settings.deft["budget"]["hard_share"] * new_rows_budget(settings))


def route(settings: RunSettings, n: int, out_summary: Path) -> None:
    started = time.time()
    _require_continue(settings, n)
    state_hooks.start_iteration(settings, n)
    incumbent = incumbent_before(settings, n)
    rca_dir = settings.run_dir / incumbent / "rca"
    pool = read_pairs(settings.pool_csv, settings.pool_images_dir, settings, "mining pool CSV")
    out_dir = out_summary.parent
    engine = settings.deft["engine"]
    result = _route_by_modes(settings, n, rca_dir, pool, out_dir) if engine == "failure_modes" else None
    gaps = rca.read_gaps(rca_dir)
    if engine == "random":  # the control: nothing is targeted, the mining stage draws the whole budget
        gaps = gaps.iloc[:0]
    if result is None:  # engine tao or random, or no failure mode to route to
        result = routing.route_by_label(gaps, sdg_labels=sdg_labels(settings),
                                        pool_labels=set(pool["label"]))
    if engine != "failure_modes":
        routed = ROUTED_AT_RANDOM if engine == "random" else ROUTED_BY_LABELS
        fsutil.write_json(out_dir / PLAN_FILE, {
            "engine": engine, "routed_by": routed, "status": routed, "budget_rows": new_rows_budget(settings),
            "message": "random pool rows, no SDG (the control)" if engine == "random" else "TAO's label routing"})
    routing.write_routing(result, out_dir)
    plan = fsutil.read_json(out_dir / PLAN_FILE)
    it = f"iter{n}"
    state_hooks.commit(settings, it, "routing", time.time() - started,
                       f"from {incumbent}: {len(result.sdg)} to SDG, {len(result.mining)} to mining, "
                       f"{len(result.dropped)} dropped, budget {plan['budget_rows']} rows "
                       f"(routed by {plan['routed_by']}{'; ' + plan['message'] if plan['message'] else ''})",
                       fields={f"routing_{k}_parquet": str((out_summary.parent / f"routing_{k}.parquet")
                                                               .relative_to(settings.run_dir))
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
    # The customer's pre-generated pairs this iteration will ingest come first, then the hard examples'
    # share: the failure modes' plan gets what they leave (and what it leaves goes to hard examples).
    reserved = _pregenerated_pending(settings, n)
    hard = _hard_reserve(settings)
    budget = routing.Budget(
        max_new_rows=max(0, new_rows_budget(settings) - reserved - hard), sdg_rows=settings.deft["sdg"]["num_sdg"],
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
                       routed_by=ROUTED_BY_LABELS if by_labels else ROUTED_BY_MODES, pregenerated_reserved=reserved,
                       hard_examples_reserved=hard, budget_rows=new_rows_budget(settings))
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
    return (bool(settings.deft["sdg"]["ingest_pregenerated"]) and settings.synthetic_dir.is_dir()
            and settings.deft["engine"] != "random")


def _pregenerated_pending(settings: RunSettings, n: int) -> int:
    """Pre-generated pairs iteration n's SDG stage will ingest (complete, not ingested before)."""
    if not _ingests_pregenerated(settings):
        return 0
    lights, ext = lights_and_ext(settings)
    history = sdg.ingested_before(settings.run_images, n, lights=lights, image_ext=ext)
    return len(sdg.pregenerated_to_ingest(settings.synthetic_dir, lights=lights, image_ext=ext, history=history)[0])


def _synthetic_rows(provenance: pd.DataFrame | None) -> int:
    return 0 if provenance is None else int((provenance["source"] == assemble.SYNTHETIC).sum())


def previous_training(settings: RunSettings, n: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training CSV iteration n builds on and its provenance; for n == 1 the workspace's base CSV
    as written (paths relative to the workspace image root) and no provenance."""
    if n == 1:
        return read_pairs(settings.train_csv, settings.images_dir, settings, "base training CSV"), None
    folder = settings.run_dir / f"iter{n - 1}" / "dataset"
    return (pd.read_csv(folder / f"train_combined_iter{n - 1}.csv", dtype=str, keep_default_na=False),
            pd.read_csv(folder / f"train_combined_iter{n - 1}_provenance.csv", dtype=str, keep_default_na=False))


def sdg_labels(settings: RunSettings) -> set[str]:
    """deft.sdg.labels, or (null) every label the workspace has examples of (inputs/workspace.json)."""
    datasets = fsutil.read_json(settings.run_dir / "inputs" / "workspace.json")["datasets"]
    return sdg.routed_labels(settings.deft["sdg"]["labels"], datasets)


def run_sdg(settings: RunSettings, n: int, out_rows: Path) -> None:
    started = time.time()
    lights, ext = lights_and_ext(settings)
    out_dir = out_rows.parent
    targets = pd.read_parquet(out_dir.parent / "routing" / "routing_sdg.parquet")
    sources, provenance = previous_training(settings, n)
    if provenance is None:  # the base CSV: address its images through <run>/images like the rest
        sources = assemble.rebase(sources, "workspace")
    cfg = settings.deft["sdg"]
    by_modes = routed_by(settings, n) == ROUTED_BY_MODES
    verify = by_modes and cfg["verify"]
    rca_dir = settings.run_dir / incumbent_before(settings, n) / "rca"
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
    if verify:
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
    """The candidates the current model does not already get right, one per mode quota; rejected images
    deleted. ``details`` gets the verification's counts, zeros when routing asked for no synthetic rows."""
    quotas = _mode_quotas(targets)
    if candidates.empty:
        fsutil.write_csv(out_dir / "verify" / "rejected.csv", candidates.assign(reject_reason="", reject_detail=""))
        details.update({"rejected": 0, "accepted": 0, "reject_reasons": {}, "quotas": quotas, "accepted_per_mode": {}})
        return candidates
    lights, ext = lights_and_ext(settings)
    cfg = settings.deft["sdg"]
    best = fsutil.read_json(settings.run_dir / incumbent_before(settings, n) / "evaluate" / "best.json")
    ckpt = settings.run_dir / best["best_ckpt_path"]
    backend = model_backend(settings)
    candidates_csv = out_dir / "verify" / "candidates.csv"
    fsutil.write_csv(candidates_csv, candidates)
    scored = out_dir / "verify" / "candidates_scored.csv"
    backend.embed(ckpt, candidates_csv, settings.run_images, out_dir / "verify" / "candidates.npy", scores_csv=scored)
    scores = kpi.parse_scores(kpi_report.read_inference_csv(scored)[kpi.SCORE_COLUMN], source=str(scored))
    operating = fsutil.read_json(rca_dir / failure_modes.MODES_FILE)["operating"]
    rules = sdg.VerifyRules(pass_threshold=operating["kpi_threshold"], defect_threshold=operating["target_threshold"],
                            margin=cfg["reject_margin"], near_duplicate_cosine=cfg["near_duplicate_cosine"],
                            min_change=cfg["min_change"])
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
    if targets.empty:
        return {}
    return {str(k): int(v) for k, v in targets.drop_duplicates("failure_mode")
            .set_index("failure_mode")["mode_quota"].items()}


def _mine_targets(settings: RunSettings, n: int, targets: pd.DataFrame, pool: pd.DataFrame,
                  **selection: Any) -> mining.MiningResult:
    """Mine the pool for ``targets`` with the incumbent's embeddings, history and exclusions."""
    run = settings.run_dir
    cfg = settings.deft["mining"]
    emb_dir = run / incumbent_before(settings, n) / "embeddings"
    kpi_emb, kpi_keys = read_embeddings(emb_dir / "kpi.npy")
    pool_emb, pool_keys = read_embeddings(emb_dir / "pool.npy")
    if not pool_keys.equals(csvdata.row_key(pool)):
        raise InputError(f"{emb_dir / 'pool.npy'} was computed from another mining pool CSV; delete "
                         f"{emb_dir} and rerun.")
    target_rows = targets.drop_duplicates(subset=["input_path", "object_name"])
    index = {key: i for i, key in enumerate(kpi_keys)}
    target_emb = kpi_emb[[index[k] for k in csvdata.row_key(target_rows)]] if len(target_rows) else kpi_emb[:0]
    history = _history_before(settings, n)
    return mining.mine(target_rows, target_emb, pool, pool_emb,
                       top_k_per_target=cfg["top_k_per_target"], min_similarity=cfg["min_similarity"],
                       history=history, exclude_keys=_never_mined(settings, kpi_keys), label_aware=cfg["label_aware"],
                       class_aware=_class_aware(settings), history_aware=cfg["history_aware"], iteration=n,
                       **selection)


def _class_aware(settings: RunSettings) -> bool:
    """deft.mining.class_aware, for the failure-mode engine only (TAO's mining is label-agnostic)."""
    return bool(settings.deft["mining"]["class_aware"]) and settings.deft["engine"] == "failure_modes"


def _hard_defect_share(settings: RunSettings) -> float | None:
    """Share of hard examples that are defects (None: both classes ranked together, as TAO would)."""
    return float(settings.deft["budget"]["defect_share"]) if _class_aware(settings) else None


def _never_mined(settings: RunSettings, kpi_keys: pd.Series) -> set[str]:
    """Pool rows that repeat a validation or KPI row, or copy a train/validation/KPI pair by content,
    are never mined."""
    validation = read_pairs(settings.validation_csv, settings.images_dir, settings, "validation CSV")
    return set(csvdata.row_key(validation)) | set(kpi_keys) | inputs.pool_exclusions(settings)


def _history_before(settings: RunSettings, n: int) -> dict[str, list[str]]:
    path = settings.run_dir / f"iter{n - 1}" / "mining" / "mining_history.json"
    return mining.read_history(path) if n > 1 else {}


def mine(settings: RunSettings, n: int, out_rows: Path, out_history: Path) -> None:
    """Neighbours of the routed weak rows, then hard examples for the rest of the budget (engine
    failure_modes); TAO's per-target mining (engine tao); random rows (engine random)."""
    started = time.time()
    it_dir = settings.run_dir / f"iter{n}"
    targets = pd.read_parquet(it_dir / "routing" / "routing_mining.parquet")
    pool = read_pairs(settings.pool_csv, settings.pool_images_dir, settings, "mining pool CSV")
    history = _history_before(settings, n)
    budget = new_rows_budget(settings)
    engine = settings.deft["engine"]
    if engine == "random":
        emb_dir = settings.run_dir / incumbent_before(settings, n) / "embeddings"
        rows = mining.random_rows(pool, budget, seed=settings.deft_seed + n, history=history, iteration=n,
                                  exclude_keys=_never_mined(settings, read_embeddings(emb_dir / "kpi.npy")[1]))
        result = mining.MiningResult(rows, [], rows.empty, "no eligible pool row left" if rows.empty else None,
                                     {"random": len(rows), "budget": budget}, n)
    elif routed_by(settings, n) == ROUTED_BY_MODES:
        neighbours = _mine_targets(settings, n, targets, pool, quotas=_mode_quotas(targets))
        result = _with_hard_examples(settings, n, neighbours, pool, history, budget)
    else:  # TAO's per-target mining, cut to what the row budget leaves after TAO's SDG allocation
        room = max(0, budget - _planned_sdg(settings, n) - _hard_reserve(settings))
        result = _mine_targets(settings, n, targets, pool, max_rows=room)
        if engine == "failure_modes":  # no failure mode (label routing fallback): hard examples still fill
            result = _with_hard_examples(settings, n, result, pool, history, budget)
    mining.write_mining(result, out_rows.parent, out_history, history=history, iteration=n)
    for warning in result.warnings:
        print(f"WARNING: {warning}")
    reasons = result.rows["mining_reason"].value_counts().to_dict() if len(result.rows) else {}
    state_hooks.commit(settings, f"iter{n}", "data_mining", time.time() - started,
                       f"{len(result.rows)} rows mined ({', '.join(f'{v} {k}' for k, v in sorted(reasons.items())) or 'none'})"
                       + (f"; {len(result.warnings)} warnings" if result.warnings else ""),
                       fields={"mining_mined_count": int(len(result.rows)), "mining_warnings": result.warnings,
                               "mining_by_reason": {str(k): int(v) for k, v in reasons.items()}})


def _planned_sdg(settings: RunSettings, n: int) -> int:
    """Synthetic rows iteration n's SDG stage is set to produce (the plan's, or TAO's label slots)."""
    routing_dir = settings.run_dir / f"iter{n}" / "routing"
    if routed_by(settings, n) == ROUTED_BY_MODES:
        plan = fsutil.read_json(routing_dir / PLAN_FILE)
        return int(plan["sdg_rows"]) + int(plan.get("pregenerated_reserved", 0))
    return len(sdg.label_slots(pd.read_parquet(routing_dir / "routing_sdg.parquet"), settings.deft["sdg"]["num_sdg"]))


def _with_hard_examples(settings: RunSettings, n: int, neighbours: mining.MiningResult, pool: pd.DataFrame,
                        history: dict, budget: int) -> mining.MiningResult:
    """The neighbours plus the hard examples that fill the budget the plan's SDG and neighbours leave."""
    count = max(0, budget - _planned_sdg(settings, n) - len(neighbours.rows))
    if settings.deft["budget"]["hard_share"] == 0:  # hard examples off
        count = 0
    emb_dir = settings.run_dir / incumbent_before(settings, n) / "embeddings"
    scored = pd.read_csv(emb_dir / "pool_scores.csv", dtype=str, keep_default_na=False)
    if not csvdata.row_key(scored).equals(csvdata.row_key(pool)):
        raise InputError(f"{emb_dir / 'pool_scores.csv'} was scored from another mining pool CSV; delete {emb_dir} and rerun.")
    incumbent = fsutil.read_json(settings.run_dir / incumbent_before(settings, n) / "evaluate" / "best.json")
    exclude = _never_mined(settings, read_embeddings(emb_dir / "kpi.npy")[1]) | set(mining.rows_keys(neighbours.rows))
    hard = mining.hard_examples(pool, kpi.parse_scores(scored[kpi.SCORE_COLUMN], source=str(emb_dir)),
                                incumbent["deployable_threshold"], count, history=history, exclude_keys=exclude,
                                history_aware=settings.deft["mining"]["history_aware"], iteration=n,
                                defect_share=_hard_defect_share(settings))
    rows = pd.concat([neighbours.rows, hard], ignore_index=True)
    stats = {**neighbours.stats, "neighbours": len(neighbours.rows), "hard_examples": len(hard), "budget": budget,
             "hard_weakness": {"min": float(hard["weakness"].min()), "max": float(hard["weakness"].max())} if len(hard) else None}
    return mining.MiningResult(rows, neighbours.warnings, rows.empty, neighbours.reason if rows.empty else None, stats, n)


def run_assemble(settings: RunSettings, n: int, out_csv: Path) -> None:
    """Writes out_csv and, beside it, its provenance CSV (assemble.write_dataset names both)."""
    started = time.time()
    previous, previous_provenance = previous_training(settings, n)
    it_dir = settings.run_dir / f"iter{n}"
    sdg_rows = pd.read_csv(it_dir / "sdg" / "sdg_rows.csv", dtype=str, keep_default_na=False)
    mined = pd.read_csv(it_dir / "mining" / "mined_rows.csv", dtype=str, keep_default_na=False)
    budget = settings.deft["budget"]
    sdg_rows, mined, notes = assemble.trim_to_budget(
        sdg_rows, mined, max_new_rows=new_rows_budget(settings), max_synthetic_share=budget["max_synthetic_share"],
        previous_rows=len(previous), previous_synthetic_rows=_synthetic_rows(previous_provenance))
    for note in notes:
        print(f"WARNING: {note}")
    combined, provenance = assemble.assemble(
        previous, {"sdg": sdg_rows, "mining_pool": mined},
        iteration=n, previous_is_base=previous_provenance is None, previous_provenance=previous_provenance)
    assemble.write_dataset(combined, provenance, out_csv.parent, n)
    added = int((provenance["iteration_added"].astype(int) == n).sum())
    by_source = additions_by_source_and_label(sdg_rows, mined)
    synthetic_share = float((provenance["source"] == assemble.SYNTHETIC).mean())
    state_hooks.commit(settings, f"iter{n}", "data_merge", time.time() - started,
                       f"train_combined_iter{n}.csv: {len(combined)} rows ({added} new: "
                       + ", ".join(f"{sum(labels.values())} {source}" for source, labels in by_source.items())
                       + f"; synthetic share {synthetic_share:.0%})" + "".join(f"; {note}" for note in notes),
                       fields={"training_csv": str(out_csv.relative_to(settings.run_dir)),
                               "training_rows": int(len(combined)), "rows_added": added,
                               "rows_added_by_source": by_source, "synthetic_share": synthetic_share})


def additions_by_source_and_label(sdg_rows: pd.DataFrame, mined: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{source: {label: rows}} of an iteration's new rows; mined rows by why they were mined."""
    parts = {"sdg": sdg_rows.assign(_source="sdg")}
    if len(mined):
        parts["mined"] = mined.assign(_source="mined_" + mined.get("mining_reason", pd.Series("neighbour", index=mined.index)))
    frame = pd.concat(parts.values(), ignore_index=True)
    return {str(source): {str(label): int(count) for label, count in group["label"].value_counts().sort_index().items()}
            for source, group in frame.groupby("_source", sort=True)} if len(frame) else {}


def validate(settings: RunSettings, n: int, csv_path: Path, provenance_path: Path, out_gate: Path) -> None:
    lights, ext = lights_and_ext(settings)
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
            validation=read_pairs(settings.validation_csv, settings.images_dir, settings, "validation CSV"),
            kpi=read_pairs(settings.kpi_csv, settings.images_dir, settings, "KPI CSV"))
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
    incumbent = incumbent_before(settings, n)
    best = fsutil.read_json(run / incumbent / "evaluate" / "best.json")
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
                       f"retrained from {incumbent} ({best['best_ckpt_kind']}); best val FAR "
                       f"{fmt(summary.get('best_val_far_pct'))}%",
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
    if settings.selects_on_validation:  # the incumbent after the last decision the gate took
        best_label = walk.decision["incumbent"]
    else:  # TAO: the lowest KPI FAR; ties go to the earlier iteration (less data, same quality)
        best_label = min(labels, key=lambda label: (bests[label]["far_pct"], labels.index(label)))
    trained = [label for label in labels if label != "baseline"]
    if trained:
        final_csv = f"{trained[-1]}/dataset/train_combined_{trained[-1]}.csv"
        final_images = "images"
    else:
        final_csv = str(settings.train_csv)
        final_images = str(settings.images_dir)
    hard = walk.hard_stopped
    if walk.hard_gate is not None:
        reason = f"hard stop in iter{walk.hard_stop_iteration}: {walk.hard_gate['reason']}"
    else:
        reason = walk.decision["reason"]
    summary = {
        "iterations_run": len(trained),
        "iterations": labels,
        "stop_reason": reason,
        "hard_stop": hard,
        "best": {"iteration": best_label, **{k: bests[best_label][k] for k in
                 ("best_ckpt_path", "best_ckpt_kind", "far_pct", "threshold", "val_far_pct", "val_selection",
                  "validation_inference_csv")}},
        "accepted": [label for label in labels if label == "baseline"
                     or fsutil.read_json(run / label / "decision.json")["accepted"]],
        "final_training_csv": final_csv,
        "final_training_images_dir": final_images,
        "hard_stop_iteration": f"iter{walk.hard_stop_iteration}" if walk.hard_gate is not None else None,
        "phase3": {"skip": hard, "reason": reason if hard else None},
        "kpi_met": bests[best_label]["loop_far_pct"] <= settings.kpi_target,
    }
    fsutil.write_json(out_summary, summary)
    print(f"DEFT loop finished: {reason}; best {best_label} FAR {bests[best_label]['far_pct']:.2f}%")
    state_hooks.finish_loop(settings, summary)
