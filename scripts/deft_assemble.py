from pathlib import Path

from aoideft.workflow.deft_jobs import run_assemble
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: run_assemble(s, int(snakemake.wildcards.n), Path(snakemake.output.csv).resolve()))
