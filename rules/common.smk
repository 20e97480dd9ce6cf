# Shared helpers: config loading and validation, paths, resources and the DEFT loop walk.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

REPO_ROOT = Path(workflow.basedir)


configfile: str(REPO_ROOT / "config" / "config.yaml")


from aoideft.workflow import config_check as _config_check  # noqa: E402

# One line naming the key ("did you mean deft.max_iterations?"), not Snakemake's schema dump; then
# Snakemake's validate fills in the defaults.
_config_check.gate(config, REPO_ROOT / "config" / "schemas" / "config.schema.yaml")
validate(config, schema="../config/schemas/config.schema.yaml", set_default=True)

from aoideft import automl as _automl  # noqa: E402
from aoideft.workflow import automl_jobs as _automl_jobs, loop as _loop, rerun as _rerun  # noqa: E402
from aoideft.workflow import settings as _settings  # noqa: E402
from aoideft.workflow.rerun import KPI, POOL, SPEC, SYNTHETIC, TRAIN, VALIDATION  # noqa: E402 - input names

# Relative paths in the config are resolved against the repository root, so the same command
# works from any directory and with --directory.
RUN = _settings.resolve(config, REPO_ROOT)


def profile_resources():
    """default-resources and set-resources as plain values, for the pre-flight's checks."""
    settings = workflow.resource_settings
    scopes = {_preflight.DEFAULT_SCOPE: settings.default_resources or {}, **settings.overwrite_resources}
    return {scope: {key: res.raw for key, res in values.items()} for scope, values in scopes.items()}


# The pre-flight runs at parse time in the main process only (not in every cluster job), before
# Snakemake makes the run directory its working directory: an unwritable one is refused cleanly.
# Commands that only show or check the workflow (--lint, --dag, --rulegraph, --report, --summary,
# --list-changes, ...) skip it, quietly.
if workflow.is_main_process:
    from aoideft.workflow import preflight as _preflight, resume as _resume

    from snakemake_interface_executor_plugins.settings import DeploymentMethod

if workflow.is_main_process and not _preflight.inspection_command(sys.argv):
    _apptainer = DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
    _preflight.parse_time_gate(RUN, profile_resources(), apptainer_enabled=_apptainer)
    # What --rerun-incomplete means, done here because Snakemake misses jobs behind checkpoints.
    if not workflow.output_settings.dryrun:
        for _path in _resume.clear_incomplete_outputs(RUN.run_dir):
            print(f"resume: removed {_path}, left by a job a killed run did not finish", file=sys.stderr)
        if _resume.repair_state_log(RUN.run_dir):
            _repaired = "loop_log.jsonl rewritten from deft_state.json (a kill came between their writes)"
            print(f"resume: {_repaired}", file=sys.stderr)


workdir: str(RUN.run_dir)


wildcard_constraints:
    n=r"[1-9]\d*",
    k=r"\d+",
    r=r"\d+",
    phase=r"phase1_automl|final_automl",
    it=r"baseline|iter[1-9]\d*|final_automl",
    loopit=r"baseline|iter[1-9]\d*",


# ---- software environments -----------------------------------------------------------------
# All rules run this project's Python code, so they share one pinned environment (the path is
# relative to rules/, where the rules live). `--sdm conda` builds it; the rule scripts import this checkout's
# package from scripts/, which Snakemake puts on their path, so the code is the Snakefile's own.
CONDA_ENV = "../envs/aoideft.yaml"


def model_container():
    """The image model rules run in under --sdm apptainer: TAO's for backend tao with runtime
    apptainer, else the global `container` (None: none)."""
    if config["backend"] == "tao" and config["tao"]["runtime"] == "apptainer":
        return _settings.tao_setup(RUN).image
    return config["container"]


def gpu_resources():
    """Resources of a model job (SLURM: --gpus, --mem, -t)."""
    res = config["resources"]["gpu"]
    return dict(gpu=res["gpu"], mem_mb=res["mem_mb"], runtime=res["runtime"])


def cpu_resources():
    res = config["resources"]["cpu"]
    return dict(mem_mb=res["mem_mb"], runtime=res["runtime"])


GPU_THREADS = config["resources"]["gpu"]["threads"]
CPU_THREADS = config["resources"]["cpu"]["threads"]


