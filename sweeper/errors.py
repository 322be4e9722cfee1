"""The sweep's refusals: bad sweep settings, and a sweep stopped on purpose.

They derive from Hydra's CompactHydraException, which Hydra prints as the message alone (no
traceback): the message already names the setting and the fix. They are ValueErrors too, as bad
values are.
"""
from hydra.errors import CompactHydraException


class SweepError(CompactHydraException, ValueError):
    """A sweep setting that cannot work; the message names the key and what to change."""


class SweepStopped(SweepError):
    """The sweep stopped on purpose (too many failures); the message says why and what to change."""
