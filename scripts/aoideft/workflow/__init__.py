"""Glue between Snakemake rules and the library: one function per rule, called by thin scripts."""
