"""BookError: the one user-facing error, and the leaf every part of the library may import.

Its message is one line that says what to do; `exit_code` turns it into exit status 2 for the
command-line entry points.
"""

from __future__ import annotations

import sys


class BookError(Exception):
    """A user-facing error: its message is one line that says what to do."""


def exit_code(action, *args) -> int:
    """Run a command-line action: 0 on success; a BookError prints its one line and gives 2."""
    try:
        action(*args)
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
