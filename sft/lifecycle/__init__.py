"""A run's start and end, apart from the training in between: the checks that refuse bad input before torch
is imported, the output dir made before Hydra makes it, the stop signals noted from the first line and acted
on at the next log step, and result.json written however the run ends (completed, pruned, failed with the
reason, interrupted). Kept apart from the recipe so that train.py can use it before the heavy imports, and
so that every way a run ends goes through one place a sweeper and the analysis can rely on.
"""
