# Workspace intake and the consolidated pre-flight gate (contract section 6).


rule workspace_ready:
    # Generates the embedded demo when configured and the workspace is absent, validates the
    # workspace, links its image roots under images/ and records a fingerprint of its files.
    output:
        record="inputs/workspace.json",
    log:
        log_path("workspace_ready"),
    benchmark:
        bench_path("workspace_ready")
    threads: CPU_THREADS
    resources:
        **cpu_resources(),
    script:
        "../scripts/workspace_ready.py"


rule preflight:
    input:
        workspace=rules.workspace_ready.output.record,
    output:
        summary="preflight/summary.md",
        checks="preflight/checks.json",
    log:
        log_path("preflight"),
    benchmark:
        bench_path("preflight")
    script:
        "../scripts/preflight.py"
