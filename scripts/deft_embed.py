from pathlib import Path

from aoideft.workflow.deft_eval_jobs import embed
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: embed(s, snakemake.wildcards.loopit, Path(snakemake.output.summary).resolve()),
         uses_model=True)
