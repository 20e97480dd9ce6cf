"""Routing: send each RCA gap row to SDG, to mining, to both, or nowhere (TAO: by label only).

The decision for all rows is made by one *strategy* function (``label_strategy`` here) that returns
a ``to_sdg`` / ``to_mining`` / ``drop_reason`` frame aligned with the gaps; ``route`` only splits.
A joint strategy (e.g. a budgeted ILP over failure-mode groups) replaces the strategy, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection

import pandas as pd

from aoideft import fsutil

# TAO's SDG labels: the defect types its AnomalyGen model was trained for, plus PASS nuisance variants.
DEFAULT_SDG_LABELS = frozenset({"PASS", "EXCESS_SOLDER", "MISSING", "BRIDGE"})
DECISION_COLUMNS = ("to_sdg", "to_mining", "drop_reason")

Strategy = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Routing:
    sdg: pd.DataFrame
    mining: pd.DataFrame
    dropped: pd.DataFrame  # gap rows + drop_reason

    def summary(self) -> dict:
        labels = sorted(set(self.sdg["label"]) | set(self.mining["label"]) | set(self.dropped["label"]))
        per_label = {
            str(label): {
                "sdg_rows": int((self.sdg["label"] == label).sum()),
                "mining_rows": int((self.mining["label"] == label).sum()),
                "dropped_rows": int((self.dropped["label"] == label).sum()),
                "sdg_samples": _samples(self.sdg[self.sdg["label"] == label]),
                "mining_samples": _samples(self.mining[self.mining["label"] == label]),
                "dropped_samples": _samples(self.dropped[self.dropped["label"] == label]),
            }
            for label in labels
        }
        reasons = self.dropped["drop_reason"].value_counts().sort_index() if len(self.dropped) else pd.Series(dtype=int)
        return {
            "sdg_rows": len(self.sdg),
            "mining_rows": len(self.mining),
            "dropped_rows": len(self.dropped),
            "sdg_samples": _samples(self.sdg),
            "mining_samples": _samples(self.mining),
            "dropped_samples": _samples(self.dropped),
            "per_label": per_label,
            "drop_reasons": {str(reason): int(count) for reason, count in reasons.items()},
        }


def label_strategy(*, sdg_labels: Collection[str], pool_labels: Collection[str]) -> Strategy:
    """TAO's rule: SDG for ``sdg_labels``; mining for labels present in the pool; a row may go to both."""
    sdg_set, pool_set = frozenset(sdg_labels), frozenset(pool_labels)

    def decide(gaps: pd.DataFrame) -> pd.DataFrame:
        labels = gaps["label"].astype(str)
        to_sdg = labels.isin(sdg_set)
        to_mining = labels.isin(pool_set)
        reason = labels.map(lambda label: f"label {label} is not an SDG label and no mining-pool row has it")
        return pd.DataFrame(
            {"to_sdg": to_sdg, "to_mining": to_mining, "drop_reason": reason.where(~to_sdg & ~to_mining)},
            index=gaps.index,
        )

    return decide


def route(gaps: pd.DataFrame, strategy: Strategy) -> Routing:
    """Split ``gaps`` by the strategy's per-row decisions (rows keep all their columns)."""
    decisions = strategy(gaps)
    if list(decisions.columns) != list(DECISION_COLUMNS) or not decisions.index.equals(gaps.index):
        raise ValueError(f"a routing strategy must return columns {DECISION_COLUMNS} aligned with the gaps")
    to_sdg = decisions["to_sdg"].astype(bool)
    to_mining = decisions["to_mining"].astype(bool)
    nowhere = ~to_sdg & ~to_mining
    dropped = gaps[nowhere].assign(drop_reason=decisions.loc[nowhere, "drop_reason"].astype(str))
    return Routing(
        sdg=gaps[to_sdg].reset_index(drop=True),
        mining=gaps[to_mining].reset_index(drop=True),
        dropped=dropped.reset_index(drop=True),
    )


def route_by_label(
    gaps: pd.DataFrame, *, sdg_labels: Collection[str] = DEFAULT_SDG_LABELS, pool_labels: Collection[str]
) -> Routing:
    return route(gaps, label_strategy(sdg_labels=sdg_labels, pool_labels=pool_labels))


def write_routing(routing: Routing, out_dir: str | Path) -> None:
    """routing_sdg.parquet, routing_mining.parquet, routing_dropped.parquet, routing_summary.json."""
    out = Path(out_dir)
    fsutil.write_parquet(out / "routing_sdg.parquet", routing.sdg)
    fsutil.write_parquet(out / "routing_mining.parquet", routing.mining)
    fsutil.write_parquet(out / "routing_dropped.parquet", routing.dropped)
    fsutil.write_json(out / "routing_summary.json", routing.summary())


def _samples(frame: pd.DataFrame) -> int:
    """Distinct weak samples (gap rows are per light); falls back to rows without a row_key column."""
    return int(frame["row_key"].nunique()) if "row_key" in frame.columns else len(frame)
