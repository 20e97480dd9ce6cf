# Phase 1 -> Phase 2 handoff, the contract's four steps: merged spec, winning checkpoint under the
# name DEFT expects, pre-seeded deft_state.json and loop_log.jsonl. No baseline training job exists.


rule preseed_deft:
    input:
        best_rec="phase1_automl/best_rec.json",
        checkpoint="phase1_automl/best.pth",
    output:
        spec="specs/baseline_spec_automl.yaml",
        handoff="baseline/train/handoff.json",
        state="deft_state.json",
        log="loop_log.jsonl",
    log:
        log_path("preseed_deft"),
    benchmark:
        bench_path("preseed_deft")
    script:
        "../scripts/preseed_deft.py"
