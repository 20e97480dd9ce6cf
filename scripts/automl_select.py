from aoideft.workflow.automl_jobs import select
from aoideft.workflow.rulekit import outputs, run_rule

run_rule(snakemake, lambda s: select(s, snakemake.wildcards.phase, outputs(snakemake)))
