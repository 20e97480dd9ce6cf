from pathlib import Path

from aoideft.workflow.deft_eval_jobs import evaluate
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: evaluate(
    s, snakemake.wildcards.it, Path(snakemake.input.inference).resolve(), Path(snakemake.output.best).resolve()))
