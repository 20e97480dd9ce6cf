"""File-first AutoML over TAO spec keys with Optuna (Phase 1 and Phase 3).

Every recommendation ("rec") is its own training job that writes ``<phase_dir>/rec<k>/`` (the spec
it trained with, its checkpoint and ``result.json``). Nothing lives in a hidden database: a suggest
step rebuilds the Optuna study in memory from the finished ``result.json`` files and proposes the
next round, so the files are the whole state and a rerun proposes exactly the same trials.

Rounds: rec ``k`` belongs to round ``k // max_concurrent``; round ``r`` is proposed from the finished
recs of rounds ``< r`` (round 0 from none: it is the random start design of every sampler, so the
model-based samplers use the data as soon as one rec has finished).

Algorithms (all seeded): ``bayesian`` = Optuna ``GPSampler`` (Gaussian process, Matern 5/2, logEI:
TAO's default), ``tpe`` = ``TPESampler``, ``random`` = ``RandomSampler``.

Distinct, deterministic proposals within a round: the recs of a round are asked one after the other
from one study and the earlier asks stay RUNNING (pending) while the later ones are asked. Optuna
5's ``GPSampler`` conditions on pending trials natively (q-batch logEI, sequential greedy), and
``TPESampler`` does with its constant liar, so proposals spread out without inventing fantasy values.
An exact duplicate (of a pending or an already trained point) is rejected and re-asked; after a few
model-based attempts the rec falls back to a seeded random draw, and for a finite (all-discrete)
space to the first unseen point of a seeded shuffle. The sampler seed of a round is derived from
the configured seed and the round's first rec id, so rounds do not replay each other's random draws.

The search space (TAO's entries, parsed against TAO's train schema) is ``automl_space.py``.

Result of a rec (``rec<k>/result.json``, written by the training job); the keys read here::

    {"rec_id": k, "status": "complete" | "failed", "params": {dotted: value},
     "val_selection": float | null, "val_far_pct": float | null, "val_loss": float | null,
     "collapsed": bool, ...}

A rec that reports "complete" without a finite value of the metric counts as failed.

Selection: the lowest (``direction``) score wins among recs that finished ("ok", finite score) and
did not collapse (predict one class only on validation). Ties: lower ``val_loss``, then lower rec
id. A collapsed rec is told to the sampler as the worst score observed so far, so the sampler
steers away from it without skewing the surrogate's scale; failed recs are left out of the study
(samplers ignore failed trials).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, TypeGuard

from aoideft import fsutil
from aoideft.automl_space import SearchParam, as_number
from aoideft.errors import InputError

ALGORITHMS = ("bayesian", "tpe", "random")
DIRECTIONS = ("minimize", "maximize")
METRICS = ("val_selection", "val_far_pct", "val_loss")
RESULT_FILE = "result.json"
SCHEMA_VERSION = 1

# Duplicate handling: asks through the configured sampler, then seeded random draws.
_MODEL_ATTEMPTS = 3
_RANDOM_ATTEMPTS = 64
# Finished recs needed before a model-based sampler stops sampling at random; round 0 is the start design.
_MODEL_STARTUP_TRIALS = 1


# ----------------------------------------------------------------------------------------------
# Records of finished recommendations
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecRecord:
    """What one recommendation produced."""

    rec_id: int
    params: dict
    score: float | None
    val_loss: float | None
    collapsed: bool
    status: str

    @property
    def eligible(self) -> bool:
        """Finished with a finite score and did not collapse: may win."""
        return self.status == "ok" and _finite(self.score) and not self.collapsed


def rec_dir(phase_dir: str | Path, rec_id: int) -> Path:
    return Path(phase_dir) / f"rec{rec_id}"


def round_of(rec_id: int, max_concurrent: int) -> int:
    return rec_id // max_concurrent


def round_rec_ids(round_index: int, max_concurrent: int, max_recommendations: int) -> list[int]:
    """The rec ids of one round (the last round may be short)."""
    start = round_index * max_concurrent
    return list(range(start, min(start + max_concurrent, max_recommendations)))


def read_rec_records(phase_dir: str | Path, rec_ids: Iterable[int], *,
                     metric: str = "val_selection") -> list[RecRecord]:
    """Read ``rec<k>/result.json`` for each id (status ok, failed or missing; see module doc)."""
    return [read_rec_record(rec_dir(phase_dir, rec_id) / RESULT_FILE, rec_id, metric=metric) for rec_id in rec_ids]


def read_rec_record(path: str | Path, rec_id: int, *, metric: str = "val_selection") -> RecRecord:
    if metric not in METRICS:
        raise InputError(f"automl metric must be one of {METRICS}, got {metric!r}.")
    path = Path(path)
    if not path.exists():
        return RecRecord(rec_id, {}, None, None, False, "missing")
    doc = fsutil.read_json_input(path, what="AutoML result", fix=f"delete it and rerun rec{rec_id}.")
    if not isinstance(doc, dict) or doc.get("rec_id") != rec_id:
        raise InputError(f"{path}: expected a result object with rec_id {rec_id}; rerun rec{rec_id}.")
    status = {"complete": "ok", "failed": "failed"}.get(str(doc.get("status")))
    if status is None:
        raise InputError(f"{path}: status must be 'complete' or 'failed', got {doc.get('status')!r}; "
                         f"rerun rec{rec_id}.")
    score, val_loss = _float_or_none(doc.get(metric)), _float_or_none(doc.get("val_loss"))
    if status == "ok" and not _finite(score):
        status = "failed"  # finished without a usable score: it can neither win nor inform the sampler
    return RecRecord(rec_id, dict(doc.get("params") or {}), score, val_loss, bool(doc.get("collapsed", False)),
                     status)


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


# ----------------------------------------------------------------------------------------------
# Proposals
# ----------------------------------------------------------------------------------------------
def propose_round(space: Sequence[SearchParam], finished: Sequence[RecRecord], rec_ids: Sequence[int], *,
                  algorithm: str = "bayesian", seed: int = 42, direction: str = "minimize",
                  first_params: dict | None = None, pinned: dict | None = None) -> list[dict]:
    """Propose one parameter set per rec id, from a study rebuilt from ``finished``.

    ``first_params`` fixes rec 0 (when rec 0 is in ``rec_ids``): keys outside the space are ignored,
    numbers outside their range are clipped into it, unknown options and non-numbers are sampled.
    ``pinned`` values are added to every proposal's params (never sampled).
    Returns ``[{"rec_id": k, "params": {dotted: value}}]`` in ``rec_ids`` order.
    """
    study = build_study(space, finished, algorithm=algorithm, seed=_round_seed(seed, rec_ids), direction=direction)
    distributions = {p.name: _distribution(p) for p in space}
    by_name = {p.name: p for p in space}
    finished_keys = {_point_key(_decode_params(space, t.params)) for t in study.trials}
    size = _finite_size(space)
    if size is not None and size < len(rec_ids):
        raise InputError(f"the search space has only {size} distinct points, fewer than the {len(rec_ids)} recs "
                         "of a round; widen it or lower max_concurrent.")
    avoid_finished = size is None or size >= len(finished_keys) + len(rec_ids)
    round_keys: set[tuple] = set()
    model_sampler = study.sampler
    fallback = _sampler("random", _round_seed(seed, rec_ids) + 1)
    proposals = []
    for rec_id in rec_ids:
        if rec_id == 0 and first_params:
            study.enqueue_trial(_encode_params(space, _fit_first_params(first_params, by_name)))
        avoid = round_keys | finished_keys if avoid_finished else round_keys
        params = _ask_distinct(study, space, distributions, avoid, model_sampler, fallback)
        round_keys.add(_point_key(params))
        proposals.append({"rec_id": rec_id, "params": {**params, **(pinned or {})}})
    return proposals


def build_study(space: Sequence[SearchParam], finished: Sequence[RecRecord], *, algorithm: str, seed: int,
                direction: str) -> Any:
    """An in-memory study holding the finished recs (in rec-id order), each tagged ``user_attrs.rec_id``.

    Eligible recs are COMPLETE with their score; collapsed recs are COMPLETE with the worst score
    seen. Failed and missing recs are left out: samplers ignore failed trials anyway.
    """
    import optuna
    from optuna.trial import TrialState, create_trial

    if direction not in DIRECTIONS:
        raise InputError(f"automl direction must be one of {DIRECTIONS}, got {direction!r}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=optuna.study.StudyDirection[direction.upper()], sampler=_sampler(algorithm, seed))
    distributions = {p.name: _distribution(p) for p in space}
    scores = [r.score for r in finished if r.status == "ok" and _finite(r.score)]
    worst = (max(scores) if direction == "minimize" else min(scores)) if scores else None
    for record in sorted(finished, key=lambda r: r.rec_id):
        if record.status != "ok":
            continue
        params = _encode_params(space, _record_params(space, record))
        value = record.score if record.eligible else worst
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, params=params,
                                     distributions=distributions, user_attrs={"rec_id": record.rec_id}))
    return study


def _record_params(space: Sequence[SearchParam], record: RecRecord) -> dict:
    """The searched values of a finished rec; refuses a rec that does not fit the current space."""
    values = {}
    for param in space:
        if param.name not in record.params:
            raise InputError(f"rec{record.rec_id}/{RESULT_FILE} has no value for {param.name}: the search space "
                             "changed after it ran; restore the search space or use a new run directory.")
        value = record.params[param.name]
        if not _contains(param, value):
            raise InputError(f"rec{record.rec_id}/{RESULT_FILE}: {param.name}={value!r} is outside the current "
                             "search space; restore the search space or use a new run directory.")
        values[param.name] = value
    return values


def _ask_distinct(study: Any, space: Sequence[SearchParam], distributions: dict, avoid: set[tuple],
                  model_sampler: Any, fallback: Any) -> dict:
    """Ask until the decoded point is not in ``avoid``; the accepted trial stays RUNNING."""
    from optuna.trial import TrialState

    try:
        for attempt in range(_MODEL_ATTEMPTS + _RANDOM_ATTEMPTS):
            study.sampler = model_sampler if attempt < _MODEL_ATTEMPTS else fallback
            trial = study.ask(distributions)
            params = _decode_params(space, trial.params)
            if _point_key(params) not in avoid:
                return params
            study.tell(trial, state=TrialState.FAIL)
        unseen = _first_unseen_point(space, avoid, seed=len(study.trials))
        if unseen is None:
            raise RuntimeError("could not find a distinct point in a continuous search space")
        study.enqueue_trial(_encode_params(space, unseen))
        return _decode_params(space, study.ask(distributions).params)
    finally:
        study.sampler = model_sampler


def _fit_first_params(first_params: dict, by_name: dict[str, SearchParam]) -> dict:
    fitted = {}
    for name, value in first_params.items():
        param = by_name.get(name)
        if param is None:
            continue
        if param.kind == "categorical":
            if _choice_index(param, value) is not None:
                fitted[name] = value
            continue
        try:
            number = as_number(value, name)
        except InputError:
            continue
        low, high = param.bounds
        number = min(max(number, low), high)
        fitted[name] = int(round(number)) if param.kind == "int" else number
    return fitted


def _sampler(algorithm: str, seed: int) -> Any:
    import optuna

    if algorithm == "bayesian":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_MODEL_STARTUP_TRIALS,
                                             warn_independent_sampling=False)
    if algorithm == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_MODEL_STARTUP_TRIALS,
                                              constant_liar=True, warn_independent_sampling=False)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise InputError(f"automl algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")


def _round_seed(seed: int, rec_ids: Sequence[int]) -> int:
    """A per-round seed: stable across platforms and distinct between rounds."""
    first = min(rec_ids) if rec_ids else 0
    digest = hashlib.sha256(f"aoideft-automl:{seed}:{first}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _distribution(param: SearchParam) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.kind == "float":
        return FloatDistribution(*param.bounds, log=param.log)
    if param.kind == "int":
        low, high = param.bounds
        return IntDistribution(int(low), int(high))
    if param.weights is not None:
        return FloatDistribution(0.0, 1.0)  # weighted categorical: uniform coordinate, see module doc
    return CategoricalDistribution(param.choices)


def _cumulative(weights: tuple[float, ...]) -> list[float]:
    total, edges, running = sum(weights), [], 0.0
    for weight in weights:
        running += weight / total
        edges.append(running)
    return edges


def _encode_params(space: Sequence[SearchParam], values: dict) -> dict:
    """Spec values -> the study's internal coordinates (only weighted categoricals differ)."""
    encoded = {}
    for param in space:
        if param.name not in values:
            continue
        value = values[param.name]
        if param.weights is not None:
            index = _choice_index(param, value)
            assert index is not None, (param.name, value)  # callers pass values of the space (_contains)
            edges = [0.0, *_cumulative(param.weights)]
            value = (edges[index] + edges[index + 1]) / 2
        encoded[param.name] = value
    return encoded


