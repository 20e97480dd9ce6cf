from pathlib import Path

from aoideft.workflow.deft_eval_jobs import run_rca
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: run_rca(
    s, snakemake.wildcards.loopit, Path(snakemake.input.best).resolve(), Path(snakemake.output.metrics).resolve()))
