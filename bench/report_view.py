"""See an analysis report as its reader does: render the HTML in headless Chromium and save a screenshot.

    python -m analysis rank multirun/DATE/TIME --report report.html
    python -m bench.report_view report.html [--out report.png] [--width 1400] [--height 2000]

Needs Chromium (Debian: `apt-get install chromium`); the tests check the report's structure in Python
and do not need it. Prints the screenshot's path; open it to check that the verdict, the ranking's
setting and params columns and the plots fit the window.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(report: Path, out: Path, width: int, height: int) -> Path:
    """A PNG of the first `height` pixels of the report at `width` pixels, as headless Chromium draws it."""
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        raise SystemExit("bench.report_view: no Chromium found; install it (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             f"--user-data-dir={profile}", f"--screenshot={out.resolve()}", f"--window-size={width},{height}",
             report.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="an HTML report of `python -m analysis rank --report F.html`")
    parser.add_argument("--out", type=Path, help="the PNG to write (default: beside the report, .png)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args()
    if not args.report.is_file():
        raise SystemExit(f"bench.report_view: {args.report}: no such file; write it with python -m analysis rank ... --report")
    print(screenshot(args.report, args.out or args.report.with_suffix(".png"), args.width, args.height))


if __name__ == "__main__":
    main()
