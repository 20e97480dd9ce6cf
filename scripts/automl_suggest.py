from pathlib import Path

from aoideft.workflow.automl_jobs import suggest
from aoideft.workflow.rulekit import run_rule

w = snakemake.wildcards
run_rule(snakemake, lambda s: suggest(s, w.phase, int(w.r), Path(snakemake.output.proposals).resolve()))
