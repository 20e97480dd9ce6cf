"""TAO Visual ChangeNet (classify) spec reader.

A spec is TAO's YAML experiment file (``specs/baseline_spec.yaml``). This module

- loads it (OmegaConf-compatible YAML: ``1e-5`` is a float, duplicate keys are errors) and resolves
  ``${a.b.c}`` interpolations that refer to other spec keys (``load_spec``);
- checks every key against TAO's own JSON schemas in ``tao_schemas/`` (``validate_spec``): unknown
  keys, types, enums and ranges are ``InputError``; valid TAO keys the embedded ChangeNet-lite model
  cannot honour are reported as notes, from the single table ``UNHONOURED_KEYS`` (spec_unhonoured.py);
- (``spec_settings.py`` turns a spec into the typed ``TrainSettings`` the trainer uses);
- offers dotted-key helpers (``get_dotted``, ``set_dotted``, ``flatten_spec``, ``deep_merge``) that
  AutoML and the pre-seed step use to apply ``{"train.optim.lr": 0.01}``-style overrides.

"Free-form collections" are schema properties of type ``collection`` without sub-properties
(``input_map``, ``grid_map``, ``decoder_params``, ...): their keys are user data, not spec keys, so
they are never checked key by key, are leaves for ``flatten_spec`` and are replaced (not merged) by
``deep_merge``.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from aoideft.errors import InputError
from aoideft.spec_unhonoured import UNHONOURED_KEYS

SCHEMA_DIR = Path(__file__).resolve().parent / "tao_schemas"
SCHEMA_ACTIONS = ("train", "evaluate", "inference")
# Top-level sections of other TAO actions: accepted as-is (TAO specs carry them), never used here.
OTHER_ACTION_SECTIONS = ("export", "gen_trt_engine")
# TAO lists every ChangeNet backbone in this enum, but NVIDIA's AOI spec uses a C-RADIO backbone that
# the published schema does not list; the embedded model replaces the backbone anyway.
ENUM_EXEMPT_KEYS = frozenset({"model.backbone.type"})

_MISSING = object()
_INTERPOLATION = re.compile(r"\$\{([^${}]+)\}")


# --------------------------------------------------------------------------------------------------
# TAO schemas
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=len(SCHEMA_ACTIONS) + 1)
def schema_properties(action: str | None = None) -> dict[str, dict]:
    """Dotted key -> TAO schema property: of one action's schema, or (None) the union over the
    train/evaluate/inference schemas, which is what a workspace spec holds."""
    if action is not None and action not in SCHEMA_ACTIONS:
        raise ValueError(f"no TAO schema for action {action!r}")
    known: dict[str, dict] = {}
    for name in SCHEMA_ACTIONS if action is None else (action,):
        schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
        _collect_properties(schema["properties"], "", known)
    return known


def _collect_properties(properties: dict, prefix: str, known: dict[str, dict]) -> None:
    for name, prop in properties.items():
        if not isinstance(prop, dict):  # AutoML bookkeeping lists sit among the properties
            continue
        key = prefix + name
        known.setdefault(key, prop)
        if "properties" in prop:
            _collect_properties(prop["properties"], key + ".", known)


def _is_section(prop: dict) -> bool:
    return "properties" in prop


def _ignored_keys() -> frozenset[str]:
    """The keys of the no_effect rows of UNHONOURED_KEYS, with every schema key below a section."""
    roots = [key for row in UNHONOURED_KEYS if row.no_effect for key in row.keys]
    return frozenset(key for key in [*schema_properties(), *roots]
                     if any(key == root or key.startswith(root + ".") for root in roots))


# Valid TAO keys that no value changes for the embedded model (from UNHONOURED_KEYS): AutoML leaves
# them out of its search space.
EMBEDDED_IGNORED_KEYS: frozenset[str] = _ignored_keys()


def is_free_form(key: str) -> bool:
    """True for a schema ``collection`` without sub-properties (input_map, grid_map, ...)."""
    prop = schema_properties().get(key)
    return prop is not None and prop.get("type") == "collection" and not _is_section(prop)


def schema_default(key: str) -> Any:
    """TAO's default for a dotted key (a deep copy), or None when the schema has none."""
    prop = schema_properties().get(key)
    return copy.deepcopy(prop.get("default")) if prop else None


