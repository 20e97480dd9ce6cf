"""The one exception type for bad user input.

Every check on user-supplied files, rows, keys or config raises ``InputError`` with a message that
names the file (and row or key) and says what to do. Rule scripts and the CLI print the message
alone, without a traceback, so a user sees one clear line.
"""


class InputError(ValueError):
    """A user input (file, row, spec key, config value) is invalid; the message says how to fix it."""
