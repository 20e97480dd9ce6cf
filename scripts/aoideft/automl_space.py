"""AutoML search spaces over TAO spec keys (Phase 1 and Phase 3): the entries of ``automl.search_space``
parsed against TAO's train schema into typed parameters (``automl.py`` proposes and selects).

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
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aoideft.errors import InputError

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
_MATH_COND = re.compile(r"^\s*(>=|<=|>|<)\s*(\S+)\s*$")


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
            value = as_number(option, f"{where}: option", integer=schema_type == "int")
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
    values = tuple(as_number(w, f"{where}: option_weights") for w in weights)
    if any(w <= 0 for w in values):
        raise InputError(f"{where}: option_weights must all be > 0, got {weights}; drop an option from "
                         "valid_options to exclude it.")
    return SearchParam(name, "categorical", choices=choices, weights=values)


def _numeric(name: str, entry: dict, leaf: dict, where: str) -> SearchParam:
    integer = leaf.get("type") == "int"
    default_low, default_high = _DEFAULT_RANGES.get(name, (leaf.get("minimum"), leaf.get("maximum")))
    low = as_number(entry["valid_min"], f"{where}: valid_min", integer) if "valid_min" in entry else default_low
    high = as_number(entry["valid_max"], f"{where}: valid_max", integer) if "valid_max" in entry else default_high
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


def as_number(value: Any, what: str, integer: bool = False) -> float | int:
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
    operator, bound = match.group(1), as_number(match.group(2), f"{where}: math_cond bound")
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


