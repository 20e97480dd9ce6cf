"""The workflow config against config/schemas/config.schema.yaml, reported as one line.

Snakemake's own ``validate`` prints the whole schema (445 lines) under its error and never says
which key was meant. ``check_config`` finds the first problem in key order and names it by its
dotted key: an unknown key with the nearest valid key at that level ("did you mean
deft.max_iterations?"), a value with what the schema wants. The workflow runs it before Snakemake's
``validate`` (which then only fills in the defaults).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..errors import InputError, refuse

SCHEMA_NAME = "config/schemas/config.schema.yaml"
_SHOWN = 60  # characters of a value quoted in a message


def load_schema(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def check_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raise one InputError for the first schema violation of ``config`` (None when it is valid)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: ([str(p) for p in e.absolute_path], e.validator))
    if errors:
        raise InputError(describe(errors[0]))


def gate(config: dict[str, Any], schema_path: str | Path) -> None:
    """check_config at parse time: a bad config stops Snakemake with one PRE-FLIGHT FAILED line."""
    try:
        check_config(config, load_schema(schema_path))
    except InputError as error:
        refuse(error)


def describe(error: jsonschema.ValidationError) -> str:
    """One line for one violation, naming the dotted key and what to write instead."""
    where = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        lines = []
        for key in sorted(set(error.instance) - set(known)):
            dotted = f"{where}.{key}" if where else str(key)
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = (f"did you mean {where + '.' if where else ''}{close[0]}?" if close
                    else f"valid keys here: {', '.join(known)}")
            lines.append(f"unknown config key {dotted}; {hint}")
        return "; ".join(lines) + f" ({SCHEMA_NAME} documents every key)"
    value = _shown(error.instance)
    wants = {
        "type": lambda v: f"must be of type {' or '.join(v) if isinstance(v, list) else v}",
        "enum": lambda v: f"must be one of {', '.join(map(str, v))}",
        "minimum": lambda v: f"must be at least {v}",
        "maximum": lambda v: f"must be at most {v}",
        "exclusiveMinimum": lambda v: f"must be greater than {v}",
        "exclusiveMaximum": lambda v: f"must be less than {v}",
        "required": lambda v: f"needs the keys {', '.join(v)}",
    }.get(error.validator)
    why = wants(error.validator_value) if wants else error.message[:200]
    return f"config key {where or '(top level)'} {why}, got {value} (see {SCHEMA_NAME})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
