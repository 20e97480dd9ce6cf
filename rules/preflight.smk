# Workspace intake and the consolidated pre-flight gate (contract section 6).


if DEMO_PENDING:

    rule demo_workspace:
        # The embedded demo, generated into the configured workspace path while nothing is there;
        # once it exists its files are the user's inputs like any workspace's.
        output:
            **WORKSPACE,
        log:
            log_path("demo_workspace"),
        benchmark:
            bench_path("demo_workspace")
        localrule: True
        conda:
            CONDA_ENV
        threads: CPU_THREADS
        resources:
            **cpu_resources(),
        script:
            "../scripts/demo_workspace.py"


rule workspace_ready:
    # Validates the workspace, links its image roots under images/ and records its lights, the
    # pool's exclusions and a fingerprint of its files.
    input:
        **workspace(*WORKSPACE),
    output:
        record=WORKSPACE_RECORD,
    log:
        log_path("workspace_ready"),
    benchmark:
        bench_path("workspace_ready")
    conda:
        CONDA_ENV
    threads: CPU_THREADS
    resources:
        **cpu_resources(),
    params:
        config=config_of("datasets", "backend", "automl.pinned"),
    script:
        "../scripts/workspace_ready.py"


rule preflight:
    # The summary states the whole config, so any change rewrites it. No rule depends on it (Phase 1
    # waits for checkpoint preflight_passed, which runs the same checks), so that rerun reruns nothing else.
    input:
        **workspace(*WORKSPACE),
        workspace=WORKSPACE_RECORD,
    output:
        summary=report("preflight/summary.md", caption="../report/preflight.rst", category="Pre-flight"),
        checks="preflight/checks.json",
    log:
        log_path("preflight"),
    benchmark:
        bench_path("preflight")
    conda:
        CONDA_ENV
    params:
        config=config,
    script:
        "../scripts/preflight.py"


checkpoint preflight_passed:
    # Phase 1 and Phase 3 wait for this mark on the first run only (common.smk: preflight_gate).
    input:
        record=ancient(WORKSPACE_RECORD),
    output:
        passed="preflight/passed.json",
    log:
        log_path("preflight_passed"),
    benchmark:
        bench_path("preflight_passed")
    conda:
        CONDA_ENV
    script:
        "../scripts/preflight_passed.py"
