from aoideft.workflow.handoff import preseed
from aoideft.workflow.rulekit import outputs, run_rule

run_rule(snakemake, lambda s: preseed(s, outputs(snakemake)))