def _decode_params(space: Sequence[SearchParam], internal: dict) -> dict:
    decoded = {}
    for param in space:
        value = internal[param.name]
        if param.weights is not None:
            edges = _cumulative(param.weights)
            index = next((i for i, edge in enumerate(edges) if value < edge), len(edges) - 1)
            value = param.choices[index]
        decoded[param.name] = value
    return decoded


def _contains(param: SearchParam, value: Any) -> bool:
    if param.kind == "categorical":
        return _choice_index(param, value) is not None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if param.kind == "int" and not float(value).is_integer():
        return False
    low, high = param.bounds
    return low <= value <= high


def _choice_index(param: SearchParam, value: Any) -> int | None:
    """Index of ``value`` among the choices; True is not 1 here (bool and int options differ)."""
    return next((i for i, choice in enumerate(param.choices)
                 if choice == value and isinstance(choice, bool) == isinstance(value, bool)), None)


def _point_key(params: dict) -> tuple:
    return tuple(sorted((name, repr(value)) for name, value in params.items()))


def _finite_size(space: Sequence[SearchParam]) -> int | None:
    size = 1
    for param in space:
        if param.kind == "float":
            return None
        size *= len(param.choices) if param.kind == "categorical" else int(param.bounds[1]) - int(param.bounds[0]) + 1
    return size


