# Shared helpers: config loading and validation, paths, resources and the DEFT loop walk.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

REPO_ROOT = Path(workflow.basedir)


configfile: str(REPO_ROOT / "config" / "config.yaml")


validate(config, schema="../config/schemas/config.schema.yaml", set_default=True)

from aoideft.workflow import settings as _settings  # noqa: E402  (needs the validated config)

# Relative paths in the config are resolved against the repository root, so the same command
# works from any directory and with --directory.
RUN = _settings.resolve(config, REPO_ROOT)


workdir: str(RUN.run_dir)


wildcard_constraints:
    n=r"[1-9]\d*",
    k=r"\d+",
    r=r"\d+",
    phase=r"phase1_automl|final_automl",
    it=r"baseline|iter[1-9]\d*|final_automl",
    loopit=r"baseline|iter[1-9]\d*",


# The pre-flight runs at parse time in the main process only (not in every cluster job).
if workflow.is_main_process:
    from aoideft.workflow import preflight as _preflight

    _preflight.parse_time_gate(RUN)


def gpu_resources(attempt_scaling=True):
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
    key = "phase1" if phase == "phase1_automl" else "phase3"
    block = config["automl"][key]
    return block["max_recommendations"], block["max_concurrent"]


def rec_ids_before_round(phase, r):
    _, concurrent = automl_counts(phase)
    return list(range(0, int(r) * concurrent))


def round_of(phase, k):
    _, concurrent = automl_counts(phase)
    return int(k) // concurrent


# ---- DEFT loop walk ------------------------------------------------------------------------
def prev_iteration(n):
    return "baseline" if int(n) == 1 else f"iter{int(n) - 1}"


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def deft_walk():
    """Walk the loop's checkpoints one iteration at a time; return the stop record.

    Asking for iteration n+1 only after iteration n's decision exists keeps the DAG exactly as long
    as the loop really runs (Snakemake shows <TBD> past the next undecided checkpoint).
    """
    decision = _read_json(checkpoints.deft_decide.get(loopit="baseline").output.decision)
    iterations = []
    while not decision["stop"]:
        n = len(iterations) + 1
        gate = _read_json(checkpoints.deft_validate.get(n=n).output.gate)
        if gate["hard_stop"]:
            return {"iterations": iterations, "hard_stop_iteration": n}
        iterations.append(n)
        decision = _read_json(checkpoints.deft_decide.get(loopit=f"iter{n}").output.decision)
    return {"iterations": iterations, "hard_stop_iteration": None}


def deft_finish_inputs(wildcards):
    walk = deft_walk()
    files = ["baseline/decision.json"]
    files += [f"iter{n}/decision.json" for n in walk["iterations"]]
    if walk["hard_stop_iteration"]:
        files.append(f"iter{walk['hard_stop_iteration']}/dataset/gate.json")
    return files


def deft_summary():
    return _read_json(checkpoints.deft_finish.get().output.summary)


def log_path(name):
    return f"logs/{name}.log"
