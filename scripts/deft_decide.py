from pathlib import Path

from aoideft.workflow.deft_eval_jobs import decide
from aoideft.workflow.rulekit import run_rule

i = snakemake.input
run_rule(snakemake, lambda s: decide(
    s, snakemake.wildcards.loopit, Path(i.best).resolve(), Path(i.rca).resolve(),
    Path(snakemake.output.decision).resolve()))
