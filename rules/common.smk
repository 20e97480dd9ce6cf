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
from aoideft.workflow import automl_jobs as _automl_jobs, loop as _loop, settings as _settings  # noqa: E402

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
if workflow.is_main_process:
    from aoideft.workflow import preflight as _preflight, resume as _resume

    from snakemake_interface_executor_plugins.settings import DeploymentMethod

    _preflight.parse_time_gate(RUN, profile_resources(), apptainer_enabled=DeploymentMethod.APPTAINER
                               in workflow.deployment_settings.deployment_method)
    # What --rerun-incomplete means, done here because Snakemake misses jobs behind checkpoints.
    if not workflow.output_settings.dryrun:
        for _path in _resume.clear_incomplete_outputs(RUN.run_dir):
            print(f"resume: removed {_path}, left by a job a killed run did not finish", file=sys.stderr)
        if _resume.repair_state_log(RUN.run_dir):
            print("resume: loop_log.jsonl rewritten from deft_state.json (a kill came between their writes)",
                  file=sys.stderr)


workdir: str(RUN.run_dir)


wildcard_constraints:
    n=r"[1-9]\d*",
    k=r"\d+",
    r=r"\d+",
    phase=r"phase1_automl|final_automl",
    it=r"baseline|iter[1-9]\d*|final_automl",
    loopit=r"baseline|iter[1-9]\d*",




def model_container():
    """The image model rules run in under --sdm apptainer: TAO's for backend tao with runtime
    apptainer, else the global `container` (None: none)."""
    if config["backend"] == "tao" and config["tao"]["runtime"] == "apptainer":
        return _settings.tao_setup(RUN).image
    return config["container"]


def gpu_resources():
    """Resources of a rule that trains or runs the model (SLURM: --gpus, --mem, -t)."""
    res = config["resources"]["gpu"]
    return dict(gpu=res["gpu"], mem_mb=res["mem_mb"], runtime=res["runtime"])


def cpu_resources():
    res = config["resources"]["cpu"]
    return dict(mem_mb=res["mem_mb"], runtime=res["runtime"])


GPU_THREADS = config["resources"]["gpu"]["threads"]
CPU_THREADS = config["resources"]["cpu"]["threads"]


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


def deft_summary():
    return _read_json(checkpoints.deft_finish.get().output.summary)


def log_path(name):
    return f"logs/{name}.log"


def bench_path(name):
    """Snakemake's timing of a job (benchmarks/orchestration.py adds them up)."""
    return f"benchmarks/{name}.tsv"
