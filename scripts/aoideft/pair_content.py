"""Image pairs identified by their content, not their path: leakage and duplicates across the workspace.

A row's ``row_key`` (input_path/object_name) names where its images are; two rows whose files hold
the same bytes (every light, test and golden) are the same pair whatever their paths. The pre-flight
gives every row its pair key (``csvdata.ImageCheck.pair_keys``, built on the decode cache's content
key) and ``check_content`` applies the contract to them:

- train, validation and KPI: a pair in two of them is leakage, a pair twice in one of them a
  duplicate; both are a hard stop naming the rows, and rows of one pair with different labels are
  named as a conflict;
- the mining pool: a row repeating a train, validation or KPI pair (same path or same content) is
  excluded from mining and counted; so is a pool row repeating an earlier pool row; a pool pair that
  carries other labels elsewhere is excluded and named (which label is right cannot be guessed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from .csvdata import MAX_LISTED, listing, row_key
from .errors import InputError

SPLITS = ("train", "validation", "kpi")
LEAKAGE_PAIRS = [("train", "validation"), ("train", "kpi"), ("validation", "kpi")]
POOL = "pool"


@dataclass
class PoolContent:
    """What mining must skip in the pool, and why (``to_json``/``from_json``: inputs/workspace.json)."""

    overlaps: dict[str, int] = field(default_factory=dict)  # pool rows repeating a row of that split
    repeats: int = 0  # pool rows repeating an earlier pool pair with the same label
    excluded: list[str] = field(default_factory=list)  # row keys of every pool row mining skips
    notes: list[str] = field(default_factory=list)  # conflicting labels, named

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> PoolContent:
        return cls(**record)


@dataclass(frozen=True)
class _Row:
    source: str  # the CSV, as messages name it
    row: int  # 1-based data row
    key: str  # row_key
    label: str

    def describe(self) -> str:
        return f"{self.source} row {self.row} ({self.key}, {self.label})"


def _rows(frame: pd.DataFrame, source: str) -> list[_Row]:
    return [_Row(source, number, key, label)
            for number, (key, label) in enumerate(zip(row_key(frame), frame["label"]), start=1)]


def check_content(frames: dict[str, pd.DataFrame], pair_keys: dict[str, list[str]],
                  sources: dict[str, str]) -> PoolContent:
    """Hard stop (InputError) on duplicates within and leakage across train/validation/KPI by
    content; the pool's exclusions. ``sources`` names each CSV in messages."""
    rows = {name: _rows(frames[name], sources[name]) for name in frames}
    by_pair = {name: _group(rows[name], pair_keys[name]) for name in frames}
    for name in SPLITS:
        _check_no_repeats(by_pair[name], sources[name])
    _check_no_shared_pairs(by_pair)
    return _pool_content(rows, by_pair)


def _group(rows: list[_Row], keys: list[str]) -> dict[str, list[_Row]]:
    groups: dict[str, list[_Row]] = {}
    for row, key in zip(rows, keys):
        groups.setdefault(key, []).append(row)
    return groups


def _labels(rows: list[_Row]) -> str:
    labels = sorted({row.label for row in rows})
    return f"conflicting labels {' vs '.join(labels)}" if len(labels) > 1 else f"both {labels[0]}"


def _check_no_repeats(groups: dict[str, list[_Row]], source: str) -> None:
    repeated = [group for group in groups.values() if len(group) > 1]
    if not repeated:
        return
    first = repeated[0]
    conflict = len({row.label for row in first}) > 1
    fix = ("one pair cannot have two labels: keep the row with the right label" if conflict
           else "keep one row per pair")
    extra = sum(len(group) - 1 for group in repeated)
    more = f" ({extra} repeated rows in all)" if extra > 1 else ""
    raise InputError(f"{source}: rows {' and '.join(str(row.row) for row in first[:2])} hold byte-identical image "
                     f"pairs (every light, test and golden) under the paths {first[0].key} and {first[1].key}, "
                     f"{_labels(first[:2])}{more}; {fix}")


def _check_no_shared_pairs(by_pair: dict[str, dict[str, list[_Row]]]) -> None:
    problems = []
    for first, second in LEAKAGE_PAIRS:
        shared = [key for key in by_pair[first] if key in by_pair[second]]
        if shared:
            pairs = []
            for key in shared:
                one, other = by_pair[first][key][0], by_pair[second][key][0]
                pairs.append(f"{one.describe()} = {other.describe()}"
                             + (" (conflicting labels)" if one.label != other.label else ""))
            problems.append(f"{first} and {second} must not overlap, but {len(shared)} image pair(s) are in both "
                            f"under other paths (byte-identical files): {listing(pairs)}")
    if problems:
        raise InputError("hard stop: " + "; ".join(problems) + ". Remove the copies from one side.")


def _pool_content(rows: dict[str, list[_Row]], by_pair: dict[str, dict[str, list[_Row]]]) -> PoolContent:
    content = PoolContent(overlaps={name: 0 for name in SPLITS})
    excluded: set[str] = set()
    split_keys = {name: {row.key for row in rows[name]} for name in SPLITS}
    for pair, group in by_pair[POOL].items():
        for row in group:
            for name in SPLITS:
                same = by_pair[name].get(pair, [])
                if row.key in split_keys[name] or same:
                    content.overlaps[name] += 1
                    excluded.add(row.key)
                if same and same[0].label != row.label:
                    content.notes.append(f"{row.describe()} repeats {same[0].describe()} with another label: "
                                         "excluded from mining")
        if len(group) > 1:
            if len({row.label for row in group}) > 1:
                excluded.update(row.key for row in group)
                content.notes.append(f"pool rows {', '.join(str(row.row) for row in group)} hold one image pair "
                                     f"({group[0].key}, ...) with {_labels(group)}: all excluded from mining")
            else:
                content.repeats += len(group) - 1
                excluded.update(row.key for row in group[1:])
    content.excluded = sorted(excluded)
    if len(content.notes) > MAX_LISTED:
        hidden = len(content.notes) - MAX_LISTED
        content.notes = [*content.notes[:MAX_LISTED], f"... and {hidden} more pool label conflicts like these "
                                                      "(all excluded from mining)"]
    return content
