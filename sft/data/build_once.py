"""Build a cached artefact (a model dir, a tokenized data set) exactly once, however many processes ask."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, building it first if absent; safe when several processes race to build it.

    Parallel sweep trials all ask for the same cached artefact. The first takes a file lock beside the
    target and builds while the others wait: two builds at once would only fight over the same cores (on
    a 2-core box, two torch builds side by side take many times longer than one after the other). The
    build goes into a temporary dir renamed into place, so a killed build leaves no half-written target.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if target.is_dir():
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build(scratch)
            os.rename(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
