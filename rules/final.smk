# End of Phase 2, Phase 3 wiring, the deliverable's bookkeeping and the report.


rule deft_finish:
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
    conda:
        CONDA_ENV
    params:
        config=config_of("kpi.target_far_pct", "deft.kpi_holdout"),
    script:
        "../scripts/deft_finish.py"


rule pick_best:
    input:
        pick_best_inputs,
    output:
        best_model=report("best_model.json", caption="../report/best_model.rst", category="Deliverable"),
        inference_spec=report(
            "best_model_inference_spec.yaml", caption="../report/inference_spec.rst", category="Deliverable"
        ),
    log:
        log_path("pick_best"),
    benchmark:
        bench_path("pick_best")
    conda:
        CONDA_ENV
    params:
        config=config_of("deft.kpi_holdout", "deft.gate", "deft.seed"),
    script:
        "../scripts/pick_best.py"


rule deft_report:
    input:
        best_model="best_model.json",
        checkpoint="final_automl/best.pth",
        workspace=WORKSPACE_RECORD,
    output:
        html=report("DEFT_Loop_Report.html", caption="../report/deft_loop_report.rst", category="Report"),
        # the same verdicts and model table as text; printed at the end of a run (Snakefile, onsuccess)
        summary="summary.txt",
    log:
        log_path("report"),
    benchmark:
        bench_path("report")
    conda:
        CONDA_ENV
    params:
        config=config_of("kpi", "deft"),
    script:
        "../scripts/render_report.py"
