"""The one exception type for bad user input.

Every check on user-supplied files, rows, keys or config raises ``InputError`` with a message that
names the file (and row or key) and says what to do. Rule scripts and the CLI print the message
alone, without a traceback, so a user sees one clear line.
"""

import sys
from typing import NoReturn


class InputError(ValueError):
    """A user input (file, row, spec key, config value) is invalid; the message says how to fix it."""


def refuse(error: InputError) -> NoReturn:
    """How the parse-time gate stops Snakemake: one ``PRE-FLIGHT FAILED:`` line on stderr, exit 1,
    no traceback (Snakemake would print one, through rules/common.smk, for a raised error)."""
    sys.stderr.write(f"PRE-FLIGHT FAILED: {error}\n")
    sys.exit(1)
