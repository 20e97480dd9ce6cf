# AOI three-phase training pipeline: Phase 1 AutoML -> pre-seeded DEFT loop -> Phase 3 AutoML.
# Each concern lives in one rules/*.smk file; the logic lives in the importable package
# scripts/aoideft and the rule scripts under scripts/ stay thin.
#
#   snakemake -n final_automl/best.pth              pre-flight + plan
#   snakemake --profile profiles/local              run everything locally
#   snakemake --profile slurm final_automl/best.pth run on a SLURM cluster (make install-profiles)

import time

from snakemake.utils import min_version

min_version("9.0")

RUN_STARTED = time.time()  # onsuccess prints summary.txt only when this invocation wrote it


# `snakemake --report report.html` (after a run): this text, the run's statistics and the files
# marked report(...) in the rules, each with its caption from report/.
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/preflight.smk"
include: "rules/automl.smk"
include: "rules/handoff.smk"
include: "rules/deft.smk"
include: "rules/final.smk"


# With `--sdm apptainer`, every job runs inside this image (README: running on a cluster).
if config["container"]:

    container: config["container"]


rule all:
    default_target: True
    input:
        "final_automl/best.pth",
        "best_model.json",
        "DEFT_Loop_Report.html",
        # The pre-flight's evidence, rerun with any workspace or config change.
        "preflight/summary.md",
        # The loop's decision files, walked afresh: a deleted iteration is redone from there.
        deft_finish_inputs,


# Bookkeeping runs where Snakemake runs; only model jobs (train, infer with embeddings, verified SDG) go to the cluster.
localrules:
    all,
    workspace_ready,
    preflight,
    preflight_passed,
    automl_suggest,
    automl_select,
    preseed_deft,
    deft_evaluate,
    deft_rca,
    deft_decide,
    deft_route,
    deft_mine,
    deft_assemble,
    deft_validate,
    deft_finish,
    pick_best,
    deft_report,


onsuccess:
    # The run's result in the terminal, when this invocation wrote it (not after a partial target).
    summary_file = Path("summary.txt")
    if workflow.is_main_process and summary_file.is_file() and summary_file.stat().st_mtime >= RUN_STARTED:
        sys.stderr.write(f"\n{summary_file.read_text()}\n")


onerror:
    # One summary at the very end of a stopped run: what failed, how, and the command to resume.
    if workflow.is_main_process:
        from aoideft.workflow import failures

        text = "".join(Path(path).read_text(errors="replace") for path in log)  # Snakemake passes a list
        sys.stderr.write(failures.stop_summary(text, ["snakemake", *sys.argv[1:]]) + "\n")
