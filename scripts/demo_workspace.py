from aoideft.workflow.intake import generate_demo
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, generate_demo)
