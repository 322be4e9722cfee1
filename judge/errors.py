"""The one error a user of `python -m judge` sees: a line naming the file or option and the fix."""


class JudgeInputError(Exception):
    """Input judge cannot use (a missing path, an adapter of another base model, a broken prompts file,
    a task without a metric); the CLI prints it as one line and exits 2."""
