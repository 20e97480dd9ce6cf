"""The default demo's base set is learnable: a short training of ChangeNet-lite on the base training set
(the workspace's own spec, 8 epochs, CPU) separates the validation rows that carry no gap content.
The KPI failures the DEFT loop works on must come from the deliberate gaps, not from a model that
cannot learn the base distribution (the old demo's Phase 1 trials stayed at 55-73% validation FAR).

The bound is chosen from measurements (2-core AMD EPYC VM, the spec's lr 0.001, 8 epochs; README,
"Measured on the embedded demo"): smt demo seeds 1/2/3 give 2.5/0.8/4.0%, so 10% leaves room for
another CPU's figures while failing a demo (or a model) that does not learn (an untrained model
gives 60-100%). The bare-board world is not tested here: its seeds give 1.5/87.7/13.2%, seed 2
does not learn in 8 epochs at this LR (Phase 1's search is what finds it one)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from aoideft import inference, kpi, spec as tao_spec, trainer
from aoideft.demo.workspace import DemoConfig, generate_workspace

EPOCHS = 8
SEED = 1
FAR_BOUND_PCT = 10.0  # validation FAR at 100% recall on rows without gap content


def no_gap_far_pct(workspace: Path, scored: pd.DataFrame) -> float:
    """FAR at 100% recall on the validation rows whose demo truth lists no gap content. demo_truth.csv
    is read here, for scoring only; no model ever sees it."""
    truth = pd.read_csv(workspace / "demo_truth.csv", dtype=str, keep_default_na=False).set_index("object_name")
    without_gap = scored["object_name"].map(truth["gap_content"]).eq("").to_numpy()
    is_defect = kpi.defect_mask(scored["label"])[without_gap]
    scores = kpi.parse_scores(scored[kpi.SCORE_COLUMN])[without_gap]
    return kpi.operating_point_at_recall(is_defect, scores).far_pct


@pytest.mark.parametrize("kind", ["smt"])
def test_a_short_training_learns_the_default_demo_base_set(kind, tmp_path):
    workspace = tmp_path / "workspace"
    generate_workspace(workspace, DemoConfig.from_preset("default", kind=kind, seed=SEED))
    spec = tao_spec.with_overrides(tao_spec.load_spec(workspace / "specs" / "baseline_spec.yaml"),
                                   {"train.num_epochs": EPOCHS})
    trainer.train_from_spec(spec, tmp_path / "train", spec_base_dir=workspace, options={"verbose": False})
    scored = inference.run_inference(tmp_path / "train" / "best_val.pth",
                                     workspace / "train" / "base" / "validation_set.csv", workspace / "images",
                                     tmp_path / "validation_inference.csv")
    assert no_gap_far_pct(workspace, scored) <= FAR_BOUND_PCT
