"""Tests for aoideft.automl: TAO search-space semantics, seeded file-first proposals, selection."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from aoideft import automl, automl_space
from aoideft.automl import RecRecord
from aoideft.automl_space import SearchParam
from aoideft.errors import InputError

SCHEMA = automl_space.load_train_schema()
LR, WD, WIDTH, FLIP = ("train.optim.lr", "train.optim.weight_decay", "model.classify.learnable_difference_modules",
                       "dataset.classify.augmentation_config.random_flip.enable")
PINNED = {"train.num_epochs": 8, "dataset.classify.batch_size": 32}


@pytest.fixture(scope="module")
def space() -> list[SearchParam]:
    """A small mixed space: log float, linear float, int, bool."""
    entries = [
        {"parameter": LR, "valid_min": 1e-5, "valid_max": 1e-2},
        {"parameter": "train.optim.momentum", "valid_min": 0.8, "valid_max": 0.99},
        {"parameter": WIDTH, "valid_min": 1, "valid_max": 4},
        {"parameter": FLIP},
    ]
    return automl_space.parse_search_space(entries, SCHEMA, PINNED)


def scored(proposals: list[dict], score) -> list[RecRecord]:
    """Finished records for proposals, scored by ``score(params)``."""
    return [RecRecord(p["rec_id"], p["params"], score(p["params"]), 0.5, False, "ok") for p in proposals]


def lr_bowl(params: dict) -> float:
    """A FAR-like objective with its optimum at lr = 1e-3."""
    return 5.0 + 10.0 * abs(math.log10(params[LR]) + 3.0)


def point(proposal: dict, space: list[SearchParam]) -> tuple:
    return tuple(proposal["params"][p.name] for p in space)


# ---------------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------------
def test_types_come_from_the_schema(space):
    by_name = {p.name: p for p in space}
    assert by_name[LR] == SearchParam(LR, "float", 1e-5, 1e-2, log=True)
    assert by_name["train.optim.momentum"].kind == "float" and not by_name["train.optim.momentum"].log
    assert by_name[WIDTH] == SearchParam(WIDTH, "int", 1, 4)
    assert by_name[FLIP] == SearchParam(FLIP, "categorical", choices=(False, True))


def test_log_scale_only_for_positive_ranges_spanning_two_decades():
    def parse(low, high):
        return automl_space.parse_search_space([{"parameter": WD, "valid_min": low, "valid_max": high}], SCHEMA)[0]

    assert parse(1e-4, 1e-2).log          # ratio 100
    assert not parse(1e-3, 5e-2).log      # ratio 50
    assert not parse(0.0, 0.5).log        # starts at zero (math_cond '> 0.0' moves it off zero, still linear)
    assert parse(0.0, 0.5).low > 0.0


def test_enum_and_valid_options_make_categoricals():
    entries = [
        {"parameter": "train.optim.optim"},
        {"parameter": "train.classify.loss", "valid_options": ["ce"] + ["contrastive"]},
        {"parameter": WD, "valid_options": [1e-4, "1e-3"]},  # YAML reads 1e-3 as a string
    ]
    optim, loss, wd = automl_space.parse_search_space(entries, SCHEMA)
    assert optim.choices == ("adamw", "adam", "sgd")
    assert loss.choices == ("ce", "contrastive")
    assert wd == SearchParam(WD, "categorical", choices=(1e-4, 1e-3))


def test_default_ranges_from_schema_or_documented_defaults():
    entries = [{"parameter": LR}, {"parameter": WIDTH},
               {"parameter": "dataset.classify.augmentation_config.random_flip.hflip_probability"}]
    lr, width, hflip = automl_space.parse_search_space(entries, SCHEMA)
    assert (lr.low, lr.high, lr.log) == (1e-5, 1e-2, True)          # schema max is infinite
    assert (width.low, width.high) == (1, 4)                         # schema bounds
    assert (hflip.low, hflip.high) == (0.0, 1.0)


@pytest.mark.parametrize("key, hint", [("min", "valid_min"), ("max", "valid_max"), ("values", "valid_options"),
                                       ("valid_mni", "valid_min")])
def test_unknown_range_keys_are_refused_with_a_hint(key, hint):
    with pytest.raises(InputError, match=rf"{LR}.*unknown key '{key}'.*Did you mean '{hint}'"):
        automl_space.parse_search_space([{"parameter": LR, key: 1e-3}], SCHEMA)


@pytest.mark.parametrize("entry, message", [
    ({"parameter": LR, "valid_min": 1e-2, "valid_max": 1e-4}, "greater than valid_max"),
    ({"parameter": LR, "valid_min": 0.05}, r"valid_max is the default"),
    ({"parameter": "train.optim.momentum", "valid_max": 1.5}, "above the schema maximum 1.0"),
    ({"parameter": WIDTH, "valid_min": 1.5, "valid_max": 3}, "must be an integer"),
    ({"parameter": WIDTH, "valid_min": 2, "valid_max": 2}, "single value; pin"),
    ({"parameter": "train.classify.cls_weight"}, "list-valued"),
    ({"parameter": "train.optim.optim", "valid_options": ["adamw", "lion"]}, "'lion' is not one of"),
    ({"parameter": "train.optim.optim", "valid_min": 0}, "does not apply"),
    ({"parameter": FLIP, "option_weights": [1, 2, 3]}, "list of 2 numbers"),
    ({"parameter": "train.optim.momentum", "math_cond": "^ 2"}, "unsupported math_cond"),
    ({"parameter": "train.optim.momentum", "valid_max": 0.5, "math_cond": "> 0.6"}, "leaves no value"),
    ({"parameter": "train.precision"}, "needs valid_options"),
])
def test_invalid_entries_name_the_parameter(entry, message):
    with pytest.raises(InputError, match=message) as info:
        automl_space.parse_search_space([entry], SCHEMA)
    assert entry["parameter"] in str(info.value)


def test_unknown_parameter_suggests_the_nearest_schema_name():
    with pytest.raises(InputError, match=r"'train\.optim\.weight_decy' is not a .*'train\.optim\.weight_decay'"):
        automl_space.parse_search_space([{"parameter": "train.optim.weight_decy"}], SCHEMA)
    with pytest.raises(InputError, match=r"pinned.*'train\.num_epoch'.*Did you mean 'train\.num_epochs'"):
        automl_space.parse_search_space([], SCHEMA, {"train.num_epoch": 3})


def test_sampling_a_pinned_parameter_is_an_error():
    with pytest.raises(InputError, match=r"train\.num_epochs is pinned to 8"):
        automl_space.parse_search_space([{"parameter": "train.num_epochs", "valid_min": 2, "valid_max": 9}], SCHEMA, PINNED)


def test_math_cond_strict_bound_moves_the_edge_inward():
    (p,) = automl_space.parse_search_space([{"parameter": "train.optim.momentum", "valid_min": 0.0, "valid_max": 1.0,
                                       "math_cond": "< 1.0"}], SCHEMA)
    assert p.low == 0.0 and 0.99 < p.high < 1.0   # the entry's math_cond replaces the schema's '> 0.0'
    (default,) = automl_space.parse_search_space([{"parameter": "train.optim.momentum", "valid_min": 0.0}], SCHEMA)
    assert 0.0 < default.low < 0.01                 # the schema's '> 0.0'
    (q,) = automl_space.parse_search_space([{"parameter": WIDTH, "math_cond": "> 2"}], SCHEMA)
    assert (q.low, q.high) == (3, 4)


def test_default_search_space_is_classify_only_and_honours_ignored():
    names = [e["parameter"] for e in automl_space.default_search_space(SCHEMA)]
    assert LR in names and "dataset.classify.fpratio_sampling" in names and WIDTH in names
    assert not [n for n in names if n.startswith("dataset.segment.")]
    assert all(n.startswith(("train.optim.", "model.classify.", "dataset.classify.")) for n in names)
    fewer = automl_space.default_search_space(SCHEMA, ignored={WIDTH, "train.optim.momentum"})
    assert {e["parameter"] for e in fewer} == set(names) - {WIDTH, "train.optim.momentum"}
    assert len(automl_space.parse_search_space(fewer, SCHEMA, PINNED)) == len(fewer)


# ---------------------------------------------------------------------------------------------
# Proposals
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", automl.ALGORITHMS)
def test_same_inputs_give_identical_proposals(space, algorithm):
    round0 = automl.propose_round(space, [], [0, 1, 2], algorithm=algorithm, seed=7)
    assert automl.propose_round(space, [], [0, 1, 2], algorithm=algorithm, seed=7) == round0
    finished = scored(round0, lr_bowl)
    round1 = automl.propose_round(space, finished, [3, 4, 5], algorithm=algorithm, seed=7)
    assert automl.propose_round(space, list(reversed(finished)), [3, 4, 5], algorithm=algorithm, seed=7) == round1
    assert automl.propose_round(space, [], [0, 1, 2], algorithm=algorithm, seed=8) != round0


@pytest.mark.parametrize("algorithm", automl.ALGORITHMS)
def test_proposals_are_distinct_within_a_round_and_from_trained_points(space, algorithm):
    round0 = automl.propose_round(space, [], [0, 1, 2, 3], algorithm=algorithm, seed=1)
    round1 = automl.propose_round(space, scored(round0, lr_bowl), [4, 5, 6, 7], algorithm=algorithm, seed=1)
    points = [point(p, space) for p in round0 + round1]
    assert len(set(points)) == len(points)
    assert [p["rec_id"] for p in round1] == [4, 5, 6, 7]


def test_rounds_do_not_replay_each_others_random_draws(space):
    round0 = automl.propose_round(space, [], [0, 1], algorithm="random", seed=3)
    round1 = automl.propose_round(space, [], [2, 3], algorithm="random", seed=3)
    assert {point(p, space) for p in round0}.isdisjoint({point(p, space) for p in round1})


def test_proposals_respect_ranges_options_and_pinned_values(space):
    proposals = automl.propose_round(space, [], list(range(60)), algorithm="random", seed=5, pinned=PINNED)
    for proposal in proposals:
        params = proposal["params"]
        assert 1e-5 <= params[LR] <= 1e-2
        assert 0.8 <= params["train.optim.momentum"] <= 0.99
        assert params[WIDTH] in (1, 2, 3, 4) and isinstance(params[WIDTH], int)
        assert params[FLIP] in (False, True)
        assert {k: params[k] for k in PINNED} == PINNED
    # Log-uniform over [1e-5, 1e-2]: the median exponent is near -3.5 (uniform would put it near -2.3).
    median_exponent = statistics.median(math.log10(p["params"][LR]) for p in proposals)
    assert -4.2 < median_exponent < -2.8


def test_option_weights_bias_the_choice_and_round_trip_through_records():
    entries = [{"parameter": "train.optim.optim", "valid_options": ["adamw", "sgd"], "option_weights": [1, 9]},
               {"parameter": LR, "valid_min": 1e-5, "valid_max": 1e-2}]
    weighted = automl_space.parse_search_space(entries, SCHEMA)
    proposals = automl.propose_round(weighted, [], list(range(200)), algorithm="random", seed=2)
    share_sgd = sum(p["params"]["train.optim.optim"] == "sgd" for p in proposals) / len(proposals)
    assert 0.8 < share_sgd < 0.97
    study = automl.build_study(weighted, scored(proposals[:4], lr_bowl), algorithm="tpe", seed=0,
                               direction="minimize")
    decoded = [automl._decode_params(weighted, t.params)["train.optim.optim"] for t in study.trials]
    assert decoded == [p["params"]["train.optim.optim"] for p in proposals[:4]]


def test_first_params_are_rec0_fitted_to_the_space(space):
    first = {LR: 0.5, "train.optim.momentum": 0.9, WIDTH: 3, "train.num_epochs": 99}
    proposals = automl.propose_round(space, [], [0, 1], algorithm="bayesian", seed=4, first_params=first)
    rec0 = proposals[0]["params"]
    assert rec0[LR] == 1e-2                       # clipped into the range
    assert (rec0["train.optim.momentum"], rec0[WIDTH]) == (0.9, 3)
    assert "train.num_epochs" not in rec0         # not a searched key
    assert point(proposals[1], space) != point(proposals[0], space)
    (yaml_like,) = automl.propose_round(space, [], [0], seed=4, first_params={LR: "1e-4", WIDTH: "${width}"})
    assert yaml_like["params"][LR] == 1e-4 and yaml_like["params"][WIDTH] in (1, 2, 3, 4)
    later = automl.propose_round(space, [], [2, 3], algorithm="bayesian", seed=4, first_params=first)
    assert all(p["params"][LR] != 1e-2 for p in later)   # only rec 0 is fixed


def test_study_is_rebuilt_from_finished_records(space):
    round0 = automl.propose_round(space, [], [0, 1, 2, 3], algorithm="tpe", seed=9)
    records = scored(round0, lr_bowl)
    records[1] = RecRecord(1, round0[1]["params"], 0.1, 0.01, True, "ok")     # collapsed, deceptively good
    records[2] = RecRecord(2, round0[2]["params"], None, None, False, "failed")
    study = automl.build_study(space, records, algorithm="tpe", seed=0, direction="minimize")
    assert [t.user_attrs["rec_id"] for t in study.trials] == [0, 1, 3]
    values = {t.user_attrs["rec_id"]: t.value for t in study.trials}
    assert values[0] == records[0].score and values[3] == records[3].score
    assert values[1] == max(r.score for r in records if r.status == "ok")    # told as the worst score
    assert study.trials[0].params == {p.name: round0[0]["params"][p.name] for p in space}


@pytest.mark.parametrize("algorithm", ["bayesian", "tpe"])
def test_finished_records_steer_the_next_round(space, algorithm):
    round0 = automl.propose_round(space, [], [0, 1, 2, 3], algorithm=algorithm, seed=11)
    informed = automl.propose_round(space, scored(round0, lr_bowl), [4, 5], algorithm=algorithm, seed=11)
    inverted = automl.propose_round(space, scored(round0, lambda p: -lr_bowl(p)), [4, 5], algorithm=algorithm,
                                    seed=11)
    assert informed != inverted


def test_a_record_outside_the_space_is_refused(space):
    params = {LR: 0.5, "train.optim.momentum": 0.9, WIDTH: 2, FLIP: True}
    with pytest.raises(InputError, match=r"rec0/result\.json: train\.optim\.lr=0\.5 is outside"):
        automl.propose_round(space, [RecRecord(0, params, 3.0, 0.5, False, "ok")], [1], seed=0)


def test_a_small_discrete_space_is_covered_without_duplicates():
    tiny = automl_space.parse_search_space([{"parameter": WIDTH, "valid_min": 1, "valid_max": 3}], SCHEMA)
    for algorithm in automl.ALGORITHMS:
        proposals = automl.propose_round(tiny, [], [0, 1, 2], algorithm=algorithm, seed=0)
        assert sorted(p["params"][WIDTH] for p in proposals) == [1, 2, 3]
    with pytest.raises(InputError, match="only 3 distinct points"):
        automl.propose_round(tiny, [], [0, 1, 2, 3], seed=0)


def test_rounds_and_proposal_files(tmp_path, space):
    assert automl.round_rec_ids(2, 2, 5) == [4]
    assert automl.round_of(5, 2) == 2
    proposals = automl.propose_round(space, [], [0, 1], seed=0, pinned=PINNED)
    path = tmp_path / "round0" / "proposals.json"
    automl.write_proposals(path, proposals, algorithm="bayesian", round=0)
    assert automl.read_proposals(path) == proposals
    assert json.loads(path.read_text())["round"] == 0
    path.write_text("{not json")
    with pytest.raises(InputError, match=str(path)):
        automl.read_proposals(path)


# ---------------------------------------------------------------------------------------------
# Records and selection
# ---------------------------------------------------------------------------------------------
def write_result(phase_dir, rec_id, **doc):
    path = automl.rec_dir(phase_dir, rec_id) / automl.RESULT_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"rec_id": rec_id, "params": {LR: 1e-3}, **doc}))


def test_read_rec_records(tmp_path):
    write_result(tmp_path, 0, status="complete", val_far_pct=4.5, val_selection=3.9, val_loss=0.3, collapsed=False)
    write_result(tmp_path, 1, status="complete", val_far_pct=None, val_loss=0.2)
    write_result(tmp_path, 2, status="failed")
    rec0, rec1, rec2, rec3 = automl.read_rec_records(tmp_path, [0, 1, 2, 3], metric="val_far_pct")
    assert rec0 == RecRecord(0, {LR: 1e-3}, 4.5, 0.3, False, "ok")
    assert automl.read_rec_records(tmp_path, [0])[0].score == 3.9  # the default: the selection score
    assert rec1.status == "failed" and rec2.status == "failed" and rec3.status == "missing"
    assert automl.read_rec_records(tmp_path, [1], metric="val_loss")[0].score == 0.2
    (tmp_path / "rec4").mkdir()
    (tmp_path / "rec4" / "result.json").write_text("{")
    with pytest.raises(InputError, match=r"rec4/result\.json"):
        automl.read_rec_records(tmp_path, [4])


def rec(rec_id, score, val_loss=0.5, collapsed=False, status="ok"):
    return RecRecord(rec_id, {LR: rec_id * 1e-4}, score, val_loss, collapsed, status)


def test_select_best_skips_collapsed_and_failed_and_breaks_ties():
    records = [rec(0, 1.0, collapsed=True), rec(1, None, status="failed"), rec(2, 3.0, val_loss=0.4),
               rec(3, 3.0, val_loss=0.2), rec(4, 3.0, val_loss=0.2), rec(5, 7.0)]
    assert automl.select_best(records).rec_id == 3                   # tie on score -> val_loss -> rec id
    assert automl.select_best(records, "maximize").rec_id == 5
    assert [r.rec_id for r in automl.ranked(records)] == [3, 4, 2, 5]
    with pytest.raises(InputError, match=r"rec0: collapsed, rec1: failed"):
        automl.select_best(records[:2])


def test_best_rec_document():
    best = rec(3, 2.5, val_loss=0.1)
    doc = automl.best_rec_document(best, metric_name="val_far_pct", direction="minimize",
                                   specs={LR: 3e-4, **PINNED}, checkpoint_uri="phase1_automl/best.pth",
                                   observed_budget={"num_epochs": 8}, phase="phase1_automl",
                                   records=[rec(4, 9.0), best])
    assert doc["schema_version"] == 1 and doc["direction"] == "minimize"
    assert doc["best"] == {"rec_id": 3, "score": 2.5, "val_loss": 0.1, "specs": {LR: 3e-4, **PINNED},
                           "observed_budget": {"num_epochs": 8}, "checkpoint_uri": "phase1_automl/best.pth"}
    assert [r["rec_id"] for r in doc["recommendations"]] == [3, 4]


def test_leaderboard_cli(tmp_path, capsys):
    write_result(tmp_path, 0, status="complete", val_selection=4.5, val_loss=0.3)
    write_result(tmp_path, 1, status="complete", val_selection=2.0, val_loss=0.3, collapsed=True)
    write_result(tmp_path, 2, status="complete", val_selection=3.0, val_loss=0.3)
    assert automl.main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[:3] for line in lines] == [["1", "2", "ok"], ["2", "0", "ok"], ["-", "1", "collapsed"]]


def test_the_last_unseen_point_of_an_exhausted_discrete_space_is_found():
    entries = [{"parameter": WIDTH}, {"parameter": FLIP},
               {"parameter": "dataset.classify.augmentation_config.random_rotate.enable"}]
    discrete = automl_space.parse_search_space(entries, SCHEMA)
    every = automl.propose_round(discrete, [], list(range(16)), algorithm="random", seed=0)
    assert len({point(p, discrete) for p in every}) == 16
    finished = scored(every[:15], lambda params: float(params[WIDTH]))
    (last,) = automl.propose_round(discrete, finished, [15], algorithm="bayesian", seed=0)
    assert point(last, discrete) == point(every[15], discrete)
