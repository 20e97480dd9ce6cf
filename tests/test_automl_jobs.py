from aoideft.workflow.automl_jobs import is_collapsed


def test_collapse_is_judged_where_the_metric_looks():
    argmax_all_pass = {"collapsed": True, "best_val_far_pct": 35.0}
    assert is_collapsed(argmax_all_pass, "val_loss")
    assert not is_collapsed(argmax_all_pass, "val_far_pct")
    flags_everything = {"collapsed": False, "best_val_far_pct": 100.0}
    assert is_collapsed(flags_everything, "val_far_pct")
    assert is_collapsed({"collapsed": False}, "val_far_pct")
