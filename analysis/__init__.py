"""Analysis of LoRA runs and sweeps: smoothing, loading, ranking, diagnosis, plots.

Imports no torch and no training code, so it starts fast and runs on a laptop.
"""
