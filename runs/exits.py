"""How an entry point ends when it cannot go on: the exit codes shared by train.py, the sweeper,
`python -m analysis` and `python -m judge`, and the one-line refusal.

A user error is its message on one line on stderr and exit code 2 (argparse's code for a bad command
line). Raised as SystemExit from inside a Hydra app (train.py, a sweeper): Hydra reports an Exception
with exit code 1 and, for most kinds, a traceback, but lets SystemExit through with its code.
"""
from __future__ import annotations

import sys
from typing import NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C


def exit_refused(message: str) -> NoReturn:
    """Prints `message` as one line on stderr and exits with EXIT_USER_ERROR."""
    print(" ".join(message.split()), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)
