"""Registers the training config's schema (runs.schema) in Hydra's ConfigStore.

Here because Hydra imports every module of the `hydra_plugins` namespace when it starts, before it
composes a config, for `python train.py` and for the compose API alike: conf/'s yaml files name their
schema in their defaults lists and find it whoever composes them.
"""
from runs.schema import register_schema

register_schema()
