# Phase 2: the DEFT loop. Iteration n = routing -> SDG -> mining -> assemble -> validate (dataset
# gate) -> plain retrain warm-started from the incumbent -> inference -> evaluate -> RCA -> decision
# (accept or keep the incumbent, then stop or continue). Only the two per-iteration decisions are
# checkpoints (deft_validate, deft_decide); everything else is an ordinary rule keyed by the iteration.


rule deft_infer:
    # One forward pass per (checkpoint, CSV), only the passes the loop needs: both checkpoints on
    # validation (the choice), the chosen one on the KPI set and the pool, with their embeddings
    # (computed once per model and shared: RCA clusters failure modes with them, routing counts pool
    # rows per mode, mining searches them; the pool's scores pick the hard examples).
    input:
        **workspace(VALIDATION, KPI, POOL),
        manifest=checkpoint_manifest,
    output:
        summary="{loopit}/inference/inference_summary.json",
        embeddings="{loopit}/embeddings/embeddings.json",
    log:
        "logs/{loopit}/inference.log",
    benchmark:
        "benchmarks/{loopit}/inference.tsv"
    conda:
        CONDA_ENV
    container:
        model_container()
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    params:
        config=config_of("deft.kpi_holdout", *MODEL_CONFIG),
        # whether it scores the pool: raising deft.max_iterations reruns the last iteration's pass
        embeds_pool=lambda w: _loop.embeds_pool(w.loopit, config["deft"]["max_iterations"]),
    script:
        "../scripts/deft_infer.py"


rule final_infer:
    # Phase 3's winner: both checkpoints on validation, the chosen one on the KPI set.
    input:
        **workspace(VALIDATION, KPI),
        manifest="final_automl/best_rec.json",
    output:
        summary="final_automl/inference/inference_summary.json",
    log:
        "logs/final_automl/inference.log",
    benchmark:
        "benchmarks/final_automl/inference.tsv"
    conda:
        CONDA_ENV
    container:
        model_container()
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    params:
        config=config_of("deft.kpi_holdout", *MODEL_CONFIG),
    script:
        "../scripts/deft_infer.py"


rule deft_evaluate:
    input:
        inference="{it}/inference/inference_summary.json",
    output:
        best="{it}/evaluate/best.json",
    log:
        "logs/{it}/evaluate.log",
    benchmark:
        "benchmarks/{it}/evaluate.tsv"
    conda:
        CONDA_ENV
    params:
        config=config_of("kpi.bootstrap", "deft.kpi_holdout", "deft.kpi_holdout_group"),
    script:
        "../scripts/deft_evaluate.py"


rule deft_rca:
    # TAO's per-label weak rows plus the failure modes (rca/failure_modes.json).
    input:
        best="{loopit}/evaluate/best.json",
        embeddings="{loopit}/embeddings/embeddings.json",
        workspace=WORKSPACE_RECORD,
    output:
        metrics="{loopit}/rca/metrics.json",
    log:
        "logs/{loopit}/rca.log",
    benchmark:
        "benchmarks/{loopit}/rca.tsv"
    conda:
        CONDA_ENV
    params:
        config=config_of(
            "kpi.target_far_pct",
            "deft.top_k_per_label",
            "deft.failure_modes",
            "deft.budget.defect_share",
            "deft.seed",
            "deft.kpi_holdout",
            "deft.kpi_holdout_group",
        ),
    script:
        "../scripts/deft_rca.py"


checkpoint deft_decide:
    # Accept the iteration or keep the incumbent (the validation gate), then stop or continue:
    # KPI met, max iterations, unreachable KPI.
    input:
        unpack(decide_inputs),
    output:
        decision="{loopit}/decision.json",
    log:
        "logs/{loopit}/decision.log",
    benchmark:
        "benchmarks/{loopit}/decision.tsv"
    conda:
        CONDA_ENV
    params:
        config=config_of("kpi.target_far_pct", "deft.max_iterations", "deft.gate", "deft.seed", "deft.kpi_holdout"),
    script:
        "../scripts/deft_decide.py"


