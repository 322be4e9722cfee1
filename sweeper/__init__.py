"""The Optuna sweeper: search-space parsing, the ask/tell loop over a Hydra launcher, the pruning bridge.

Hydra finds it through the shim in hydra_plugins/lorasweep; training reaches it only through
`sweeper.reporter.TrialReporter`, which train.py builds from the `trial` config node.
"""
