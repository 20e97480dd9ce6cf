"""The DEFT state file (``deft_state.json``) and its log (``loop_log.jsonl``): the only module that writes them.

Shape: TAO's state template, schema version 4 (``tests/data/tao_deft_state_template.json``):
``version, started_at, status, kpi_target, metric_contract, results_dir, max_iterations,
current_iteration, execution_policy, config, iterations{baseline, iter1.., final_automl}, events,
_completed_step_values, _status_values``. Iteration entries are free-form dicts with the contract's
fields (``status, stage_completed, best_ckpt_path, best_ckpt_kind, far_pct, threshold, val_loss,
inference_csv, rca_*, routing_*_parquet, mining_mined_count, ...``).

Rules:
- Every write holds an exclusive ``fcntl.flock`` on ``<state>.lock`` (several jobs may commit at once)
  and replaces the file atomically (``fsutil``), so a reader never sees a partial file.
- The state is never re-initialised: ``init_state`` on an existing state with the same run inputs
  returns it unchanged; with different inputs it refuses (the run dir belongs to another config).
- Exactly one log entry per (iteration, stage): committing a stage again (a crash and rerun) replaces
  its entry; the new entry takes the next ``seq``, so seq stays strictly increasing in file order.
  ``events`` in the state is the log; ``loop_log.jsonl`` is rewritten from it on every commit.
- Stage results live in their own files; the state only records what they produced. The workflow
  never lists the state as an input, so committing never makes Snakemake rerun finished jobs.
- An iteration's ``status`` becomes ``complete`` when the stage that ends it commits ok: ``loop_stop``
  (the stop decision) for the baseline and iter<N>, ``train`` (Phase 3's winner) for final_automl.
- TAO 7.0.0-EA wrote a state without ``events`` and kept the stage log only in ``loop_log.jsonl``
  beside it (older fields only: no metric_contract, execution_policy, status lists). ``read_state``
  reads that layout, taking the events from the log and filling in the version 4 fields; the first
  commit writes the migrated state and keeps the EA files as ``deft_state.ea.json`` and
  ``loop_log.ea.jsonl``.

``pick_best``: the lowest ``far_pct`` among baseline, iter<N> and final_automl; on a tie the earlier
phase wins (a later model must strictly improve the KPI to replace the one before it).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aoideft import fsutil
from aoideft.errors import InputError

STATE_VERSION = 4
# Stage names (TAO's _completed_step_values where the step is the same: data_mining, data_merge).
STAGES = ("train", "inference", "evaluate", "rca", "routing", "sdg", "data_mining", "data_merge", "validate",
          "loop_stop", "deft_finish", "pick_best")
STATUS_VALUES = ("pending", "in_progress", "complete", "failed", "hard_stopped", "skipped")
LOG_STATUSES = ("ok", "error")
CKPT_KINDS = ("best_val", "latest")
PRESEED_SUMMARY = "baseline train skipped - reused Phase 1 AutoML winning checkpoint"
# Inputs that define a run: init_state on an existing state must see the same values.
_RUN_IDENTITY = ("config", "results_dir", "max_iterations", "kpi_target")
# Top-level keys owned by init_state / commit_stage: state_updates may not set them.
_OWNED = ("_comment", "version", "started_at", "kpi_target", "metric_contract", "results_dir", "max_iterations",
          "execution_policy", "config", "iterations", "events", "_completed_step_values", "_status_values",
          "migrated_from")
_LABEL = re.compile(r"^(baseline|iter[1-9]\d*|final_automl)$")
_REQUIRED_CONFIG = ("specs_file", "training_csv", "validation_csv", "kpi_test_csv", "images_dir")
LOG_NAME = "loop_log.jsonl"  # beside the state: TAO EA's only copy of the stage log
EA_SUFFIX = ".ea"  # deft_state.ea.json, loop_log.ea.jsonl: the EA files as they were before migration
_KPI_TARGET = re.compile(r"<=\s*([0-9]+(?:\.[0-9]*)?)\s*%")


def iteration_label(n: int) -> str:
    """``iter<n>`` for n >= 1; 0 is the baseline (TAO's current_iteration 0)."""
    if n < 0:
        raise ValueError(f"iteration number must be >= 0, got {n}")
    return "baseline" if n == 0 else f"iter{n}"


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def kpi_target_text(target_far_pct: float) -> str:
    return f"FAR@100% recall <= {target_far_pct:g}%"


def new_state(*, config: dict, results_dir: str | Path, kpi_target_far_pct: float, max_iterations: int,
              started_at: str | None = None) -> dict:
    """A fresh state document (pure; ``init_state`` writes it)."""
    missing = [key for key in _REQUIRED_CONFIG if key not in config]
    if missing:
        raise ValueError(f"state config lacks {missing}")
    return _jsonable({
        "_comment": "State of an aoideft AOI run (TAO deft_state.json, version 4). Written only through "
                    "aoideft.state; events mirror loop_log.jsonl.",
        "version": STATE_VERSION,
        "started_at": started_at or now_iso(),
        "status": "in_progress",
        "kpi_target": kpi_target_text(kpi_target_far_pct),
        "metric_contract": {
            "name": "far_pct",
            "display_name": "FAR at 100% recall",
            "operator": "<=",
            "target": float(kpi_target_far_pct),
            "unit": "%",
            "evaluator": {"type": "builtin", "path": "aoideft.kpi", "args": []},
            "constraints": [],
        },
        "results_dir": str(results_dir),
        "max_iterations": int(max_iterations),
        "current_iteration": 0,
        "execution_policy": {
            "network_mode": "offline",
            "activation_source": "aoideft embedded backend (no containers, no downloads)",
            "allow_package_install": False,
            "allow_remote_fetch": False,
            "allow_container_pull": False,
            "allow_registry_login": False,
            "python_launcher": "snakemake",
            "python_executable": sys.executable,
            "hf_offline": True,
        },
        "config": config,
        "iterations": {},
        "events": [],
        "_completed_step_values": list(STAGES),
        "_status_values": list(STATUS_VALUES),
    })


def init_state(state_path: str | Path, log_path: str | Path, *, config: dict, results_dir: str | Path,
               kpi_target_far_pct: float, max_iterations: int, started_at: str | None = None) -> dict:
    """Create the state (and an empty log) once; on resume return the existing state unchanged."""
    fresh = new_state(config=config, results_dir=results_dir, kpi_target_far_pct=kpi_target_far_pct,
                      max_iterations=max_iterations, started_at=started_at)
    state_path = Path(state_path)
    with _locked(state_path):
        if state_path.exists():
            existing = read_state(state_path)
            differing = _identity_differences(existing, fresh)
            if differing:
                raise InputError(f"{state_path} belongs to another run config (differs in {', '.join(differing)}); "
                                 "use a new run directory or restore the config it was started with.")
            return existing
        _write(state_path, Path(log_path), fresh)
        return fresh


def _identity_differences(existing: dict, fresh: dict) -> list[str]:
    """The run-identity keys in which an existing state differs from a fresh one. A state migrated
    from TAO EA carries EA's own config and KPI wording: its data files, results_dir, iteration
    budget and KPI target number must match."""
    if "migrated_from" not in existing:
        return [key for key in _RUN_IDENTITY if existing.get(key) != fresh[key]]
    differing = [f"config.{key}" for key in _REQUIRED_CONFIG
                 if existing["config"].get(key) != fresh["config"][key]]
    differing += [key for key in ("results_dir", "max_iterations") if existing.get(key) != fresh[key]]
    if existing["metric_contract"]["target"] != fresh["metric_contract"]["target"]:
        differing.append("kpi_target")
    return differing


def completes_iteration(iteration: str, stage: str) -> bool:
    """The stage whose commit ends an iteration: the stop decision for the loop's iterations,
    Phase 3's winner for final_automl."""
    return stage == ("train" if iteration == "final_automl" else "loop_stop")


def commit_stage(state_path: str | Path, log_path: str | Path, *, iteration: str, stage: str, status: str = "ok",
                 summary: str, duration_sec: float, fields: dict | None = None,
                 state_updates: dict | None = None) -> dict:
    """Record a finished stage: update ``iterations[iteration]`` and the log entry of (iteration, stage).

    ``status`` ``ok`` sets ``stage_completed = stage``; ``error`` leaves it and marks the iteration
    failed unless ``fields`` says otherwise. ``state_updates`` sets top-level keys such as
    ``status`` and ``current_iteration`` (not the keys init_state owns). Returns the new state.
    """
    _check_commit(iteration, stage, status, fields or {}, state_updates or {})
    state_path = Path(state_path)
    with _locked(state_path):
        state = read_state(state_path)
        entry = state["iterations"].setdefault(iteration, {"status": "in_progress"})
        if status == "ok":
            entry["stage_completed"] = stage
            if entry.pop("last_error", None) is not None and entry.get("status") == "failed":
                entry["status"] = "in_progress"  # a successful rerun supersedes the failure
        else:
            entry["status"] = "failed"
            entry["last_error"] = summary
        if status == "ok" and completes_iteration(iteration, stage):
            entry["status"] = "complete"
        entry.update(_jsonable(fields or {}))  # an explicit status (skipped, ...) wins
        state.update(_jsonable(state_updates or {}))
        state["events"] = _replace_event(state["events"], {
            "ts": now_iso(), "iter": iteration, "stage": stage, "status": status, "summary": summary,
            "duration_sec": round(float(duration_sec), 3)})
        _write(state_path, Path(log_path), state)
        return state


def prune_iterations(state_path: str | Path, log_path: str | Path, *, keep: Iterable[str]) -> dict:
    """Drop the entries and log events of iterations not in ``keep``.

    After a user deletes an iteration's folder and the loop is redone, the state must describe the
    files on disk, not a run that no longer exists.
    """
    keep = set(keep)
    state_path = Path(state_path)
    with _locked(state_path):
        state = read_state(state_path)
        state["iterations"] = {label: entry for label, entry in state["iterations"].items() if label in keep}
        state["events"] = [event for event in state["events"] if event["iter"] in keep]
        _write(state_path, Path(log_path), state)
        return state


def preseed_baseline(state_path: str | Path, log_path: str | Path, *, best_ckpt_path: str | Path,
                     train_metric: dict, spec_path: str | Path, rec_id: int, source: str = "automl_phase1",
                     duration_sec: float = 0.0) -> dict:
    """Register Phase 1's winner as the baseline's train stage (DEFT then starts at baseline inference).

    Paths are recorded as given (the workflow records them relative to results_dir).
    """
    return commit_stage(
        state_path, log_path, iteration="baseline", stage="train", summary=PRESEED_SUMMARY,
        duration_sec=duration_sec,
        fields={"status": "in_progress", "best_ckpt_path": str(best_ckpt_path), "train_metric": dict(train_metric),
                "source": source, "spec_path": str(spec_path), "automl_rec_id": rec_id},
    )


def _check_commit(iteration: str, stage: str, status: str, fields: dict, updates: dict) -> None:
    """Programming errors in a commit: fail before touching the state."""
    if not _LABEL.match(iteration):
        raise ValueError(f"iteration must be baseline, iter<N> or final_automl, got {iteration!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if status not in LOG_STATUSES:
        raise ValueError(f"log status must be one of {LOG_STATUSES}, got {status!r}")
    if "status" in fields and fields["status"] not in STATUS_VALUES:
        raise ValueError(f"iteration status must be one of {STATUS_VALUES}, got {fields['status']!r}")
    if "best_ckpt_kind" in fields and fields["best_ckpt_kind"] not in CKPT_KINDS:
        raise ValueError(f"best_ckpt_kind must be one of {CKPT_KINDS}, got {fields['best_ckpt_kind']!r}")
    owned = [key for key in updates if key in _OWNED]
    if owned:
        raise ValueError(f"state_updates may not set {owned}: init_state and commit_stage own them")
    if "status" in updates and updates["status"] not in STATUS_VALUES:
        raise ValueError(f"state status must be one of {STATUS_VALUES}, got {updates['status']!r}")
    if "current_iteration" in updates and not (
            isinstance(updates["current_iteration"], int) and updates["current_iteration"] >= 0):
        raise ValueError(f"current_iteration must be an int >= 0, got {updates['current_iteration']!r}")


def _replace_event(events: list[dict], event: dict) -> list[dict]:
    """Drop the (iter, stage) entry if any and append ``event`` with the next seq."""
    next_seq = max((e["seq"] for e in events), default=0) + 1
    kept = [e for e in events if (e["iter"], e["stage"]) != (event["iter"], event["stage"])]
    return [*kept, {"seq": next_seq, **event}]


def read_state(path: str | Path) -> dict:
    """The state; one written by TAO 7.0.0-EA (no ``events``) is returned migrated (see the module doc)."""
    path = Path(path)
    state = fsutil.read_json_input(path, what="DEFT state file",
                                   fix="the pre-seed step creates it; restore it or start a new run directory.")
    if isinstance(state, dict) and isinstance(state.get("iterations"), dict) and "events" not in state:
        return migrate_ea_state(state, read_log(path.with_name(LOG_NAME)), source=str(path))
    if not isinstance(state, dict) or not isinstance(state.get("iterations"), dict) or not isinstance(
            state.get("events"), list):
        raise InputError(f"{path}: not a DEFT state file (no iterations/events); restore it or start a new "
                         "run directory.")
    return state


def migrate_ea_state(ea: dict, log: list[dict], *, source: str) -> dict:
    """A TAO 7.0.0-EA state (no ``events``) and its loop_log.jsonl as a version 4 state (pure).

    The log's entries become ``events`` (``seq`` kept, or numbered in file order where missing);
    when EA logged one (iteration, stage) more than once, the last entry is the one the state keeps,
    as commit_stage does (the EA log itself is kept beside the state on the first write). Every EA
    key is kept; the version 4 keys EA lacked are added.
    """
    for number, entry in enumerate(log, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("iter"), str) or not isinstance(
                entry.get("stage"), str):
            raise InputError(f"{Path(source).with_name(LOG_NAME)} line {number}: not a stage log entry (needs iter and "
                             "stage); restore the log written with this state, or start a new run directory.")
    events: list[dict] = []
    for entry in log:
        events = [e for e in events if (e["iter"], e["stage"]) != (entry["iter"], entry["stage"])]
        events.append({"seq": entry.get("seq", len(events) + 1), **entry})
    target = ea.get("metric_contract", {}).get("target") if isinstance(ea.get("metric_contract"), dict) else None
    if target is None:
        found = _KPI_TARGET.search(str(ea.get("kpi_target", "")))
        if found is None:
            raise InputError(f"{source}: kpi_target {ea.get('kpi_target')!r} of this TAO EA state names no "
                             "'<= X%' FAR target; set it (e.g. 'FAR@100% recall <= 5%') or start a new run directory.")
        target = float(found.group(1))
    template = new_state(config={key: "" for key in _REQUIRED_CONFIG}, results_dir=ea.get("results_dir", ""),
                         kpi_target_far_pct=target, max_iterations=int(ea.get("max_iterations", 0)))
    migrated = {**{key: template[key] for key in template if key not in ("config", "_comment")}, **ea}
    steps = [*migrated["_completed_step_values"], *(e["stage"] for e in events)]
    migrated.update({
        "version": STATE_VERSION,
        "events": events,
        "_completed_step_values": list(dict.fromkeys(steps)),
        "migrated_from": {"layout": "TAO 7.0.0-EA (stage log only in loop_log.jsonl)", "version": ea.get("version"),
                          "events_from_log": len(log)},
    })
    return migrated


def read_log(path: str | Path) -> list[dict]:
    """The log entries; a missing log is empty."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError as exc:
            raise InputError(f"{path} line {number}: not JSON ({exc}); the next commit rewrites the log from "
                             "deft_state.json, or delete the log.") from None
    return entries


def pick_best(state: dict) -> tuple[str, dict]:
    """(label, entry) with the lowest far_pct; ties go to the earlier phase."""
    candidates = [(label, entry) for label, entry in state.get("iterations", {}).items()
                  if _LABEL.match(label) and _is_number(entry.get("far_pct"))]
    if not candidates:
        raise InputError("no iteration in deft_state.json has a far_pct yet; run the baseline evaluate stage first.")
    return min(candidates, key=lambda item: (item[1]["far_pct"], _phase_order(item[0])))


def _phase_order(label: str) -> int:
    if label == "baseline":
        return 0
    if label == "final_automl":
        return sys.maxsize
    return int(label[len("iter"):])


def best_model_document(state: dict, label: str, training_spec: str | Path) -> dict:
    """``best_model.json`` for the chosen iteration (TAO's ``_pick_best`` output)."""
    entry = state["iterations"].get(label)
    if entry is None or not entry.get("best_ckpt_path") or not _is_number(entry.get("far_pct")):
        raise InputError(f"deft_state.json: iteration {label} has no evaluated checkpoint; run its evaluate stage.")
    target = state["metric_contract"]["target"]
    return {
        "schema_version": 1,
        "iteration": label,
        "checkpoint": entry["best_ckpt_path"],
        "best_ckpt_kind": entry.get("best_ckpt_kind"),
        "threshold": entry.get("threshold"),
        "far_pct": entry["far_pct"],
        "kpi_target": state["kpi_target"],
        "kpi_met": entry["far_pct"] <= target,
        "training_spec": str(training_spec),
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _jsonable(obj: Any) -> Any:
    """Normalise to what JSON reads back (tuples -> lists, paths -> str) so comparisons are stable."""
    return json.loads(json.dumps(obj, default=fsutil._json_default))


@contextmanager
def _locked(state_path: Path) -> Iterator[None]:
    lock_path = state_path.with_name(state_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def repair_log(state_path: str | Path, log_path: str | Path) -> bool:
    """Rewrite ``loop_log.jsonl`` from the state when they differ: a kill between the state's write and
    the log's (two files cannot be renamed at once) leaves the log one commit behind. True if rewritten."""
    state_path, log_path = Path(state_path), Path(log_path)
    if not state_path.is_file():
        return False
    with _locked(state_path):
        events = read_state(state_path)["events"]
        if read_log(log_path) == events:
            return False
        fsutil.write_jsonl(log_path, events)
        return True


def _write(state_path: Path, log_path: Path, state: dict) -> None:
    """State first, then the log derived from it; both atomic (call with the lock held). The first
    write of a state migrated from TAO EA keeps the EA files (their only copy of superseded log
    entries) under the .ea names."""
    if "migrated_from" in state:
        for path in (state_path, log_path):
            backup = path.with_name(path.stem + EA_SUFFIX + path.suffix)
            if path.exists() and not backup.exists():
                fsutil.write_bytes(backup, path.read_bytes())
    fsutil.write_json(state_path, state)
    fsutil.write_jsonl(log_path, state["events"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aoideft state", description="Summary of a DEFT state file.")
    parser.add_argument("state", type=Path, help="<run>/deft_state.json")
    args = parser.parse_args(argv)
    try:
        state = read_state(args.state)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"status {state.get('status')}  KPI {state.get('kpi_target')}  "
          f"iteration {state.get('current_iteration')}/{state.get('max_iterations')}")
    for label, entry in state["iterations"].items():
        far = entry.get("far_pct")
        far_text = f"{far:.3f}%" if _is_number(far) else "-"
        print(f"  {label:<13} {entry.get('status', '-'):<12} stage {entry.get('stage_completed', '-'):<10} "
              f"far_pct {far_text}")
    try:
        label, entry = pick_best(state)
        print(f"best: {label} far_pct {entry['far_pct']:.3f}% ({entry.get('best_ckpt_path')})")
    except InputError:
        print("best: none evaluated yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