# --------------------------------------------------------------------------------------------------
# Loading and interpolation
# --------------------------------------------------------------------------------------------------


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with OmegaConf's two differences from YAML 1.1: exponent floats without a dot
    (``1e-5``) are floats, and a key repeated in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first_line.get(key)
                except TypeError:  # unhashable key: the base constructor reports it
                    continue
                if seen is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first set at line {seen + 1})",
                        key_node.start_mark)
                first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_spec(path: str | os.PathLike) -> dict:
    """Read a TAO spec YAML and resolve its ``${a.b.c}`` interpolations (see resolve_interpolations)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: spec file not found; check the path") from None
    except PermissionError:
        raise InputError(f"{path}: cannot read the spec file (permission denied for this user); make it readable "
                         "(chmod a+r, or ask its owner)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the spec file ({exc})") from None
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        raise InputError(f"{path}: YAML error at {where}: {exc.problem or exc.context}; "
                         f"fix the spec's YAML syntax there") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: line 1: a spec must be a YAML mapping of sections (train:, model:, "
                         f"dataset:, ...), not {type(data).__name__}")
    return resolve_interpolations(data, source=str(path))


def resolve_interpolations(spec: dict, source: str = "spec") -> dict:
    """Return a copy of ``spec`` with every ``${a.b.c}`` that names a spec key replaced by its value.

    A string that is exactly one interpolation takes the referenced value with its type (so
    ``batch_size: ${dataset.classify.batch_size}`` stays an int); inside longer strings the value is
    substituted as text. References to keys the spec does not have (``${results_dir}`` in a spec
    without ``results_dir``, OmegaConf resolvers such as ``${oc.env:X}``) are left literally, for TAO
    to fill at launch. A reference cycle is an InputError.
    """

    def resolve(value: Any, key: str, chain: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {name: resolve(item, f"{key}.{name}" if key else str(name), chain)
                    for name, item in value.items()}
        if isinstance(value, list):
            return [resolve(item, key, chain) for item in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _INTERPOLATION.fullmatch(value)
        if whole:
            target = lookup(whole.group(1).strip(), key, chain)
            return value if target is _MISSING else target
        return _INTERPOLATION.sub(lambda m: as_text(m, key, chain), value)

    def as_text(match: re.Match, key: str, chain: tuple[str, ...]) -> str:
        target = lookup(match.group(1).strip(), key, chain)
        return match.group(0) if target is _MISSING or isinstance(target, (dict, list)) else str(target)

    def lookup(reference: str, key: str, chain: tuple[str, ...]) -> Any:
        if reference == key or reference in chain:
            cycle = " -> ".join((*chain, key, reference))
            raise InputError(f"{source}: spec interpolation cycle {cycle}; replace one ${{...}} with a value")
        target = get_dotted(spec, reference, _MISSING)
        if target is _MISSING:
            return _MISSING
        return resolve(copy.deepcopy(target), reference, (*chain, key))

    return resolve(spec, "", ())


# --------------------------------------------------------------------------------------------------
# Dotted keys
# --------------------------------------------------------------------------------------------------


def get_dotted(spec: Mapping, key: str, default: Any = None) -> Any:
    """``spec['a']['b']['c']`` for ``key='a.b.c'``; ``default`` when any part is missing."""
    node: Any = spec
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(spec: dict, key: str, value: Any) -> None:
    """Set ``spec['a']['b']['c'] = value`` for ``key='a.b.c'``, creating (or replacing non-mapping)
    intermediate levels with dicts."""
    *parents, leaf = key.split(".")
    _container(spec, parents)[leaf] = value


def _container(spec: dict, parts: list[str]) -> dict:
    node = spec
    for part in parts:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    return node


def flatten_spec(spec: Mapping, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value. Free-form collections (input_map, grid_map, ...), lists and empty
    mappings are leaves; every other mapping is descended."""
    flat: dict[str, Any] = {}
    for name, value in spec.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value and not is_free_form(key):
            flat.update(flatten_spec(value, key + "."))
        else:
            flat[key] = value
    return flat


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """A new dict: ``base`` with ``override`` applied; the override wins.

    Nested mappings are merged key by key, except free-form collections (input_map, grid_map, ...),
    which the override replaces whole, because their keys are data (a new input_map must not keep the
    old lights). Override keys with dots are dotted paths, at any level: ``{"train.optim.lr": 0.01}``
    equals ``{"train": {"optim": {"lr": 0.01}}}``. Neither input is modified.
    """
    merged = copy.deepcopy(dict(base))
    _merge_into(merged, override, "")
    return merged


def with_overrides(base: Mapping, overrides: Mapping) -> dict:
    """``deep_merge`` for job specs, with ``clamp_checkpoint_interval`` applied: when the overrides
    (or the spec itself) train for fewer epochs than the checkpoint interval, the interval shrinks."""
    merged = deep_merge(base, overrides)
    clamp_checkpoint_interval(merged)
    return merged


def clamp_checkpoint_interval(spec: dict) -> str | None:
    """Set ``train.checkpoint_interval`` to ``train.num_epochs`` where it is larger (in place): TAO
    and the trainer refuse interval > epochs, and TAO's 7.0.0-EA ``spec_template_train.yaml`` ships
    interval 200. Returns the note saying so, or None when nothing changed."""
    epochs = get_dotted(spec, "train.num_epochs")
    interval = get_dotted(spec, "train.checkpoint_interval")
    if isinstance(epochs, int) and isinstance(interval, int) and interval > epochs:
        set_dotted(spec, "train.checkpoint_interval", epochs)
        return (f"train.checkpoint_interval {interval} > train.num_epochs {epochs}: every job spec uses "
                f"{epochs} (TAO needs interval <= epochs; its 7.0.0-EA spec template ships 200)")
    return None


