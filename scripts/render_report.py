from pathlib import Path

from aoideft.workflow.report_context import render_run_report
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: render_run_report(s, Path(snakemake.output.html).resolve(),
                                                Path(snakemake.output.summary).resolve()))
