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

Search space (TAO semantics, stricter): entries ``{parameter, valid_min, valid_max, valid_options,
option_weights, disable_list, math_cond}``. Any other key (TAO silently ignores ``min``/``max``/
``values``) is an ``InputError``. The type comes from TAO's train schema: float -> log-uniform when
``valid_min > 0`` and ``valid_max / valid_min >= 100``, else uniform; int -> integer range; bool ->
categorical ``[False, True]``; categorical -> the schema enum or ``valid_options``; ``valid_options``
on a numeric parameter makes it categorical over those values. ``option_weights`` bias the choice
like TAO: a weighted categorical is searched through a uniform coordinate in [0, 1) cut into
intervals proportional to the weights (a finished rec is placed at its option's interval midpoint).
``math_cond`` (the entry's, else the schema's) supports ``> x``, ``>= x``, ``< x``, ``<= x``; a strict
bound at the range edge moves the edge inward by 0.1% of the width (an int by 1). ``disable_list`` is
accepted for compatibility; list-valued parameters cannot be searched, so it changes nothing.

Default ranges: the schema's minimum/maximum where finite, except ``_DEFAULT_RANGES`` below, used
where the schema has no finite bound or its bounds are only the legal domain (weight decay in
[0, 1], fpratio_sampling 0 would never sample a defect).

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
import difflib
import hashlib
import json
import math
import random
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any, TypeGuard

from aoideft import fsutil
from aoideft.errors import InputError

ALGORITHMS = ("bayesian", "tpe", "random")
DIRECTIONS = ("minimize", "maximize")
METRICS = ("val_selection", "val_far_pct", "val_loss")
RESULT_FILE = "result.json"
SCHEMA_VERSION = 1

# Keys a search-space entry may carry (TAO's custom-range keys plus the parameter name).
_ENTRY_KEYS = ("parameter", "valid_min", "valid_max", "valid_options", "option_weights", "disable_list",
               "math_cond")
_KEY_HINTS = {"min": "valid_min", "max": "valid_max", "values": "valid_options", "options": "valid_options",
              "choices": "valid_options", "weights": "option_weights", "low": "valid_min", "high": "valid_max"}
# The default search space for ChangeNet classify: TAO's automl_default_parameters under these prefixes.
_CLASSIFY_PREFIXES = ("train.optim.", "model.classify.", "dataset.classify.")
# Default [low, high] where the schema has no finite bound or its bounds are just the legal domain.
_DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "train.optim.lr": (1e-5, 1e-2),
    "train.optim.weight_decay": (1e-5, 1e-1),
    "train.optim.momentum": (0.5, 0.99),
    "model.classify.eval_margin": (0.1, 2.0),
    "model.classify.train_margin_euclid": (1.0, 4.0),
    "dataset.classify.fpratio_sampling": (0.05, 0.5),
}
_LOG_RATIO = 100.0
_STRICT_BOUND_FRACTION = 1e-3
# Duplicate handling: asks through the configured sampler, then seeded random draws.
_MODEL_ATTEMPTS = 3
_RANDOM_ATTEMPTS = 64
# Finished recs needed before a model-based sampler stops sampling at random; round 0 is the start design.
_MODEL_STARTUP_TRIALS = 1
_MATH_COND = re.compile(r"^\s*(>=|<=|>|<)\s*(\S+)\s*$")


