from pathlib import Path

from aoideft.workflow.deft_jobs import train
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: train(
    s, int(snakemake.wildcards.n), Path(snakemake.input.csv).resolve(), Path(snakemake.output.summary).resolve()),
    uses_model=True)
