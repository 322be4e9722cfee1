"""Held-out evaluation of trained adapters against the base model, and the hand-off to a server.

`python -m judge`: see judge/cli.py. Holds the model code that analysis/ must not import; analysis
reads only the eval.json files written here (runs/evaluation.py).
"""
