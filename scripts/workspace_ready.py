from pathlib import Path

from aoideft.workflow.intake import workspace_ready
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: workspace_ready(s, Path(snakemake.output.record).resolve()))
