"""The DEFT loop's per-stage logic: RCA -> routing -> SDG -> mining -> assemble.

Each stage is one module of pure, unit-tested functions plus a ``write_*`` function that writes the
stage's outputs atomically; the Snakemake rule scripts are thin wrappers around them.
"""
