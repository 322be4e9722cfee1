"""eval.json, a run's held-out evaluation: written beside the run by `python -m judge`, joined into the
ranking by analysis (analysis/eval_results.py), which reads it without importing any model code.

Layout:

    {"metric": "label" | "triples" | "text",
     "primary": {"name": "accuracy", "direction": "maximize"},
     "split": {"rows": 40, "fingerprint": "..."},
     "adapter": {"name": "cate-trial-3", "eval_loss": 1.2, "perplexity": 3.3, "accuracy": 0.8, ...},
     "base": {"name": "base", "eval_loss": 2.9, ...},
     "majority": {"name": "always '财经'", "answer": "财经", "accuracy": 0.42, ...},   (label tasks only)
     "generation": {"max_new_tokens": 16, "batch_size": 16, "dtype": "float32", "device": "cpu"},
     "evaluated_at": "2026-11-27T21:00:00"}

`adapter` and `base` hold the same metric keys, measured on the same held-out rows. `majority` (label
tasks) scores always answering the commonest training label on those rows: the floor to beat.
"""
from __future__ import annotations

ADAPTER_KEY = "adapter"
BASE_KEY = "base"
MAJORITY_KEY = "majority"
PRIMARY_KEY = "primary"
