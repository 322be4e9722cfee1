"""A benchmark's own venv for the tool it compares against, built once under the cache dir.

A marker file is written only after pip finished, so a build that was interrupted is started again
from an empty dir instead of being taken for a working venv."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

MARKER = ".complete"


def cached_venv(venv: Path, requirements: list[str], *, share_site_packages: bool = False, pre: bool = False) -> Path:
    """The venv's python. With share_site_packages, everything the venv does not install itself
    (torch, transformers, optuna, ...) comes from the running interpreter's site-packages, after the
    venv's own: both sides of a comparison then run the very same libraries but for the one compared."""
    python = venv / "bin" / "python"
    if (venv / MARKER).is_file():
        return python
    print(f"building a venv with {' '.join(requirements)} in {venv} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    if share_site_packages:
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        Path(site, "lorasweep-shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", *(["--pre"] if pre else []), *requirements], check=True)
    (venv / MARKER).touch()
    return python
