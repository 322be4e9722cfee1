"""The sweep's refusals: bad sweep settings, and a sweep stopped on purpose.

A refusal (SweepError) is a user error: the sweeper prints its message as one line on stderr and exits
with code 2 (runs.exits), before any storage is created where it can be checked that early. Both
derive from Hydra's CompactHydraException, which Hydra prints as the message alone (no traceback), for
code that calls the sweeper's loop without the shim in hydra_plugins.
"""
from hydra.errors import CompactHydraException


class SweepError(CompactHydraException, ValueError):
    """A sweep setting that cannot work; the message names the key and what to change."""


class SweepStopped(CompactHydraException):
    """The sweep stopped on purpose (too many failures): not a bad setting, so Hydra's exit code 1 and
    the message alone; the message says why and what to change."""
