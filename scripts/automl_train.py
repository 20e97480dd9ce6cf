from pathlib import Path

from aoideft.workflow.automl_jobs import train_rec
from aoideft.workflow.rulekit import run_rule

w = snakemake.wildcards
run_rule(snakemake, lambda s: train_rec(
    s, w.phase, int(w.k), Path(snakemake.input.proposals).resolve(), Path(snakemake.output.result).resolve()),
    uses_model=True)
