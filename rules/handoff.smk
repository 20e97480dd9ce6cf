# Phase 1 -> Phase 2 handoff, the contract's four steps: merged spec, winning checkpoint under the
# name DEFT expects, pre-seeded deft_state.json and loop_log.jsonl. No baseline training job exists.


# No params: the config the state file copies is a record; the rules that use a value declare it
# themselves, so changing one does not redo the whole loop from here.
rule preseed_deft:
    input:
        **workspace(SPEC),
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
    conda:
        CONDA_ENV
    script:
        "../scripts/preseed_deft.py"
