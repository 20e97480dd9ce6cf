from pathlib import Path

from aoideft.workflow.deft_jobs import route
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: route(s, int(snakemake.wildcards.n), Path(snakemake.output.summary).resolve()))
