from pathlib import Path

from aoideft.workflow.preflight import write_preflight
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: write_preflight(
    s, Path(snakemake.output.summary).resolve(), Path(snakemake.output.checks).resolve()))
