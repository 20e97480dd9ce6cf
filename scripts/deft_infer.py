from pathlib import Path

from aoideft.workflow.deft_eval_jobs import score
from aoideft.workflow.rulekit import run_rule

output = snakemake.output
run_rule(snakemake, lambda s: score(
    s, snakemake.wildcards.get("loopit", "final_automl"), Path(snakemake.input.manifest).resolve(),
    Path(output.summary).resolve(), Path(output.embeddings).resolve() if "embeddings" in output.keys() else None),
    uses_model=True)
