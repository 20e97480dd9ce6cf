from pathlib import Path

from aoideft.workflow.preflight import mark_passed
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: mark_passed(s, Path(snakemake.output.passed).resolve()))