def _first_unseen_point(space: Sequence[SearchParam], avoid: set[tuple], seed: int) -> dict | None:
    """The first point of a seeded shuffle of a finite space that is not in ``avoid``."""
    if _finite_size(space) is None:
        return None
    axes = [list(p.choices) if p.kind == "categorical" else list(range(int(p.bounds[0]), int(p.bounds[1]) + 1))
            for p in space]
    points = [dict(zip((p.name for p in space), values)) for values in product(*axes)]
    random.Random(seed).shuffle(points)
    return next((point for point in points if _point_key(point) not in avoid), None)


def write_proposals(path: str | Path, proposals: list[dict], **meta: Any) -> None:
    """Write a round's proposals atomically; ``meta`` (algorithm, seed, round, ...) is stored alongside."""
    fsutil.write_json(path, {"schema_version": SCHEMA_VERSION, **meta, "proposals": proposals})


def read_proposals(path: str | Path) -> list[dict]:
    path = Path(path)
    doc = fsutil.read_json_input(path, what="AutoML proposals file", fix="delete it and rerun the suggest step.")
    proposals = doc.get("proposals") if isinstance(doc, dict) else None
    if not isinstance(proposals, list) or not all(
            isinstance(p, dict) and isinstance(p.get("rec_id"), int) and isinstance(p.get("params"), dict)
            for p in proposals):
        raise InputError(f"{path}: expected {{'proposals': [{{'rec_id', 'params'}}, ...]}}; "
                         "delete it and rerun the suggest step.")
    return proposals


