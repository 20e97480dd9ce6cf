from pathlib import Path

from aoideft.workflow.deft_jobs import mine
from aoideft.workflow.rulekit import run_rule

o = snakemake.output
run_rule(snakemake, lambda s: mine(s, int(snakemake.wildcards.n), Path(o.rows).resolve(), Path(o.history).resolve()))
