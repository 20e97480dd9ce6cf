"""The KPI set's split into a targeting half and a held-out half."""

import numpy as np
import pandas as pd
import pytest

from aoideft import holdout
from aoideft.errors import InputError


def kpi_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"input_path": [f"kpi/B{i % 7}/test" for i in range(n)], "object_name": [f"{i:06d}" for i in range(n)],
                         "label": ["PASS" if i % 5 else "OPEN" for i in range(n)], "boardname": [f"B{i % 7}" for i in range(n)]})


def test_the_split_is_deterministic_near_its_fraction_and_independent_of_row_order():
    frame = kpi_frame(4000)
    mask = holdout.held_out_mask(frame, 0.5)
    assert mask.mean() == pytest.approx(0.5, abs=0.03)
    assert np.array_equal(mask, holdout.held_out_mask(frame.copy(), 0.5))
    shuffled = frame.sample(frac=1.0, random_state=0)
    assert np.array_equal(holdout.held_out_mask(shuffled, 0.5), mask[shuffled.index])
    assert holdout.held_out_mask(frame, 0.2).mean() == pytest.approx(0.2, abs=0.03)
    # a row held out at 20% is held out at 50% too: one hash, one cut
    assert not (holdout.held_out_mask(frame, 0.2) & ~mask).any()
    assert not holdout.held_out_mask(frame, 0.0).any()


def test_a_group_column_keeps_every_group_on_one_side():
    frame = kpi_frame(700)
    mask = holdout.held_out_mask(frame, 0.5, "boardname")
    sides = pd.Series(mask).groupby(frame["boardname"]).nunique()
    assert (sides == 1).all() and 0 < mask.sum() < len(frame)
    counts = holdout.split_counts(frame, mask)
    assert counts["targeting"]["rows"] + counts["held_out"]["rows"] == 700
    assert counts["held_out"]["defect"] == int((mask & (frame["label"] != "PASS")).sum())


def test_bad_settings_are_input_errors():
    with pytest.raises(InputError, match="kpi_holdout_group"):
        holdout.held_out_mask(kpi_frame(10), 0.5, "serial")
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        holdout.held_out_mask(kpi_frame(10), 1.0)
