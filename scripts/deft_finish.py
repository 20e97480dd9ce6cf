from pathlib import Path

from aoideft.workflow.deft_jobs import finish
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: finish(s, Path(snakemake.output.summary).resolve()))
