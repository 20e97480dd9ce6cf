from pathlib import Path

from aoideft.workflow.final_jobs import pick_best
from aoideft.workflow.rulekit import run_rule

o = snakemake.output
run_rule(snakemake, lambda s: pick_best(s, Path(o.best_model).resolve(), Path(o.inference_spec).resolve()))
