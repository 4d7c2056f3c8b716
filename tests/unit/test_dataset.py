"""Training data in the user's shape: labels and amounts parsed strictly, errors naming the
column and the value."""

from __future__ import annotations

import pandas as pd
import pytest

from models.dataset import ColumnMap, normalise, parse_amounts, parse_labels
from models.errors import DataError


def _table(**over: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "transaction_id": ["a", "b", "c"],
        "event_time": [1_767_225_600_000, 1_767_225_601_000, 1_767_225_602_000],
        "customer_id": ["c1", "c2", "c1"],
        "terminal_id": ["t1", "t1", "t2"],
        "amount": [1200, 5716, 99],
        "is_fraud": [0, 1, 0],
    }
    return pd.DataFrame(base | over)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False, True], [True, False, True]),
        ([1, 0, 1], [True, False, True]),
        (["yes", "No", "YES"], [True, False, True]),
        (["true", "False", "t"], [True, False, True]),
        (["1", "0", "1"], [True, False, True]),
    ],
)
def test_labels_in_every_usual_spelling(values: list[object], expected: list[bool]) -> None:
    assert parse_labels(pd.Series(values), "is_fraud").tolist() == expected


@pytest.mark.parametrize("bad", [["yes", "maybe", "no"], [1, 2, 0], ["yes", None, "no"]])
def test_anything_else_is_an_error_naming_column_and_value(bad: list[object]) -> None:
    with pytest.raises(DataError, match=r"column 'fraud_flag'.*row 1"):
        parse_labels(pd.Series(bad), "fraud_flag")
    with pytest.raises(DataError, match="fraud_flag"):
        normalise(_table(fraud_flag=bad).drop(columns="is_fraud"), ColumnMap(is_fraud="fraud_flag"))


def test_amounts_with_decimals_need_the_major_unit_and_are_never_rounded_silently() -> None:
    with pytest.raises(DataError, match=r"column 'amt'.*57\.16.*amount_unit=major"):
        parse_amounts(pd.Series([12, 57.16]), "amt", None)
    with pytest.raises(DataError, match="amount_unit=major"):
        parse_amounts(pd.Series([12, 57.16]), "amt", "minor")
    assert parse_amounts(pd.Series([12, 57.16]), "amt", "major").tolist() == [1200, 5716]
    assert parse_amounts(pd.Series([1200, 5716]), "amt", None).tolist() == [1200, 5716]
    with pytest.raises(DataError, match=r"column 'amt'.*'12,5'"):
        parse_amounts(pd.Series(["1", "12,5"]), "amt", "major")


def test_a_misspelt_amount_unit_is_refused() -> None:
    with pytest.raises(DataError, match="amount_unit 'majr'"):
        ColumnMap.parse("amount_unit=majr")
    assert ColumnMap.parse("amount=amt_eur,amount_unit=major").amount_unit == "major"
