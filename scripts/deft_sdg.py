from pathlib import Path

from aoideft.workflow.deft_jobs import run_sdg
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: run_sdg(s, int(snakemake.wildcards.n), Path(snakemake.output.rows).resolve()),
         uses_model=True)
