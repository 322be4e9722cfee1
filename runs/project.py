"""`${project_dir:}`, the resolver conf/paths uses so the shipped demo data is found from any working
directory. Every entry point that composes the config or reads a run's saved one registers it from here,
so all of them resolve the same directory."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_DIR = Path(__file__).resolve().parents[1]


def register_project_dir() -> None:
    OmegaConf.register_new_resolver("project_dir", lambda: str(PROJECT_DIR), replace=True)
