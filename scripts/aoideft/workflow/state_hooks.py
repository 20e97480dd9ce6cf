"""The workflow's writes to deft_state.json / loop_log.jsonl, through aoideft.state only.

Every stage's real result lives in its own output file; the state is the TAO-compatible summary
of them, updated after each stage. No rule lists the state as an input, so rewriting it never
makes Snakemake rerun a finished job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import state
from .settings import RunSettings

STATE_FILE, LOG_FILE = "deft_state.json", state.LOG_NAME  # state.read_state finds a TAO EA log beside the state


def _paths(settings: RunSettings) -> tuple[Path, Path]:
    return settings.run_dir / STATE_FILE, settings.run_dir / LOG_FILE


def state_config(settings: RunSettings) -> dict[str, Any]:
    cfg = settings.config
    return {
        "specs_file": str(settings.spec_path),
        "training_csv": str(settings.train_csv),
        "validation_csv": str(settings.validation_csv),
        "kpi_test_csv": str(settings.kpi_csv),
        "images_dir": str(settings.images_dir),
        "mining_pool_csv": str(settings.pool_csv),
        "mining_images_root": str(settings.pool_images_dir),
        "backend": cfg["backend"],
        "batch_size": cfg["automl"]["pinned"].get("dataset.classify.batch_size"),
        "num_epochs": cfg["automl"]["pinned"].get("train.num_epochs"),
        "retrain_epochs": cfg["deft"]["retrain_epochs"],
        "num_gpus": cfg["resources"]["gpu"]["gpu"],
        "sdg": {"engine": cfg["deft"]["sdg"]["method"], "num_SDG": cfg["deft"]["sdg"]["num_sdg"],
                "labels": cfg["deft"]["sdg"]["labels"]},
        "mining_filter": {
            "top_k_per_target": cfg["deft"]["mining"]["top_k_per_target"],
            "metric": "cosine",
            "min_similarity": cfg["deft"]["mining"]["min_similarity"],
            "history_aware": {"enabled": cfg["deft"]["mining"]["history_aware"], "identity": "filepath",
                              "history_file": "iter<N>/mining/mining_history.json"},
        },
        "top_k_per_label": cfg["deft"]["top_k_per_label"],
        "kpi_holdout": cfg["deft"]["kpi_holdout"],
        "selection": "validation (kpi.selection_score), accept-or-keep gate" if cfg["deft"]["kpi_holdout"] > 0
                     else "KPI set (TAO)",
        "gate": cfg["deft"]["gate"],
    }


def preseed_state(settings: RunSettings, *, state_path: Path, log_path: Path, best_ckpt_path: str,
                  train_metric: dict[str, Any], spec_path: str, rec_id: int) -> None:
    state.init_state(state_path, log_path, config=state_config(settings), results_dir=str(settings.run_dir),
                     kpi_target_far_pct=settings.kpi_target,
                     max_iterations=settings.deft["max_iterations"])
    state.preseed_baseline(state_path, log_path, best_ckpt_path=best_ckpt_path, train_metric=train_metric,
                           spec_path=spec_path, source="automl_phase1", rec_id=rec_id)


def commit(settings: RunSettings, iteration: str, stage: str, duration_sec: float, summary: str, *,
           fields: dict[str, Any] | None = None, status: str = "ok",
           state_updates: dict[str, Any] | None = None) -> None:
    state_path, log_path = _paths(settings)
    state.commit_stage(state_path, log_path, iteration=iteration, stage=stage, status=status,
                       summary=summary, duration_sec=round(duration_sec, 2), fields=fields,
                       state_updates=state_updates)


def register_final_automl(settings: RunSettings, document: dict[str, Any]) -> None:
    best = document["best"]
    commit(settings, "final_automl", "train", 0.0,
           f"Phase 3 winner rec{best['rec_id']} ({document['metric_name']} {best['score']}); pick_best compares "
           "it with the DEFT incumbent",
           fields={"source": "automl_phase3", "rec_id": best["rec_id"], "best_ckpt_path": best["checkpoint_uri"]})


def note_phase3_skipped(settings: RunSettings, message: str) -> None:
    commit(settings, "final_automl", "train", 0.0, message, status="ok",
           fields={"skipped": True, "status": "skipped"})


def note_phase3_without_winner(settings: RunSettings, message: str, checkpoint_uri: str) -> None:
    """Every Phase 3 trial collapsed or failed: final_automl holds the DEFT loop's delivered checkpoint."""
    commit(settings, "final_automl", "train", 0.0, message,
           fields={"source": "deft_incumbent", "rec_id": None, "best_ckpt_path": checkpoint_uri})


def start_iteration(settings: RunSettings, n: int) -> None:
    """Iteration n starts (again): its entry, later iterations' and Phase 3's describe a run that is
    being redone, so they go; each stage of this run writes its own fields back."""
    state_path, log_path = _paths(settings)
    state.prune_iterations(state_path, log_path, keep=["baseline", *(f"iter{i}" for i in range(1, n))])


def finish_loop(settings: RunSettings, summary: dict[str, Any]) -> None:
    state_path, log_path = _paths(settings)
    # Entries of iterations that are no longer on disk (a rerun after a deletion stopped earlier)
    # and of a previous Phase 3 go: the state describes this loop's files only.
    keep = list(summary["iterations"]) + ([summary["hard_stop_iteration"]] if summary.get("hard_stop_iteration") else [])
    state.prune_iterations(state_path, log_path, keep=keep)
    commit(settings, summary["iterations"][-1], "deft_finish", 0.0,
           f"DEFT loop finished: {summary['stop_reason']}; best {summary['best']['iteration']}",
           state_updates={"status": "hard_stopped" if summary["hard_stop"] else "in_progress"})


def render_interim_report(settings: RunSettings) -> None:
    from .report_context import render_run_report

    render_run_report(settings, settings.run_dir / "DEFT_Loop_Report.html")
