# AutoML, file first, for Phase 1 (base training set) and Phase 3 (DEFT-augmented set).
# Round r is proposed from the finished recommendations of rounds < r; every recommendation is
# its own GPU job; nothing lives in a hidden database.


def automl_phase_inputs(wildcards):
    """What a phase needs before it can propose: the pre-flight, and for Phase 3 the DEFT result."""
    if wildcards.phase == "phase1_automl":
        return ["preflight/checks.json"]
    return ["preflight/checks.json", "phase1_automl/best_rec.json", "deft/summary.json"]


def automl_suggest_inputs(wildcards):
    previous = rec_ids_before_round(wildcards.phase, wildcards.r)
    return automl_phase_inputs(wildcards) + [
        f"{wildcards.phase}/rec{k}/result.json" for k in previous
    ]


rule automl_suggest:
    input:
        automl_suggest_inputs,
    output:
        proposals="{phase}/round{r}/proposals.json",
    log:
        "logs/{phase}/suggest_round{r}.log",
    benchmark:
        "benchmarks/{phase}/suggest_round{r}.tsv"
    script:
        "../scripts/automl_suggest.py"


rule automl_train:
    input:
        proposals=lambda w: f"{w.phase}/round{round_of(w.phase, w.k)}/proposals.json",
        phase=automl_phase_inputs,
    output:
        result="{phase}/rec{k}/result.json",
    log:
        "logs/{phase}/rec{k}.log",
    benchmark:
        "benchmarks/{phase}/rec{k}.tsv"
    threads: GPU_THREADS
    resources:
        **gpu_resources(),
    container:
        model_container()
    script:
        "../scripts/automl_train.py"


def automl_select_inputs(wildcards):
    total, _ = automl_counts(wildcards.phase)
    inputs = automl_phase_inputs(wildcards)
    if wildcards.phase == "final_automl" and deft_summary()["phase3"]["skip"]:
        return inputs
    return inputs + [f"{wildcards.phase}/rec{k}/result.json" for k in range(total)]


rule automl_select:
    input:
        automl_select_inputs,
    output:
        best_rec="{phase}/best_rec.json",
        checkpoint="{phase}/best.pth",
        spec="{phase}/best_spec.yaml",
    log:
        "logs/{phase}/select.log",
    benchmark:
        "benchmarks/{phase}/select.tsv"
    script:
        "../scripts/automl_select.py"
