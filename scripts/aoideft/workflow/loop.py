"""How far the DEFT loop went: the one walk over its decision and gate files.

Snakemake's input functions walk it through checkpoints (so each further iteration enters the DAG
only once the previous decision exists); the deft_finish job walks the same files on disk. Both
pass readers to ``walk_loop``, so the rule for "what ran" lives in one place. No heavy imports:
this module is loaded at parse time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def iteration_number(label: str) -> int:
    """0 for "baseline", n for "iter<n>"."""
    return 0 if label == "baseline" else int(label[len("iter"):])


@dataclass(frozen=True)
class LoopWalk:
    labels: list[str]  # "baseline", "iter1", ... : every evaluated model of the loop
    decision: dict[str, Any]  # the last decision read (the stop decision unless a gate hard-stopped)
    hard_gate: dict[str, Any] | None  # the dataset gate that hard-stopped iteration `hard_stop_iteration`
    hard_stop_iteration: int | None

    @property
    def hard_stopped(self) -> bool:
        """A hard stop (a dataset gate, or an unreachable KPI): Phase 3 does not run."""
        return self.hard_gate is not None or bool(self.decision.get("hard_stop"))

    def files(self) -> list[str]:
        """The decision (and hard-stopping gate) files the walk read, relative to the run dir."""
        files = [f"{label}/decision.json" for label in self.labels]
        if self.hard_stop_iteration is not None:
            files.append(f"iter{self.hard_stop_iteration}/dataset/gate.json")
        return files


def walk_loop(read_decision: Callable[[str], dict[str, Any]],
              read_gate: Callable[[int], dict[str, Any]]) -> LoopWalk:
    """Follow the decisions from the baseline: iteration n runs while the previous decision says
    continue, and counts once its dataset gate passed."""
    labels = ["baseline"]
    decision = read_decision("baseline")
    while not decision["stop"]:
        n = len(labels)
        gate = read_gate(n)
        if gate["hard_stop"]:
            return LoopWalk(labels, decision, gate, n)
        labels.append(f"iter{n}")
        decision = read_decision(f"iter{n}")
    return LoopWalk(labels, decision, None, None)


def embeds_pool(label: str, max_iterations: int) -> bool:
    """Whether iteration ``label``'s inference scores and embeds the mining pool: only the mining of a
    later iteration reads them, so the last iteration the loop may run skips that pass."""
    return iteration_number(label) < max_iterations
