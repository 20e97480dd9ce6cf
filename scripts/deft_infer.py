from pathlib import Path

from aoideft.workflow.deft_eval_jobs import infer
from aoideft.workflow.rulekit import run_rule

run_rule(snakemake, lambda s: infer(
    s, snakemake.wildcards.it, Path(snakemake.input.manifest).resolve(), Path(snakemake.output.summary).resolve()),
    uses_model=True)