# ----------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------
def ranked(records: Sequence[RecRecord], direction: str = "minimize") -> list[RecRecord]:
    """Eligible records, best first: score (by direction), then val_loss, then rec id."""
    if direction not in DIRECTIONS:
        raise InputError(f"automl direction must be one of {DIRECTIONS}, got {direction!r}.")
    sign = 1.0 if direction == "minimize" else -1.0

    def key(record: RecRecord) -> tuple:
        loss = record.val_loss if _finite(record.val_loss) else math.inf
        return sign * float(record.score or 0.0), loss, record.rec_id  # eligible: the score is finite

    return sorted((r for r in records if r.eligible), key=key)


def select_best(records: Sequence[RecRecord], direction: str = "minimize") -> RecRecord:
    """The winning rec; collapsed and failed recs never win."""
    order = ranked(records, direction)
    if not order:
        detail = ", ".join(f"rec{r.rec_id}: {'collapsed' if r.collapsed else r.status}" for r in records) or "none"
        raise InputError(f"no AutoML recommendation can win ({detail}): every rec failed or collapsed to one "
                         "class. Read the recs' train logs, then raise num_epochs, narrow the learning-rate range "
                         "or add recommendations, and rerun.")
    return order[0]


def best_rec_document(best: RecRecord, *, metric_name: str, direction: str, specs: dict, checkpoint_uri: str,
                      observed_budget: dict, phase: str, records: Sequence[RecRecord] = ()) -> dict:
    """``best_rec.json``: the winner (TAO's ``result["best"]["specs"]`` shape) and a leaderboard."""
    return {
        "schema_version": SCHEMA_VERSION,
        "phase": phase,
        "metric_name": metric_name,
        "direction": direction,
        "best": {"rec_id": best.rec_id, "score": best.score, "val_loss": best.val_loss,
                 "specs": dict(specs), "observed_budget": dict(observed_budget), "checkpoint_uri": checkpoint_uri},
        "recommendations": [
            {"rec_id": r.rec_id, "status": r.status, "score": r.score, "val_loss": r.val_loss,
             "collapsed": r.collapsed, "params": r.params}
            for r in sorted(records, key=lambda r: r.rec_id)
        ],
    }


