from pathlib import Path

from aoideft.workflow.deft_jobs import validate
from aoideft.workflow.rulekit import run_rule

i = snakemake.input
run_rule(snakemake, lambda s: validate(
    s, int(snakemake.wildcards.n), Path(i.csv).resolve(), Path(i.provenance).resolve(),
    Path(snakemake.output.gate).resolve()))