def trial_threads(wildcards):
    """Cores an AutoML trial reserves: its share of --cores among its round's trials, so they run side
    by side (at most GPU_THREADS; a round's last trial alone gets them all). It still computes with
    GPU_THREADS torch threads (rulekit), so its figures do not depend on --cores; on 2 cores two such
    trials together trained 1.27x faster than one after the other (benchmarks/README.md, "make run's
    time on 2 CPU cores")."""
    cores = workflow.resource_settings.cores
    if not cores:
        return GPU_THREADS
    total, concurrent = automl_counts(wildcards.phase)
    in_round = len(_automl.round_rec_ids(round_of(wildcards.phase, wildcards.k), concurrent, total))
    return max(1, min(GPU_THREADS, cores // in_round))


# ---- what reruns a job -----------------------------------------------------------------------
# The workspace files each rule reads are its inputs (Snakemake records their checksums, so an
# edit reruns it and a touch does not); the config values it reads are its `params: config=...`.
# The state file deft_state.json, rewritten by every stage, is no rule's input (README).
DEMO_PENDING = _rerun.demo_pending(RUN)
WORKSPACE = {name: str(path) for name, path in _rerun.workspace_files(RUN).items()}
WORKSPACE_RECORD = "inputs/workspace.json"
MODEL_CONFIG = _rerun.model_keys(config)


def workspace(*names):
    """Named inputs: the workspace files of these input names that the workspace has."""
    return {name: WORKSPACE[name] for name in names if name in WORKSPACE}


def config_of(*keys):
    """One `params:` value holding the config values (dotted keys) a rule's results depend on."""
    return _rerun.config_values(config, keys)


def automl_config(*keys):
    """A `params:` function: these config values and the AutoML block of the job's phase (automl.phase1
    or automl.phase3), so a Phase 3 setting does not rerun Phase 1."""
    return lambda wildcards: config_of(*keys, f"automl.{_automl_jobs.PHASE_BLOCKS[wildcards.phase]}")


# ---- AutoML rounds -------------------------------------------------------------------------
def automl_counts(phase):
    """(max_recommendations, max_concurrent) of an AutoML phase."""
    return _automl_jobs.phase_counts(RUN, phase)


def rec_ids_before_round(phase, r):
    """Every rec of the rounds before round r: the suggest step rebuilds the study from them."""
    total, concurrent = automl_counts(phase)
    return list(range(_automl.round_rec_ids(int(r), concurrent, total)[0]))


def round_of(phase, k):
    _, concurrent = automl_counts(phase)
    return _automl.round_of(int(k), concurrent)


def preflight_gate(wildcards):
    """The pre-flight's pass mark while it is still to be written, afterwards nothing.

    The AutoML phases wait for the pre-flight's checks on the first run. Later runs must not depend
    on the pre-flight: it reruns with every workspace or config change, and Snakemake would then
    rerun all of Phase 1. The pass mark is a checkpoint that runs the same checks on the workspace
    record, read as ancient(): once written it never reruns. It does not read the pre-flight's files
    either: an ancient() edge from a job that reruns hides everything past it from Snakemake 9.27's
    first needrun pass, which then takes the loop's old decisions for current.
    """
    checkpoints.preflight_passed.get()
    return []


def automl_phase_inputs(wildcards):
    """What Phase 3 needs before it can propose: Phase 1's result and the DEFT loop's."""
    if wildcards.phase == "phase1_automl":
        return []
    return ["phase1_automl/best_rec.json", "deft/summary.json"]


def automl_suggest_inputs(wildcards):
    previous = rec_ids_before_round(wildcards.phase, wildcards.r)
    return automl_phase_inputs(wildcards) + [f"{wildcards.phase}/rec{k}/result.json" for k in previous]


def automl_proposals(wildcards):
    return f"{wildcards.phase}/round{round_of(wildcards.phase, wildcards.k)}/proposals.json"


def automl_select_inputs(wildcards):
    total, _ = automl_counts(wildcards.phase)
    inputs = automl_phase_inputs(wildcards)
    if wildcards.phase == "final_automl" and phase3_skipped():
        return inputs
    return inputs + [f"{wildcards.phase}/rec{k}/result.json" for k in range(total)]


# ---- DEFT loop walk ------------------------------------------------------------------------
def prev_iteration(n):
    return "baseline" if int(n) == 1 else f"iter{int(n) - 1}"


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def incumbent_before(n):
    """The model iteration n builds on, named by the previous iteration's decision (a checkpoint):
    its RCA, embeddings and checkpoint feed routing, mining, SDG and the warm start."""
    decision = checkpoints.deft_decide.get(loopit=prev_iteration(n)).output.decision
    return _read_json(decision)["incumbent"]


def deft_walk():
    """Walk the loop through its checkpoints, one iteration at a time.

    Asking for iteration n+1 only after iteration n's decision exists keeps the DAG exactly as long
    as the loop really runs (Snakemake shows <TBD> past the next undecided checkpoint).
    """
    return _loop.walk_loop(
        lambda label: _read_json(checkpoints.deft_decide.get(loopit=label).output.decision),
        lambda n: _read_json(checkpoints.deft_validate.get(n=n).output.gate),
    )


def deft_finish_inputs(wildcards):
    return deft_walk().files()


def phase3_skipped():
    """Phase 3 does not run after a hard stop of the loop: read from the loop's own checkpoints, not
    from deft/summary.json. A checkpoint behind other checkpoints (as deft_finish would be) that
    ends up not rerunning leaves Snakemake 9.27 running its dependents with unresolved inputs."""
    return deft_walk().hard_stopped


def checkpoint_manifest(wildcards):
    """The JSON that names an iteration's best-validation and latest checkpoints."""
    if wildcards.loopit == "baseline":
        return "baseline/train/handoff.json"
    return f"{wildcards.loopit}/train/train_summary.json"


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


def previous_training_csv(wildcards):
    n = int(wildcards.n)
    if n == 1:
        return []
    return [f"iter{n - 1}/dataset/train_combined_iter{n - 1}.csv"]


def previous_mining_history(wildcards):
    n = int(wildcards.n)
    return [] if n == 1 else [f"iter{n - 1}/mining/mining_history.json"]


def previous_decision(wildcards):
    return f"{prev_iteration(wildcards.n)}/decision.json"


def incumbent_file(path):
    """An input function: a file of the model iteration n builds on (e.g. rca/metrics.json)."""
    return lambda wildcards: f"{incumbent_before(wildcards.n)}/{path}"


def pick_best_inputs(wildcards):
    inputs = ["deft/summary.json", "final_automl/best_rec.json"]
    if not phase3_skipped():
        inputs.append("final_automl/evaluate/best.json")
    return inputs


def log_path(name):
    return f"logs/{name}.log"


def bench_path(name):
    """Snakemake's timing of a job (benchmarks/orchestration.py adds them up)."""
    return f"benchmarks/{name}.tsv"
