# Phase 2: the DEFT loop. Iteration n = routing -> SDG -> mining -> assemble -> validate (dataset
# gate) -> plain retrain warm-started from the incumbent -> inference -> evaluate -> RCA -> decision
# (accept or keep the incumbent, then stop or continue). Only the two per-iteration decisions are
# checkpoints (deft_validate, deft_decide); everything else is an ordinary rule keyed by the iteration.


def checkpoint_manifest(it):
    """The JSON that names an iteration's best-validation and latest checkpoints."""
    if it == "baseline":
        return "baseline/train/handoff.json"
    if it == "final_automl":
        return "final_automl/best_rec.json"
    return f"{it}/train/train_summary.json"


rule deft_infer:
    # One forward pass per (checkpoint, CSV), only the passes the loop needs: both checkpoints on
    # validation (the choice), the chosen one on the KPI set and the pool, with their embeddings
    # (computed once per model and shared: RCA clusters failure modes with them, routing counts pool
    # rows per mode, mining searches them; the pool's scores pick the hard examples).
    input:
        manifest=lambda w: checkpoint_manifest(w.loopit),
    output:
        summary="{loopit}/inference/inference_summary.json",
        embeddings="{loopit}/embeddings/embeddings.json",
    log:
        "logs/{loopit}/inference.log",
    benchmark:
        "benchmarks/{loopit}/inference.tsv"
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    container:
        model_container()
    script:
        "../scripts/deft_infer.py"


rule final_infer:
    # Phase 3's winner: both checkpoints on validation, the chosen one on the KPI set.
    input:
        manifest="final_automl/best_rec.json",
    output:
        summary="final_automl/inference/inference_summary.json",
    log:
        "logs/final_automl/inference.log",
    benchmark:
        "benchmarks/final_automl/inference.tsv"
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    container:
        model_container()
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
    script:
        "../scripts/deft_evaluate.py"


rule deft_rca:
    # TAO's per-label weak rows plus the failure modes (rca/failure_modes.json).
    input:
        best="{loopit}/evaluate/best.json",
        embeddings="{loopit}/embeddings/embeddings.json",
    output:
        metrics="{loopit}/rca/metrics.json",
    log:
        "logs/{loopit}/rca.log",
    benchmark:
        "benchmarks/{loopit}/rca.tsv"
    script:
        "../scripts/deft_rca.py"


def decide_inputs(wildcards):
    if wildcards.loopit == "baseline":
        earlier = []
    else:
        n = int(wildcards.loopit[len("iter") :])
        earlier = ["baseline"] + [f"iter{i}" for i in range(1, n)]
    return {
        "best": f"{wildcards.loopit}/evaluate/best.json",
        "rca": f"{wildcards.loopit}/rca/metrics.json",
        # the incumbent can be any earlier model; the previous decision names it
        "earlier": [f"{it}/evaluate/best.json" for it in earlier],
        "previous": [f"{earlier[-1]}/decision.json"] if earlier else [],
    }


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
    script:
        "../scripts/deft_decide.py"


def previous_training_csv(n):
    n = int(n)
    if n == 1:
        return []
    return [f"iter{n - 1}/dataset/train_combined_iter{n - 1}.csv"]


rule deft_route:
    # engine failure_modes: the budgeted integer program over the incumbent's failure modes; engine
    # tao: TAO's label rule; engine random: nothing targeted.
    input:
        rca=lambda w: f"{incumbent_before(w.n)}/rca/metrics.json",
        decision=lambda w: f"{prev_iteration(w.n)}/decision.json",
        embeddings=lambda w: f"{incumbent_before(w.n)}/embeddings/embeddings.json",
        history=lambda w: [] if int(w.n) == 1 else [f"iter{int(w.n) - 1}/mining/mining_history.json"],
        previous=lambda w: previous_training_csv(w.n),
    output:
        summary="iter{n}/routing/routing_summary.json",
    log:
        "logs/iter{n}/routing.log",
    benchmark:
        "benchmarks/iter{n}/routing.tsv"
    script:
        "../scripts/deft_route.py"


rule deft_sdg:
    # Synthesis per routed mode; candidates are scored by the current model and filtered (verify).
    input:
        routing="iter{n}/routing/routing_summary.json",
        previous=lambda w: previous_training_csv(w.n),
        best=lambda w: f"{incumbent_before(w.n)}/evaluate/best.json",
    output:
        rows="iter{n}/sdg/sdg_rows.csv",
    log:
        "logs/iter{n}/sdg.log",
    benchmark:
        "benchmarks/iter{n}/sdg.tsv"
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    container:
        model_container()
    script:
        "../scripts/deft_sdg.py"


rule deft_mine:
    # Neighbours of the routed weak rows, then hard examples of the incumbent for the rest of the budget.
    input:
        routing="iter{n}/routing/routing_summary.json",
        embeddings=lambda w: f"{incumbent_before(w.n)}/embeddings/embeddings.json",
        best=lambda w: f"{incumbent_before(w.n)}/evaluate/best.json",
        history=lambda w: [] if int(w.n) == 1 else [f"iter{int(w.n) - 1}/mining/mining_history.json"],
    output:
        rows="iter{n}/mining/mined_rows.csv",
        history="iter{n}/mining/mining_history.json",
    log:
        "logs/iter{n}/mining.log",
    benchmark:
        "benchmarks/iter{n}/mining.tsv"
    script:
        "../scripts/deft_mine.py"


rule deft_assemble:
    input:
        sdg="iter{n}/sdg/sdg_rows.csv",
        mined="iter{n}/mining/mined_rows.csv",
        previous=lambda w: previous_training_csv(w.n),
    output:
        csv="iter{n}/dataset/train_combined_iter{n}.csv",
        provenance="iter{n}/dataset/train_combined_iter{n}_provenance.csv",
    log:
        "logs/iter{n}/assemble.log",
    benchmark:
        "benchmarks/iter{n}/assemble.tsv"
    script:
        "../scripts/deft_assemble.py"


checkpoint deft_validate:
    # Gate: required columns, every file present, no leakage, rows really added; else hard stop.
    input:
        csv="iter{n}/dataset/train_combined_iter{n}.csv",
        provenance="iter{n}/dataset/train_combined_iter{n}_provenance.csv",
    output:
        gate="iter{n}/dataset/gate.json",
    log:
        "logs/iter{n}/validate.log",
    benchmark:
        "benchmarks/iter{n}/validate.tsv"
    script:
        "../scripts/deft_validate.py"


rule deft_train:
    # Plain retrain warm-started from the incumbent's checkpoint.
    input:
        gate="iter{n}/dataset/gate.json",
        csv="iter{n}/dataset/train_combined_iter{n}.csv",
        spec="specs/baseline_spec_automl.yaml",
        best=lambda w: f"{incumbent_before(w.n)}/evaluate/best.json",
    output:
        summary="iter{n}/train/train_summary.json",
    log:
        "logs/iter{n}/train.log",
    benchmark:
        "benchmarks/iter{n}/train.tsv"
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    container:
        model_container()
    script:
        "../scripts/deft_train.py"