# ----------------------------------------------------------------------------------------------
# Search space
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchParam:
    """One searched spec key. ``kind`` is float, int or categorical (bool is categorical)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    weights: tuple[float, ...] | None = None

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a float or int parameter."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name} is {self.kind}: it has no bounds")
        return self.low, self.high


def load_train_schema() -> dict:
    """TAO's Visual ChangeNet train schema shipped as package data."""
    text = resources.files("aoideft").joinpath("tao_schemas/train.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def schema_parameters(schema: dict) -> dict[str, dict]:
    """Flatten the schema's nested ``properties`` into ``{dotted name: leaf property}``."""
    leaves: dict[str, dict] = {}

    def walk(properties: dict, prefix: str) -> None:
        for key, prop in properties.items():
            if not isinstance(prop, dict):
                continue
            name = prefix + key
            if isinstance(prop.get("properties"), dict):
                walk(prop["properties"], name + ".")
            else:
                leaves[name] = prop

    walk(schema.get("properties", {}), "")
    return leaves


def default_search_space(schema: dict, ignored: Iterable[str] = frozenset()) -> list[dict]:
    """TAO's ``automl_default_parameters`` for ChangeNet classify, minus ``ignored``, as entries.

    Pass the parameters the embedded model ignores and the pinned ones in ``ignored``.
    """
    skip = set(ignored)
    names = sorted(
        name for name in schema.get("automl_default_parameters", [])
        if name.startswith(_CLASSIFY_PREFIXES) and name not in skip
    )
    return [{"parameter": name} for name in names]


def parse_search_space(entries: Sequence[dict], schema: dict, pinned: dict | None = None,
                       *, source: str = "automl.search_space") -> list[SearchParam]:
    """Validate TAO-style search-space entries against the train schema; return typed parameters.

    ``source`` names where the entries came from (for error messages).
    """
    leaves = schema_parameters(schema)
    pinned = pinned or {}
    for name in pinned:
        _schema_leaf(name, leaves, f"{source} (pinned)")
    params: list[SearchParam] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"{source} entry {index}"
        if not isinstance(entry, dict) or "parameter" not in entry:
            raise InputError(f"{where} must be a mapping with a 'parameter' key, got {entry!r}.")
        name = str(entry["parameter"])
        where = f"{source} entry {index} ({name})"
        _check_entry_keys(entry, where)
        leaf = _schema_leaf(name, leaves, where)
        if name in pinned:
            raise InputError(f"{where}: {name} is pinned to {pinned[name]!r}; remove it from the search space "
                             "or from the pinned parameters.")
        if name in seen:
            raise InputError(f"{where}: {name} is listed twice; keep one entry.")
        seen.add(name)
        params.append(_parse_entry(name, entry, leaf, where))
    return params


def _check_entry_keys(entry: dict, where: str) -> None:
    for key in entry:
        if key in _ENTRY_KEYS:
            continue
        hint = _KEY_HINTS.get(str(key)) or next(iter(difflib.get_close_matches(str(key), _ENTRY_KEYS, 1, 0.6)), None)
        advice = f" Did you mean '{hint}'?" if hint else ""
        raise InputError(f"{where}: unknown key '{key}'.{advice} Allowed keys: {', '.join(_ENTRY_KEYS)}.")
    if "disable_list" in entry and not isinstance(entry["disable_list"], bool):
        raise InputError(f"{where}: disable_list must be true or false, got {entry['disable_list']!r}.")


def _schema_leaf(name: str, leaves: dict[str, dict], where: str) -> dict:
    if name in leaves:
        return leaves[name]
    close = difflib.get_close_matches(name, list(leaves), n=1, cutoff=0.5)
    if not close:
        last = name.rsplit(".", 1)[-1]
        close = sorted(n for n in leaves if n.rsplit(".", 1)[-1] == last)[:1]
    advice = f" Did you mean '{close[0]}'?" if close else ""
    raise InputError(f"{where}: '{name}' is not a parameter of TAO's Visual ChangeNet train schema.{advice}")


def _parse_entry(name: str, entry: dict, leaf: dict, where: str) -> SearchParam:
    schema_type = leaf.get("type")
    if "[" in name or schema_type in ("list", "collection"):
        raise InputError(f"{where}: list-valued parameters cannot be searched; pin the whole value instead.")
    options = entry.get("valid_options")
    if options is not None and options != []:
        if "valid_min" in entry or "valid_max" in entry:
            raise InputError(f"{where}: give either valid_options or valid_min/valid_max, not both.")
        return _categorical(name, _typed_options(options, leaf, where), entry.get("option_weights"), where)
    if schema_type == "bool":
        _reject_range(entry, where, "a bool")
        return _categorical(name, (False, True), entry.get("option_weights"), where)
    if schema_type == "categorical":
        _reject_range(entry, where, "a categorical")
        return _categorical(name, tuple(leaf.get("enum", ())), entry.get("option_weights"), where)
    if schema_type not in ("float", "int"):
        raise InputError(f"{where}: a {schema_type} parameter needs valid_options to be searched.")
    if entry.get("option_weights") is not None:
        raise InputError(f"{where}: option_weights needs valid_options.")
    return _numeric(name, entry, leaf, where)


def _reject_range(entry: dict, where: str, what: str) -> None:
    for key in ("valid_min", "valid_max", "math_cond"):
        if key in entry:
            raise InputError(f"{where}: {key} does not apply to {what} parameter; use valid_options.")


def _typed_options(options: Any, leaf: dict, where: str) -> tuple[Any, ...]:
    if not isinstance(options, list):
        raise InputError(f"{where}: valid_options must be a list, got {options!r}.")
    schema_type = leaf.get("type")
    typed = []
    for option in options:
        if schema_type == "bool":
            if not isinstance(option, bool):
                raise InputError(f"{where}: option {option!r} is not true/false.")
            value: Any = option
        elif schema_type in ("float", "int"):
            value = _number(option, f"{where}: option", integer=schema_type == "int")
            _check_within_schema(value, leaf, f"{where}: option")
        elif schema_type == "categorical":
            if option not in leaf.get("enum", ()):
                raise InputError(f"{where}: option {option!r} is not one of {leaf.get('enum')}.")
            value = option
        else:
            if not isinstance(option, (str, int, float)):
                raise InputError(f"{where}: option {option!r} must be a string or a number.")
            value = option
        typed.append(value)
    if len(set(map(repr, typed))) != len(typed):
        raise InputError(f"{where}: valid_options has duplicates: {options!r}.")
    return tuple(typed)


def _categorical(name: str, choices: tuple[Any, ...], weights: Any, where: str) -> SearchParam:
    if len(choices) < 2:
        raise InputError(f"{where}: needs at least two options to search, got {list(choices)}; pin it instead.")
    if weights is None or weights == []:
        return SearchParam(name, "categorical", choices=choices)
    if not isinstance(weights, list) or len(weights) != len(choices):
        raise InputError(f"{where}: option_weights must be a list of {len(choices)} numbers (one per option).")
    values = tuple(_number(w, f"{where}: option_weights") for w in weights)
    if any(w <= 0 for w in values):
        raise InputError(f"{where}: option_weights must all be > 0, got {weights}; drop an option from "
                         "valid_options to exclude it.")
    return SearchParam(name, "categorical", choices=choices, weights=values)


def _numeric(name: str, entry: dict, leaf: dict, where: str) -> SearchParam:
    integer = leaf.get("type") == "int"
    default_low, default_high = _DEFAULT_RANGES.get(name, (leaf.get("minimum"), leaf.get("maximum")))
    low = _number(entry["valid_min"], f"{where}: valid_min", integer) if "valid_min" in entry else default_low
    high = _number(entry["valid_max"], f"{where}: valid_max", integer) if "valid_max" in entry else default_high
    for key, value in (("valid_min", low), ("valid_max", high)):
        if value is None or not math.isfinite(value):
            raise InputError(f"{where}: the schema gives no finite default for {key}; set {key} explicitly.")
        _check_within_schema(value, leaf, f"{where}: {key}")
    assert low is not None and high is not None  # refused just above
    if low > high:
        defaulted = " (valid_max is the default: set it)" if "valid_max" not in entry else (
            " (valid_min is the default: set it)" if "valid_min" not in entry else "; swap them")
        raise InputError(f"{where}: valid_min {low} is greater than valid_max {high}{defaulted}.")
    # The scale follows the configured range, before math_cond nudges a bound off zero.
    log = not integer and low > 0 and high / low >= _LOG_RATIO
    low, high = _apply_math_cond(entry.get("math_cond", leaf.get("math_cond")), low, high, integer, where)
    if low == high:
        raise InputError(f"{where}: the range [{low}, {high}] holds a single value; pin the parameter instead.")
    if integer:
        return SearchParam(name, "int", low=int(low), high=int(high))
    return SearchParam(name, "float", low=float(low), high=float(high), log=log)


def _number(value: Any, what: str, integer: bool = False) -> float | int:
    """A number from config; numeric strings are accepted because YAML reads ``1e-4`` as a string."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if math.isnan(number):
        raise InputError(f"{what} must be a number, got {value!r}.")
    if integer:
        if not number.is_integer():
            raise InputError(f"{what} must be an integer, got {value!r}.")
        return int(number)
    return number


def _check_within_schema(value: float, leaf: dict, what: str) -> None:
    minimum, maximum = leaf.get("minimum"), leaf.get("maximum")
    if minimum is not None and value < minimum:
        raise InputError(f"{what} {value} is below the schema minimum {minimum}.")
    if maximum is not None and value > maximum:
        raise InputError(f"{what} {value} is above the schema maximum {maximum}.")


def _apply_math_cond(cond: Any, low: float, high: float, integer: bool, where: str) -> tuple[float, float]:
    if cond is None or cond == "":
        return low, high
    match = _MATH_COND.match(str(cond))
    if not match:
        raise InputError(f"{where}: unsupported math_cond {cond!r}; use '> x', '>= x', '< x' or '<= x'.")
    operator, bound = match.group(1), _number(match.group(2), f"{where}: math_cond bound")
    step = 1 if integer else (high - low) * _STRICT_BOUND_FRACTION
    if operator in (">", ">="):
        floor = bound + step if operator == ">" and (integer or low <= bound) else bound
        low = max(low, floor)
    else:
        ceiling = bound - step if operator == "<" and (integer or high >= bound) else bound
        high = min(high, ceiling)
    if low > high:
        raise InputError(f"{where}: math_cond {cond!r} leaves no value in the range; fix valid_min/valid_max.")
    return low, high


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
            number = _number(value, name)
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