# ----------------------------------------------------------------------------------------------
# CLI: a leaderboard of a phase directory
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aoideft automl", description="Leaderboard of an AutoML phase directory.")
    parser.add_argument("phase_dir", type=Path, help="e.g. <run>/phase1_automl")
    parser.add_argument("--metric", choices=METRICS, default="val_selection")
    parser.add_argument("--direction", choices=DIRECTIONS, default="minimize")
    args = parser.parse_args(argv)
    rec_ids = sorted(int(m.group(1)) for p in args.phase_dir.glob("rec*")
                     if (m := re.fullmatch(r"rec(\d+)", p.name)) and p.is_dir())
    try:
        records = read_rec_records(args.phase_dir, rec_ids, metric=args.metric)
        order = {r.rec_id: i for i, r in enumerate(ranked(records, args.direction), start=1)}
        print(f"{'rank':>4}  {'rec':>4}  {'status':<9} {args.metric:>12} {'val_loss':>10}")
        for record in sorted(records, key=lambda r: (order.get(r.rec_id, math.inf), r.rec_id)):
            status = "collapsed" if record.collapsed else record.status
            score = f"{record.score:.4g}" if _finite(record.score) else "-"
            loss = f"{record.val_loss:.4g}" if _finite(record.val_loss) else "-"
            print(f"{order.get(record.rec_id, '-'):>4}  {record.rec_id:>4}  {status:<9} {score:>12} {loss:>10}")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
