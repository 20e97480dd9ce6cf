"""Routing: send each RCA gap row to SDG, to mining, to both, or nowhere (TAO: by label only).

The decision for all rows is made by one *strategy* function (``label_strategy`` here) that returns
a ``to_sdg`` / ``to_mining`` / ``drop_reason`` frame aligned with the gaps; ``route`` only splits.
A joint strategy (e.g. a budgeted ILP over failure-mode groups) replaces the strategy, nothing else.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aoideft import fsutil
from aoideft.errors import InputError

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


# ---------------------------------------------------------------------------------------------
# Failure-mode routing: a budgeted integer program over the modes (PuLP + CBC)


@dataclass(frozen=True)
class Budget:
    """Per-iteration limits: new rows in all, synthetic rows, compute seconds (None = unlimited)."""

    max_new_rows: int
    sdg_rows: int
    compute_s: float | None = None
    sdg_row_cost_s: float = 0.0  # generation and verification of one synthetic row
    row_train_cost_s: float = 0.0  # retraining on one more row (all epochs)
    max_synthetic_share: float = 1.0  # of the combined training set after this iteration
    previous_rows: int = 0
    previous_synthetic_rows: int = 0

    def __post_init__(self) -> None:
        for name in ("max_new_rows", "sdg_rows", "previous_rows", "previous_synthetic_rows"):
            if getattr(self, name) < 0:
                raise InputError(f"routing budget {name} must be >= 0, got {getattr(self, name)}.")
        if self.compute_s is not None and self.compute_s <= 0:
            raise InputError(f"routing budget compute_s must be > 0 or null, got {self.compute_s}.")
        if not 0.0 <= self.max_synthetic_share <= 1.0:
            raise InputError(f"max_synthetic_share must be in [0, 1], got {self.max_synthetic_share}.")


@dataclass(frozen=True)
class ModeDemand:
    """What the program knows about one failure mode."""

    mode_id: str
    weight: float  # share of all weak rows (modes' weights sum to 1)
    size: int  # weak rows in the mode
    available: int  # distinct eligible pool rows above the similarity floor, assigned to this mode


@dataclass(frozen=True)
class Plan:
    rows: dict[str, dict[str, int]]  # mode id -> {"sdg": n, "mining": n}
    status: str  # "optimal", or the fallback taken
    message: str
    objective: float

    @property
    def sdg_total(self) -> int:
        return sum(r["sdg"] for r in self.rows.values())

    @property
    def mining_total(self) -> int:
        return sum(r["mining"] for r in self.rows.values())


SATURATION_RATE = 0.5  # rows of one source beyond a mode's size count half: more of the same teaches less


def plan_rows(demands: list[ModeDemand], budget: Budget, *, rows_per_weak_row: int = 4,
              synthetic_value: float = 0.8, time_limit_s: float = 60.0) -> Plan:
    """Rows from SDG and from mining per mode, maximising the documented benefit under the budget.

    benefit = sum over modes m of weight_m * (  mined_m up to size_m + 0.5 * mined_m beyond size_m
                                              + synthetic_value * (sdg_m up to size_m + 0.5 * sdg_m beyond) )
    subject to  sum(sdg + mining) <= max_new_rows;  sum(sdg) <= sdg_rows;  mining_m <= available_m;
                sdg_m + mining_m <= rows_per_weak_row * size_m;  compute (if set);  the synthetic-share cap.
    A real row is worth one unit, a synthetic row ``synthetic_value``, weighted by the mode's share
    of the failures, so the larger mode is served first; each source saturates per mode, so once a
    mode has as many mined rows as weak rows, synthetic rows (another view of the same failure) are
    worth more than further mined ones, and a mode stops at its cap.
    """
    import pulp

    if not demands:
        return Plan({}, "no_modes", "no failure modes to route to (no weak rows)", 0.0)
    if rows_per_weak_row < 1 or not 0.0 <= synthetic_value <= 1.0:
        raise InputError(f"rows_per_weak_row must be >= 1 and synthetic_value in [0, 1], got "
                         f"{rows_per_weak_row} and {synthetic_value}.")
    problem = pulp.LpProblem("deft_routing", pulp.LpMaximize)
    sdg, mining, value = {}, {}, []
    for i, demand in enumerate(demands):
        cap = rows_per_weak_row * demand.size
        sdg[i] = problem.add_variable(f"sdg_{i}", 0, cap, cat="Integer")
        mining[i] = problem.add_variable(f"mining_{i}", 0, min(cap, demand.available), cat="Integer")
        problem += sdg[i] + mining[i] <= cap, f"cap_{i}"
        for source, rows, worth in (("sdg", sdg[i], synthetic_value), ("mining", mining[i], 1.0)):
            first = problem.add_variable(f"{source}_first_{i}", 0, demand.size)
            extra = problem.add_variable(f"{source}_extra_{i}", 0, cap)
            problem += rows == first + extra, f"{source}_split_{i}"
            value.append(demand.weight * worth * (first + SATURATION_RATE * extra))
    problem += pulp.lpSum(value)
    total_sdg = pulp.lpSum(sdg.values())
    total_mining = pulp.lpSum(mining.values())
    problem += total_sdg + total_mining <= budget.max_new_rows, "max_new_rows"
    problem += total_sdg <= budget.sdg_rows, "sdg_rows"
    if budget.compute_s is not None:
        problem += (budget.sdg_row_cost_s * total_sdg
                    + budget.row_train_cost_s * (total_sdg + total_mining) <= budget.compute_s), "compute_s"
    share = budget.max_synthetic_share
    problem += ((1 - share) * total_sdg - share * total_mining
                <= share * budget.previous_rows - budget.previous_synthetic_rows), "synthetic_share"
    with warnings.catch_warnings():
        # PuLP 3.3 (pinned) bundles CBC behind PULP_CBC_CMD and warns it will move to an extra in 4.0;
        # that extra is a 190 MB download, so we keep the bundled solver until the pin moves.
        warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s, threads=1)
    status = pulp.LpStatus[problem.solve(solver)]
    if status != "Optimal":
        return _mining_only(demands, budget, rows_per_weak_row,
                            f"the routing program is {status.lower()} (synthetic share already above "
                            f"{share:.0%}?); fallback: no synthetic rows, mining by mode weight")
    rows = {d.mode_id: {"sdg": int(round(sdg[i].value())), "mining": int(round(mining[i].value()))}
            for i, d in enumerate(demands)}
    plan = Plan(rows, "optimal", "", float(pulp.value(problem.objective)))
    if plan.sdg_total + plan.mining_total == 0:
        return Plan(rows, "empty", _empty_reason(demands, budget), 0.0)
    return plan


def _mining_only(demands: list[ModeDemand], budget: Budget, rows_per_weak_row: int, message: str) -> Plan:
    """The defined fallback: no SDG; mining rows to modes in weight order, within availability and budget."""
    left = budget.max_new_rows
    if budget.compute_s is not None and budget.row_train_cost_s > 0:
        left = min(left, int(budget.compute_s // budget.row_train_cost_s))
    rows = {}
    for demand in sorted(demands, key=lambda d: (-d.weight, d.mode_id)):
        take = max(0, min(left, demand.available, rows_per_weak_row * demand.size))
        rows[demand.mode_id] = {"sdg": 0, "mining": take}
        left -= take
    return Plan(rows, "fallback_mining_only", message, 0.0)


def _empty_reason(demands: list[ModeDemand], budget: Budget) -> str:
    if budget.max_new_rows == 0:
        return "the row budget max_new_rows is 0"
    if budget.sdg_rows == 0 and not any(d.available for d in demands):
        return "no pool row of any mode reaches the similarity floor and the SDG budget is 0"
    return "no row fits the budgets (compute or synthetic-share cap)"


def mode_targets(targets: pd.DataFrame, plan: Plan, source: str) -> pd.DataFrame:
    """The weak rows of the modes that ``plan`` gives rows from ``source`` ("sdg" or "mining"), with the quota."""
    quota = {mode: rows[source] for mode, rows in plan.rows.items() if rows[source] > 0}
    chosen = targets[targets["failure_mode"].isin(quota)].copy()
    chosen["mode_quota"] = chosen["failure_mode"].map(quota).astype(int)
    return chosen.reset_index(drop=True)


def write_plan(plan: Plan, demands: list[ModeDemand], budget: Budget, out_dir: str | Path, **details) -> None:
    """``routing_plan.json``: the budgets, each mode's demand and allocation, the solver status."""
    by_id = {d.mode_id: d for d in demands}
    fsutil.write_json(Path(out_dir) / "routing_plan.json", {
        "status": plan.status, "message": plan.message, "objective": plan.objective,
        "budget": {k: getattr(budget, k) for k in budget.__dataclass_fields__},
        "sdg_rows": plan.sdg_total, "mining_rows": plan.mining_total,
        "modes": [{"id": mode, "weight": by_id[mode].weight, "size": by_id[mode].size,
                   "available": by_id[mode].available, **rows} for mode, rows in plan.rows.items()],
        **details,
    })
