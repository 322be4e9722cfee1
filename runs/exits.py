"""How a command ends when it cannot go on, the same for every entry point (train.py and its sweeps,
`python -m analysis`, `python -m judge`): bad input is one line on stderr and exit code 2; an unexpected
error keeps its traceback (in the run's train.log when there is a run) and exits 1; Ctrl-C exits 130."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_UNEXPECTED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C
FULL_ERROR_ENV = "HYDRA_FULL_ERROR"


def one_line(text: str) -> str:
    """A message of several lines (Hydra lists a group's options one per line) as one line."""
    return " ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


def refuse(message: str) -> NoReturn:
    """Bad input: the message on stderr as one line, exit code 2. A SystemExit, so it passes through
    Hydra's own error printing (which catches Exception) unchanged."""
    sys.stderr.write(one_line(message) + "\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_USER_ERROR)


def crash(message: str) -> NoReturn:
    """An unexpected error whose traceback is kept elsewhere (the message says where): one line on
    stderr, exit code 1."""
    sys.stderr.write(one_line(message) + "\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_UNEXPECTED)


def stop(message: str) -> NoReturn:
    """Stopped by a signal (a time limit, a preemption) with its state saved: one line on stderr, the exit
    code of Ctrl-C; the same command resumes."""
    sys.stderr.write(one_line(message) + "\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_INTERRUPTED)


def run_hydra_app(
    main: Callable[[], Any],
    user_errors: tuple[type[BaseException], ...],
    explain: Callable[[BaseException], str],
    reported: tuple[type[BaseException], ...] = (),
) -> None:
    """Calls a `@hydra.main` function and ends by the contract above: an error in `user_errors` is refused
    with `explain(error)`; one in `reported` already says where its traceback is, so its message alone
    goes to stderr with exit code 1; anything else keeps Python's traceback.

    Hydra prints an error raised while it composes the config (a value of the wrong type, an unknown key)
    or raised by a sweeper in several lines of its own and exits 1, unless HYDRA_FULL_ERROR=1, when it
    raises the error instead: so it is set here, for this process, and the error is reported here. Whoever
    sets HYDRA_FULL_ERROR=1 themselves gets every error with its full traceback, as Hydra gives it."""
    full_error = os.environ.get(FULL_ERROR_ENV) == "1"
    os.environ[FULL_ERROR_ENV] = "1"
    try:
        main()
    except KeyboardInterrupt:  # a run's result.json says "interrupted"; a traceback would add nothing
        raise SystemExit(EXIT_INTERRUPTED) from None
    except user_errors as error:
        if full_error:
            raise
        refuse(explain(error))
    except reported as error:
        if full_error:
            raise
        crash(str(error))
