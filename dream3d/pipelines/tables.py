"""Tables of results: CSV and markdown from rows (dicts with the same keys)."""

from __future__ import annotations

import csv
from pathlib import Path


def write_csv(rows: list[dict], path: Path) -> None:
    """Rows (dicts with the same keys) as CSV with a header."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown(rows: list[dict], cell=str) -> list[str]:
    """A markdown table's lines: header, rule, one line per row (cells formatted by ``cell``)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
