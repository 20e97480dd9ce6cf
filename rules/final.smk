# End of Phase 2, Phase 3 wiring, the deliverable's bookkeeping and the report.


checkpoint deft_finish:
    # Summarises the loop: iterations run, stop reason, best iteration (Phase 3's warm start),
    # the final augmented CSV, and whether Phase 3 runs.
    input:
        deft_finish_inputs,
    output:
        summary="deft/summary.json",
    log:
        log_path("deft_finish"),
    benchmark:
        bench_path("deft_finish")
    script:
        "../scripts/deft_finish.py"


def pick_best_inputs(wildcards):
    inputs = ["deft/summary.json", "final_automl/best_rec.json"]
    if not deft_summary()["phase3"]["skip"]:
        inputs.append("final_automl/evaluate/best.json")
    return inputs


rule pick_best:
    input:
        pick_best_inputs,
    output:
        best_model=report("best_model.json", category="Deliverable"),
        inference_spec="best_model_inference_spec.yaml",
    log:
        log_path("pick_best"),
    benchmark:
        bench_path("pick_best")
    script:
        "../scripts/pick_best.py"


rule deft_report:
    input:
        best_model="best_model.json",
        checkpoint="final_automl/best.pth",
    output:
        html=report("DEFT_Loop_Report.html", category="Report"),
    log:
        log_path("report"),
    benchmark:
        bench_path("report")
    script:
        "../scripts/render_report.py"
