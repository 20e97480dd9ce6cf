"""The report's context: plain data (no file reads), built by ``aoideft.workflow.report_context``.

Only ``header`` and ``models`` are required; every other section may be absent or empty and then
renders as a short "not available" line, so interim reports (mid-loop) render too. Percentages are
0-100 (``*_pct``), shares and recalls 0-1, intervals ``[low, high]`` in the unit of their value.

The renderer (``report.render``) adds the verdicts: KPI met, whether the loop helped, the tone of
each delta. Every judgement (a green or red mark) names its basis: the held-out KPI half (nothing in the loop
reads it), validation (what every model choice used) or, with ``deft.kpi_holdout: 0``, the whole KPI
set (TAO's figure, its threshold chosen on the same rows).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

Tone = Literal["good", "bad", "warn", "neutral"]


class Verdict(TypedDict):
    tone: Tone
    headline: str
    detail: str
    basis: str  # e.g. "held-out KPI half", "the accept-or-keep gate"


class Header(TypedDict, total=False):
    title: str
    run_dir: str
    generated_at: str
    kpi_target: float  # FAR@100% recall target, percent; required
    iterations_run: int
    max_iterations: int
    stop_reason: str
    in_progress: bool  # interim report: no delivered model yet
    basis: str  # the judgement basis in words: "held-out KPI half" | "whole KPI set"
    basis_key: Literal["held_out", "whole"]


class RowSet(TypedDict, total=False):
    """One model on one set of rows: at the deploy threshold and at re-chosen thresholds."""

    name: str  # "validation", "held-out KPI half", "targeting KPI half", "whole KPI set"
    key: str  # validation | targeting | held_out | whole
    is_basis: bool
    n_pass: int
    n_defect: int
    recall: float | None  # at the deploy threshold
    recall_ci95: list[float] | None  # Wilson
    missed: int | None
    far_pct: float | None  # at the deploy threshold
    far_ci95: list[float] | None  # Wilson, percent
    far100_pct: float | None  # FAR@100% recall, threshold chosen on these rows
    far100_ci95: list[float] | None  # bootstrap
    far_99_9_pct: float | None
    far_99_9_ci95: list[float] | None
    far_99_5_pct: float | None
    far_99_5_ci95: list[float] | None
    far_99_pct: float | None
    auroc: float | None
    best_f1: dict[str, float] | None  # threshold, f1, precision, recall, far_pct
    confusion: dict[str, int] | None  # tp, fn, fp, tn at the deploy threshold


class Delivery(TypedDict, total=False):
    final: bool  # best_model.json exists; False: the incumbent so far
    label: str
    checkpoint: str
    inference_spec: str | None
    training_spec: str | None
    threshold: float
    threshold_from: str  # "validation, 100% recall" | "KPI set, 100% recall"
    how_chosen: list[str]  # sentences
    sets: list[RowSet]  # the basis set is the one whose FAR@100% recall decides MET / NOT MET
    cautions: list[str]


class Difference(TypedDict, total=False):
    recall: str  # "100%", "99.5%"
    model_far_pct: float
    reference_far_pct: float
    difference_pp: float
    low: float
    high: float
    p_lower: float  # share of paired resamples where the model's FAR is lower


class LoopEffect(TypedDict, total=False):
    model: str  # the delivered model (or the incumbent so far)
    reference: str  # "baseline"
    differences: list[Difference]  # model - reference on the basis rows (empty when they are one model)
    validation: list[str]  # the gate's decisions, in words


class ModelRow(TypedDict, total=False):
    label: str  # "Phase 1 AutoML best (rec1)", "baseline", "iter1".., "final_automl"
    phase: str
    delivered: bool
    accepted: bool | None  # the gate (None: no gate for this row)
    basis_far_pct: float | None  # FAR@100% recall on the basis rows
    basis_far_ci95: list[float] | None
    delta: Difference | None  # vs baseline, paired, on the basis rows
    kpi_far_pct: float | None  # whole KPI set, threshold chosen on it (TAO)
    deployable_far_pct: float | None  # basis rows at the validation threshold
    deployable_recall: float | None
    val_far_pct: float | None
    val_expected_far_pct: float | None  # the selection score
    threshold: float | None  # deploy (validation) threshold
    best_ckpt_kind: str | None
    note: str


# "pass" is a keyword, so this one is spelt the functional way.
Histogram = TypedDict("Histogram", {
    "title": str,
    "edges": list[float],  # logit-spaced (report.stats.logit_histogram)
    "pass": list[int],
    "defect": list[int],
    "unscored_pass": int,
    "unscored_defect": int,
    "thresholds": list[dict[str, Any]],  # {"value", "label", "color"?}
}, total=False)


class Curve(TypedDict, total=False):
    label: str
    far_pct: list[float]
    recall: list[float]
    marker: dict[str, Any] | None  # {"far_pct", "recall", "label"}: the deploy threshold's point


class Pair(TypedDict, total=False):
    caption: str
    golden_png_b64: str  # base64 PNG or a data:image/png;base64 URI
    test_png_b64: str


class MissedDefect(TypedDict, total=False):
    half: str
    label: str
    object_name: str
    score: float
    margin: float  # threshold - score
    metadata: str
    pair: Pair | None


class Missed(TypedDict, total=False):
    threshold: float
    rows: list[MissedDefect]
    total: int
    file: str


class DefectType(TypedDict, total=False):
    label: str
    count: int
    score_min: float | None
    score_median: float | None
    score_max: float | None
    caught: int | None  # at the deploy threshold, whole KPI set
    held_out_count: int | None
    held_out_caught: int | None


class Addition(TypedDict, total=False):
    source: str  # sdg | mined_neighbour | mined_hard_example
    rows: int
    by_label: list[tuple[str, int]]


class TrainingData(TypedDict, total=False):
    iteration: str
    training_rows: int | None
    rows_added: int | None
    additions: list[Addition]
    synthetic_rows: int | None  # in the whole training set
    synthetic_share: float | None  # of the training set (what the cap limits)


class GateRow(TypedDict, total=False):
    iteration: str
    incumbent: str
    accepted: bool
    p_better: float  # on validation
    p_worse: float | None
    candidate_expected_far_pct: float | None
    incumbent_expected_far_pct: float | None
    targeting_p_better: float | None  # on the KPI targeting half (basis "targeting")
    targeting_candidate_far_pct: float | None
    targeting_incumbent_far_pct: float | None
    note: str


class Gate(TypedDict, total=False):
    enabled: bool
    basis: str  # "targeting" or "validation" (deft.gate.basis)
    confidence: float
    resamples: int
    rows: list[GateRow]


class FailureMode(TypedDict, total=False):
    id: str
    description: str
    size: int
    share: float
    lift: float | None
    p_value: float | None
    labels: str
    sdg_rows: int | None
    mining_rows: int | None
    examples: list[Pair]


class IterationSection(TypedDict, total=False):
    label: str
    accepted: bool | None
    incumbent: str | None
    decision: str
    histogram: Histogram | None  # the rows RCA read (targeting half)
    rca_summary: str
    routed_in: str | None
    routing: str
    modes: list[FailureMode]
    facts: list[tuple[str, str]]  # SDG verification, mining, ...
    warnings: list[str]
    seconds: float | None


class Trial(TypedDict, total=False):
    rec_id: int
    status: str
    score: float | None
    val_loss: float | None
    collapsed: bool | None
    seconds: float | None
    params: dict[str, Any]
    winner: bool


class TrialTable(TypedDict, total=False):
    phase: str
    metric_name: str
    params: list[str]
    trials: list[Trial]
    winner: dict[str, Any]  # the winning spec values
    note: str


class StageTimes(TypedDict, total=False):
    stages: list[str]
    rows: list[dict[str, Any]]  # {"iteration", "seconds": {stage: s}, "total"}
    totals: dict[str, float]
    phase_seconds: list[tuple[str, float]]  # ("Phase 1 AutoML trials", s)


class Sample(TypedDict, total=False):
    caption: str
    kind: Literal["real", "synthetic", "mined"]
    golden_png_b64: str
    test_png_b64: str


class ReportContext(TypedDict, total=False):
    header: Header
    models: list[ModelRow]
    delivery: Delivery | None
    loop_effect: LoopEffect | None
    histogram: Histogram | None  # the delivered model on the basis rows
    curves: list[Curve]  # recall vs FAR on the basis rows
    curve_floor_pct: float | None  # one PASS part of the basis rows, the FAR axis's lower end
    missed: Missed | None
    defect_types: list[DefectType]
    training_data: list[TrainingData]
    synthetic_cap: float | None
    gate: Gate | None
    iterations: list[IterationSection]
    trials: list[TrialTable]
    stage_times: StageTimes | None
    samples: list[Sample]
    recommendations: list[str]
