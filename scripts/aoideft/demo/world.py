"""What a demo world is: the generator-independent description ``workspace`` plans and writes from.

A world (``smt``: assembled boards, ``bare_board``: bare copper) names its lights, its component or
region types, its defect labels, its PASS nuisance modes, the shares each split is planned with and
its deliberate distribution gaps, and renders one planned row into golden/test images. Everything
else (split plans, per-row seeds, CSVs, the spec, the manifest, parallel writing) is shared, so the
DEFT engine is developed against two generators that have nothing but the data contract in common.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Gap:
    column: str  # label | comp_type_1 | nuisance
    value: str
    share: float  # at gap level 1: share of the defect rows (labels) or of all rows
    why: str


@dataclass(frozen=True)
class ComponentInfo:
    """CSV metadata of a component type (SMT) or region type (bare board)."""

    designator: str  # prefix of comp_name
    part_type: str
    pins: int


@dataclass(frozen=True)
class RenderedRow:
    """One rendered pair: uint8 [H, W, 3] images per light, their JPEG qualities, and the world's
    own ground-truth fields (added to demo_truth.csv after the shared ones)."""

    golden: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    golden_quality: int
    test_quality: int
    truth: dict[str, Any]


@dataclass(frozen=True)
class World:
    kind: str
    title: str  # one line for DEMO_GAPS.md
    light_order: tuple[str, ...]  # --lights N takes the first N
    default_lights: int
    components: dict[str, ComponentInfo]
    boards: tuple[str, ...]
    gaps: tuple[Gap, ...]
    base_shares: dict[str, dict[str, float]]  # label (defect rows) / comp_type_1 / nuisance, before the gaps
    nuisance_descriptions: dict[str, str]
    defects_markdown: str  # the "Defects" section of DEMO_GAPS.md
    compatible: Callable[[str, str], bool]  # (label, component type) -> physical?
    render: Callable[..., RenderedRow]  # (plan, config, rng, golden_rng) -> RenderedRow

    def target_shares(self, column: str, gap_level: float) -> dict[str, float]:
        """Planned share of each value of ``column`` (labels: among defect rows) at a gap level."""
        gaps = {g.value: g.share * gap_level for g in self.gaps if g.column == column}
        base = self.base_shares[column]
        rest = 1.0 - sum(gaps.values())
        shares = {value: weight / sum(base.values()) * rest for value, weight in base.items()}
        shares.update(gaps)
        return shares

    def gap_content(self, values: dict[str, str]) -> list[str]:
        """``column:value`` of every gap a row's label / comp_type_1 / nuisance belongs to."""
        return [f"{g.column}:{g.value}" for g in self.gaps if values[g.column] == g.value]