def _merge_into(target: dict, override: Mapping, prefix: str) -> None:
    for name, value in override.items():
        *parents, leaf = str(name).split(".") if isinstance(name, str) else [name]
        node = _container(target, parents)
        key = prefix + ".".join(str(part) for part in (*parents, leaf))
        if isinstance(value, Mapping) and not is_free_form(key):
            if not isinstance(node.get(leaf), dict):
                node[leaf] = {}
            _merge_into(node[leaf], value, key + ".")
        else:
            node[leaf] = copy.deepcopy(value)


def _walk_present(spec: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every dotted key in the spec (sections and leaves), with its value."""
    for name, value in spec.items():
        key = f"{prefix}{name}"
        yield key, value
        if isinstance(value, Mapping) and not is_free_form(key):
            yield from _walk_present(value, key + ".")


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def validate_spec(spec: dict, source: str, *, action: str | None = None) -> list[str]:
    """Check every key and value of a (loaded) spec against TAO's schemas.

    Raises InputError for an unknown key (with the nearest valid key), a wrong type, a value outside
    the schema's enum or min/max. Returns the notes (each once, in ``UNHONOURED_KEYS`` order) for
    valid TAO keys the embedded model cannot honour. With ``action`` the spec is checked against that
    action's schema alone (a spec written for one TAO job), where other actions' sections are unknown.
    """
    _check_mapping(spec, "", source, schema_properties(action), lenient_sections=action is None)
    present = dict(_walk_present(spec))
    notes: list[str] = []
    for row in UNHONOURED_KEYS:
        for key in row.keys:
            if key in present and row.applies(present[key]):
                note = row.note.format(value=present[key])
                if note not in notes:
                    notes.append(note)
                break
    if "task" not in spec:
        notes.append("task: not set (TAO's default is 'segment'); treated as 'classify' - set "
                     "task: classify for TAO")
    return notes


def _check_mapping(mapping: Mapping, prefix: str, source: str, known: dict[str, dict],
                   lenient_sections: bool) -> None:
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if lenient_sections and not prefix and name in OTHER_ACTION_SECTIONS:
            continue
        prop = known.get(key)
        if prop is None:
            raise InputError(f"{source}: unknown spec key '{key}'; {_suggestion(key)}")
        if _is_section(prop):
            if value is not None and not isinstance(value, Mapping):
                raise InputError(f"{source}: spec key '{key}' must be a section (a mapping of keys), "
                                 f"got {value!r}")
            _check_mapping(value or {}, key + ".", source, known, lenient_sections)
        else:
            _check_value(key, prop, value, source)


def _suggestion(key: str) -> str:
    candidates = [*schema_properties(), *OTHER_ACTION_SECTIONS]
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if close:
        return f"did you mean '{close[0]}'?"
    return "it is not in TAO's train/evaluate/inference schemas (scripts/aoideft/tao_schemas/)"


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false",
               "string": "a string", "categorical": "one of the listed options", "list": "a list",
               "collection": "a mapping"}


def _check_value(key: str, prop: dict, value: Any, source: str) -> None:
    """Schema type, enum, min/max and pattern checks for one leaf. null means 'TAO default'."""
    if value is None:
        return
    kind = prop.get("type")

    def fail(why: str) -> InputError:
        return InputError(f"{source}: spec key '{key}' {why}, got {value!r}")

    if isinstance(value, str) and _INTERPOLATION.search(value) and kind not in ("string", "categorical"):
        raise fail(f"must be {_TYPE_WORDS.get(kind, kind)}; its ${{...}} does not name a spec key")
    if kind == "int":
        if isinstance(value, bool) or not (isinstance(value, int)
                                           or (isinstance(value, float) and value.is_integer())):
            raise fail("must be an integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise fail("must be a number")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise fail("must be true or false")
    elif kind == "categorical":
        if not isinstance(value, str):
            raise fail("must be a string")
        options = prop.get("enum") or []
        if key not in ENUM_EXEMPT_KEYS and options and value not in options:
            raise fail(f"must be one of {', '.join(map(repr, options))}")
    elif kind == "string":
        if isinstance(value, (Mapping, list)):
            raise fail("must be a string")
        pattern = prop.get("pattern")
        if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
            raise fail(f"must match {pattern!r}")
    elif kind == "list":
        if not isinstance(value, list):
            raise fail("must be a list")
    elif kind == "collection":
        if not isinstance(value, Mapping):
            raise fail("must be a mapping")
    if kind in ("int", "float"):
        low, high = prop.get("minimum", -math.inf), prop.get("maximum", math.inf)
        if not low <= value <= high:
            bounds = " and ".join(f"{word} {bound:g}" for word, bound in
                                  (("at least", low), ("at most", high)) if math.isfinite(bound))
            raise fail(f"must be {bounds}")
