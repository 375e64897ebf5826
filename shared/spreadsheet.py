"""CSV that a spreadsheet opens as text: a cell a user typed never becomes a formula."""
from __future__ import annotations

import csv
import io
from typing import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")  # OWASP's list, and LF as CR


def safe_csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A leading =, +, -, @, tab or line break would be a formula in a spreadsheet (CSV injection):
    quote it away. (An empty cell stays empty.)"""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([("'" + v) if v.startswith(FORMULA_STARTS) else v for v in map(str, row)])
    return out.getvalue()
