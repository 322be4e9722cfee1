"""The refusal of a setting, shared by the schema (runs.schema, runs.budget) and training (sft), which
raises it for what only it can see (an unknown template, a tokenizer larger than the embeddings)."""


class ConfigError(ValueError):
    """An impossible or unknown setting; the message names the key, the value and what the key takes."""
