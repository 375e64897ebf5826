"""The purchasers' CSV never lets a cell a purchaser typed run as a formula (OWASP CSV injection)."""
from __future__ import annotations

import csv
import io

import pytest

from shared.spreadsheet import safe_csv


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))[1:]


@pytest.mark.parametrize("typed", ["=HYPERLINK(\"http://evil\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                   "\t=1+1", "\r=1+1", "\n=1+1"])
def test_a_cell_a_spreadsheet_would_run_is_kept_as_text(typed):
    assert cells(safe_csv(["name"], [[typed]])) == [["'" + typed]]


@pytest.mark.parametrize("typed", ["Ann", "", "a=b", "O'Brien", "ann@example.com", "2030-01-01T00:00:00+00:00"])
def test_an_ordinary_cell_and_an_empty_one_are_left_as_they_are(typed):
    assert cells(safe_csv(["name"], [[typed]])) == [[typed]]
