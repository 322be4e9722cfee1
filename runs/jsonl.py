"""The JSON-lines logs of a run dir (metrics.jsonl, trainer_log.jsonl): written by training, read by
training on resume, by the sweeper and by the analysis."""
from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a JSON-lines log; a broken line (a write cut off by a crash) becomes a problem, not an error."""
    rows: list[dict] = []
    problems: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                problems.append(
                    f"{path}: line {number} is not valid JSON (a truncated write?); skipped that line, "
                    "delete or repair it to silence this"
                )
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                problems.append(f"{path}: line {number} is not a JSON object; skipped that line")
    return rows, problems


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
