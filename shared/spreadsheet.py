"""CSV that a spreadsheet opens as text: a cell a user typed never becomes a formula."""
from __future__ import annotations

import csv
import io
from typing import Iterable, Sequence

FORMULA_STARTS = "=+-@"


def safe_csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A leading =, +, - or @ would be a formula in a spreadsheet (CSV injection): quote it away."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([("'" + v) if v[:1] in FORMULA_STARTS else v for v in map(str, row)])
    return out.getvalue()
