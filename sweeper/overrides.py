"""Python values written back as Hydra override text, so a job composes exactly what the sweeper chose."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_BARE_STRING = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")
_RESERVED_WORDS = {"true", "false", "null", "nan", "inf"}


def render_value(value: Any) -> str:
    """Hydra override syntax for `value`: strings quoted unless they are plain names (a group choice
    such as `cosine` stays bare), dicts and lists written element by element."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _BARE_STRING.match(value) and value.lower() not in _RESERVED_WORDS:
            return value
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{render_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a Hydra override value")


def render_override(key: str, value: Any) -> str:
    return f"{key}={render_value(value)}"


def override_key(override: str) -> str:
    """The config key an override string sets, without its +/++/~ prefix."""
    return override.split("=", 1)[0].lstrip("+~")


SUBDIR_KEY = "hydra.sweep.subdir="


def planned_run_dir(sweep_dir: str, overrides: list[str] | tuple[str, ...], job_num: int) -> str:
    """Where a job of the sweep writes its run dir: the sweep dir and the subdir the sweeper set
    (trial-N), else the job's number (Hydra's default subdir)."""
    subdir = next((o[len(SUBDIR_KEY) :] for o in overrides if o.startswith(SUBDIR_KEY)), None)
    return str(Path(sweep_dir) / (subdir or str(job_num)))
