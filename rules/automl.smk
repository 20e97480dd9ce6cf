# AutoML, file first, for Phase 1 (base training set) and Phase 3 (DEFT-augmented set).
# Round r is proposed from the finished recommendations of rounds < r; every recommendation is
# its own GPU job; nothing lives in a hidden database.


rule automl_suggest:
    input:
        automl_suggest_inputs,
        # Phase 1's first recommendation is the workspace spec's own values.
        **workspace(SPEC),
        preflight=preflight_gate,
    output:
        proposals="{phase}/round{r}/proposals.json",
    log:
        "logs/{phase}/suggest_round{r}.log",
    benchmark:
        "benchmarks/{phase}/suggest_round{r}.tsv"
    conda:
        CONDA_ENV
    params:
        # the proposals: the sampler, its seed and search space (the default space depends on the backend)
        config=automl_config(
            "automl.algorithm", "automl.seed", "automl.metric", "automl.search_space", "automl.pinned", "backend"
        ),
    script:
        "../scripts/automl_suggest.py"


rule automl_train:
    input:
        **workspace(SPEC, TRAIN, VALIDATION),
        proposals=automl_proposals,
        phase=automl_phase_inputs,
        preflight=preflight_gate,
    output:
        result="{phase}/rec{k}/result.json",
    log:
        "logs/{phase}/rec{k}.log",
    benchmark:
        "benchmarks/{phase}/rec{k}.tsv"
    conda:
        CONDA_ENV
    container:
        model_container()
    threads: trial_threads
    resources:
        **gpu_resources(),
    params:
        config=automl_config("automl.metric", "automl.pinned", *MODEL_CONFIG),
    script:
        "../scripts/automl_train.py"


rule automl_select:
    input:
        automl_select_inputs,
        preflight=preflight_gate,
    output:
        best_rec="{phase}/best_rec.json",
        checkpoint="{phase}/best.pth",
        spec="{phase}/best_spec.yaml",
    log:
        "logs/{phase}/select.log",
    benchmark:
        "benchmarks/{phase}/select.tsv"
    conda:
        CONDA_ENV
    params:
        config=automl_config("automl.metric", "automl.pinned"),
    script:
        "../scripts/automl_select.py"