rule deft_route:
    # engine failure_modes: the budgeted integer program over the incumbent's failure modes; engine
    # tao: TAO's label rule; engine random: nothing targeted.
    input:
        **workspace(TRAIN, POOL, SYNTHETIC),
        workspace=WORKSPACE_RECORD,
        rca=incumbent_file("rca/metrics.json"),
        decision=previous_decision,
        embeddings=incumbent_file("embeddings/embeddings.json"),
        history=previous_mining_history,
        previous=previous_training_csv,
    output:
        summary="iter{n}/routing/routing_summary.json",
    log:
        "logs/iter{n}/routing.log",
    benchmark:
        "benchmarks/iter{n}/routing.tsv"
    conda:
        CONDA_ENV
    params:
        config=config_of("deft.engine", "deft.budget", "deft.routing", "deft.sdg", "deft.mining"),
    script:
        "../scripts/deft_route.py"


rule deft_sdg:
    # Synthesis per routed mode; candidates are scored by the current model and filtered (verify).
    input:
        **workspace(TRAIN, SYNTHETIC),
        workspace=WORKSPACE_RECORD,
        routing="iter{n}/routing/routing_summary.json",
        previous=previous_training_csv,
        best=incumbent_file("evaluate/best.json"),
    output:
        rows="iter{n}/sdg/sdg_rows.csv",
    log:
        "logs/iter{n}/sdg.log",
    benchmark:
        "benchmarks/iter{n}/sdg.tsv"
    conda:
        CONDA_ENV
    container:
        model_container()
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    params:
        config=config_of("deft.engine", "deft.sdg", "deft.seed", *MODEL_CONFIG),
    script:
        "../scripts/deft_sdg.py"


rule deft_mine:
    # Neighbours of the routed weak rows, then hard examples of the incumbent for the rest of the budget.
    input:
        **workspace(TRAIN, VALIDATION, POOL),
        # the pool rows that repeat a train, validation or KPI pair, never mined
        workspace=WORKSPACE_RECORD,
        routing="iter{n}/routing/routing_summary.json",
        embeddings=incumbent_file("embeddings/embeddings.json"),
        best=incumbent_file("evaluate/best.json"),
        history=previous_mining_history,
    output:
        rows="iter{n}/mining/mined_rows.csv",
        history="iter{n}/mining/mining_history.json",
    log:
        "logs/iter{n}/mining.log",
    benchmark:
        "benchmarks/iter{n}/mining.tsv"
    conda:
        CONDA_ENV
    params:
        config=config_of("deft.engine", "deft.budget", "deft.sdg", "deft.mining", "deft.seed"),
    script:
        "../scripts/deft_mine.py"


rule deft_assemble:
    input:
        **workspace(TRAIN),
        workspace=WORKSPACE_RECORD,
        sdg="iter{n}/sdg/sdg_rows.csv",
        mined="iter{n}/mining/mined_rows.csv",
        previous=previous_training_csv,
    output:
        csv="iter{n}/dataset/train_combined_iter{n}.csv",
        provenance="iter{n}/dataset/train_combined_iter{n}_provenance.csv",
    log:
        "logs/iter{n}/assemble.log",
    benchmark:
        "benchmarks/iter{n}/assemble.tsv"
    conda:
        CONDA_ENV
    params:
        config=config_of("deft.budget"),
    script:
        "../scripts/deft_assemble.py"


checkpoint deft_validate:
    # Gate: required columns, every file present, no leakage, rows really added; else hard stop.
    input:
        **workspace(VALIDATION, KPI),
        workspace=WORKSPACE_RECORD,
        csv="iter{n}/dataset/train_combined_iter{n}.csv",
        provenance="iter{n}/dataset/train_combined_iter{n}_provenance.csv",
    output:
        gate="iter{n}/dataset/gate.json",
    log:
        "logs/iter{n}/validate.log",
    benchmark:
        "benchmarks/iter{n}/validate.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/deft_validate.py"


rule deft_train:
    # Plain retrain warm-started from the incumbent's checkpoint.
    input:
        **workspace(VALIDATION),
        gate="iter{n}/dataset/gate.json",
        csv="iter{n}/dataset/train_combined_iter{n}.csv",
        spec="specs/baseline_spec_automl.yaml",
        best=incumbent_file("evaluate/best.json"),
    output:
        summary="iter{n}/train/train_summary.json",
    log:
        "logs/iter{n}/train.log",
    benchmark:
        "benchmarks/iter{n}/train.tsv"
    conda:
        CONDA_ENV
    container:
        model_container()
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    params:
        config=config_of("deft.retrain_epochs", "deft.seed", *MODEL_CONFIG),
    script:
        "../scripts/deft_train.py"
