"""Hydra discovers plugins only under the `hydra_plugins` namespace: this is the lorasweep sweeper's entry.

All logic lives in the `sweeper` package; this package only makes it visible to Hydra.
"""
