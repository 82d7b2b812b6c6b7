"""Typing and row validation of the aT flower auction rows (the ``flower_auction_validated`` frame).

The rows of ``public_bidding_flowers`` are text as served. Here they become typed rows
(amounts and quantities to integers, names trimmed) and are validated with a pandera
``DataFrameModel``, lazily, so that every failure of every row is collected. A row that fails
anything is rejected with its reasons (``[{column, check, value}]``, columns named as the API names
them, values as served) and never reaches ``bidding_flowers``; the other rows go on.

Row rules (SPEC.md §2.3): the served ``saleDate`` is the date asked for; ``flowerGubn`` names the
group asked for; 품목/품종/등급 present; amounts and quantity non-negative integers (thousands
separators tolerated); ``minAmt ≤ avgAmt ≤ maxAmt``; ``avgAmt = round(totAmt / totQty)`` within 1 won;
(date, group, 품목, 품종, 등급) unique. Whether the whole date may be written (the blocking checks) is
decided in :mod:`aed_pipeline.lib.at_flower.checks`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from aed_pipeline.lib.at_flower.client import FLOWER_GUBN_NAMES

__all__ = [
    "AMOUNT_COLUMNS",
    "KEY_COLUMNS",
    "VALID_COLUMNS",
    "FlowerAuctionRows",
    "FlowerValidation",
    "ValidatedFlowerDay",
    "average_matches_total",
    "parse_integer_text",
    "plain_valid_rows",
    "prices_ordered",
    "type_flower_rows",
    "validate_flower_rows",
]

#: Integer columns of the typed frame (API ``maxAmt``, ``minAmt``, ``avgAmt``, ``totAmt``, ``totQty``).
AMOUNT_COLUMNS = ("max_amt", "min_amt", "avg_amt", "tot_amt", "tot_qty")
NAME_COLUMNS = ("pum_name", "good_name", "lv_nm")
#: What identifies a row within a day (the API groups by it, SPEC.md §2.3).
KEY_COLUMNS = ("sale_date", "flower_gubn", "pum_name", "good_name", "lv_nm")
#: The columns of a valid row handed to the table writes.
VALID_COLUMNS = ("sale_date", "flower_gubn", *NAME_COLUMNS, *AMOUNT_COLUMNS)

#: Typed column → the raw ``public_bidding_flowers`` column it comes from and its API field name.
_SOURCE_OF = {
    "served_sale_date": ("sale_date_raw", "saleDate"),
    "served_flower_gubn": ("flower_gubn_raw", "flowerGubn"),
    "pum_name": ("pum_name", "pumName"),
    "good_name": ("good_name", "goodName"),
    "lv_nm": ("lv_nm", "lvNm"),
    "max_amt": ("max_amt", "maxAmt"),
    "min_amt": ("min_amt", "minAmt"),
    "avg_amt": ("avg_amt", "avgAmt"),
    "tot_amt": ("tot_amt", "totAmt"),
    "tot_qty": ("tot_qty", "totQty"),
}
_RAW_TO_API = dict(_SOURCE_OF.values())

# Digits with an optional sign, either plain or grouped by thousands ("12,816,580"); at most 15
# digits so that every accepted value fits a bigint. ASCII digits only: a full-width digit is
# not what the API serves and is rejected rather than guessed at.
_INTEGER_TEXT = r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3}){1,4}|[0-9]{1,15})"


def parse_integer_text(values: pd.Series) -> pd.Series:
    """Integers (``Int64``) from served text; <NA> where the text is missing or not an integer.

    ``" 1,234 "`` → 1234, ``"-7"`` → -7 (the sign survives so that the non-negative check can name
    it), ``"N/A"``, ``""``, ``"12.5"``, ``"1,23"`` → <NA>.
    """
    text = values.astype("string").str.strip()
    is_integer = text.str.fullmatch(_INTEGER_TEXT).fillna(False).astype(bool)
    digits = text.where(is_integer).str.replace(",", "", regex=False)
    return pd.to_numeric(digits).astype("Int64")


def type_flower_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """The typed frame of ``public_bidding_flowers`` rows (as read by ``read_public_rows``).

    Keeps every row (a value that cannot be typed becomes <NA>; validation reports it), with the
    same index as ``raw``.
    """
    typed = pd.DataFrame(index=raw.index)
    typed["sale_date"] = raw["sale_date"].astype(object)
    typed["flower_gubn"] = raw["flower_gubn"].astype("int64")
    typed["served_sale_date"] = raw["sale_date_raw"].astype("string").str.strip()
    typed["served_flower_gubn"] = raw["flower_gubn_raw"].astype("string").str.strip()
    for column in NAME_COLUMNS:
        typed[column] = raw[column].astype("string").str.strip()
    for column in AMOUNT_COLUMNS:
        typed[column] = parse_integer_text(raw[column])
    typed["page"] = raw["page"].astype("int64")
    typed["row_in_page"] = raw["row_in_page"].astype("int64")
    return typed


def prices_ordered(frame: pd.DataFrame) -> pd.Series:
    """``minAmt ≤ avgAmt ≤ maxAmt`` per row; <NA> where an amount is missing."""
    return (frame["min_amt"] <= frame["avg_amt"]) & (frame["avg_amt"] <= frame["max_amt"])


def average_matches_total(frame: pd.DataFrame) -> pd.Series:
    """``avgAmt`` within 1 won of ``round(totAmt / totQty)`` per row (the API computes
    ``ROUND(SUM(TOT_AMT)/SUM(TOT_QTY))``); False when the quantity is 0, <NA> where a value is
    missing."""
    quantity = frame["tot_qty"]
    positive = quantity > 0
    safe_quantity = quantity.where(positive, 1)
    # Half-up rounding in integers: float division would lose exactness on large totals.
    rounded = (2 * frame["tot_amt"] + safe_quantity) // (2 * safe_quantity)
    return positive & ((frame["avg_amt"] - rounded).abs() <= 1)


class FlowerAuctionRows(pa.DataFrameModel):
    """One typed f001 row: a 품종's settled prices for a grade on a sale date in one flower group."""

    sale_date: Series[pa.Date] = pa.Field(nullable=False, description="the sale date asked for (the partition)")
    flower_gubn: Series[int] = pa.Field(description="the group asked for: 1 절화, 2 관엽, 3 난, 4 춘란")
    served_sale_date: Series[str] = pa.Field(nullable=False, description="saleDate as served")
    served_flower_gubn: Series[str] = pa.Field(nullable=False, description="flowerGubn as served (절화 …)")
    pum_name: Series[str] = pa.Field(nullable=False, description="품목 (pumName)")
    good_name: Series[str] = pa.Field(nullable=False, description="품종 (goodName)")
    lv_nm: Series[str] = pa.Field(nullable=False, description="등급 (lvNm)")
    max_amt: Series[pd.Int64Dtype] = pa.Field(nullable=False, description="maxAmt, 원")
    min_amt: Series[pd.Int64Dtype] = pa.Field(nullable=False, description="minAmt, 원")
    avg_amt: Series[pd.Int64Dtype] = pa.Field(nullable=False, description="avgAmt, 원")
    tot_amt: Series[pd.Int64Dtype] = pa.Field(nullable=False, description="totAmt, 원")
    tot_qty: Series[pd.Int64Dtype] = pa.Field(nullable=False, description="totQty (속 / 분)")

    class Config:
        unique = list(KEY_COLUMNS)  # noqa: RUF012 (pandera reads its Config as plain class attributes)

    @pa.check("flower_gubn", name="known_flower_group")
    def known_flower_group(cls, series: Series[int]) -> Series[bool]:
        return series.isin(list(FLOWER_GUBN_NAMES))

    @pa.check(*NAME_COLUMNS, name="not_blank")
    def not_blank(cls, series: Series[str]) -> Series[bool]:
        return series.str.len() > 0

    @pa.check(*AMOUNT_COLUMNS, name="non_negative")
    def non_negative(cls, series: Series[pd.Int64Dtype]) -> Series[bool]:
        return series.ge(0)

    @pa.dataframe_check(name="sale_date_is_partition")
    def sale_date_is_partition(cls, frame: pd.DataFrame) -> Series[bool]:
        asked = frame["sale_date"].map(date.isoformat)
        return (frame["served_sale_date"] == asked).fillna(True)

    @pa.dataframe_check(name="flower_gubn_matches_request")
    def flower_gubn_matches_request(cls, frame: pd.DataFrame) -> Series[bool]:
        asked = frame["flower_gubn"].map(FLOWER_GUBN_NAMES)
        return (frame["served_flower_gubn"] == asked).fillna(True)

    @pa.dataframe_check(name="min_le_avg_le_max")
    def min_le_avg_le_max(cls, frame: pd.DataFrame) -> Series[bool]:
        # Missing amounts are reported by their own column; judge only rows that have all three.
        return prices_ordered(frame).fillna(True).astype(bool)

    @pa.dataframe_check(name="avg_is_total_over_quantity")
    def avg_is_total_over_quantity(cls, frame: pd.DataFrame) -> Series[bool]:
        return average_matches_total(frame).fillna(True).astype(bool)


#: The columns a failed multi-column check is about, for the rejection reason.
_CHECK_COLUMNS = {
    "sale_date_is_partition": ("served_sale_date",),
    "flower_gubn_matches_request": ("served_flower_gubn",),
    "min_le_avg_le_max": ("min_amt", "avg_amt", "max_amt"),
    "avg_is_total_over_quantity": ("avg_amt", "tot_amt", "tot_qty"),
    "multiple_fields_uniqueness": ("pum_name", "good_name", "lv_nm"),
}
_CHECK_NAMES = {"multiple_fields_uniqueness": "unique_key"}


@dataclass
class FlowerValidation:
    """The typed frame of every served row, which rows passed, and why the others failed."""

    typed: pd.DataFrame
    valid: pd.Series
    #: Row label of ``typed`` → its failed checks ``[{column, check, value}]``.
    reasons: dict[Hashable, list[dict[str, Any]]] = field(default_factory=dict)


def _raw_value(raw: pd.DataFrame, label: Hashable, typed_column: str) -> Any:
    raw_column = _SOURCE_OF[typed_column][0]
    value = raw.at[label, raw_column]
    return None if pd.isna(value) else value


def _reason(raw: pd.DataFrame, label: Hashable, check: str, typed_columns: tuple[str, ...]) -> dict[str, Any]:
    api_names = [_SOURCE_OF[c][1] for c in typed_columns]
    if len(typed_columns) == 1:
        return {"column": api_names[0], "check": check, "value": _raw_value(raw, label, typed_columns[0])}
    return {
        "column": ",".join(api_names),
        "check": check,
        "value": {name: _raw_value(raw, label, c) for name, c in zip(api_names, typed_columns)},
    }


def _reasons_from_failures(raw: pd.DataFrame, failures: pd.DataFrame) -> dict[Hashable, list[dict[str, Any]]]:
    if failures["index"].isna().any():
        # A failure without a row is a schema-level one (a dtype): a bug in the typing, not bad data.
        raise TypeError(
            "the typed flower frame does not match FlowerAuctionRows: "
            + failures[failures["index"].isna()][["column", "check"]].to_string(index=False)
        )
    reasons: dict[Hashable, list[dict[str, Any]]] = defaultdict(list)
    seen: set[tuple[Hashable, str, str]] = set()
    for label, column, check in failures[["index", "column", "check"]].itertuples(index=False):
        if check in _CHECK_COLUMNS:
            # A dataframe-level check lists every column of a failing row: report it once.
            if (label, check, "") in seen:
                continue
            seen.add((label, check, ""))
            reasons[label].append(_reason(raw, label, _CHECK_NAMES.get(check, check), _CHECK_COLUMNS[check]))
            continue
        if (label, check, column) in seen or column not in _SOURCE_OF:
            continue
        seen.add((label, check, column))
        if check == "not_nullable":
            # Typing turns text that is not an integer into <NA>: say which of the two it was.
            served = _raw_value(raw, label, column)
            check = "required" if served is None or not str(served).strip() else "integer"
        reasons[label].append(_reason(raw, label, check, (column,)))
    return dict(reasons)


def validate_flower_rows(raw: pd.DataFrame) -> FlowerValidation:
    """Type ``raw`` (``public_bidding_flowers`` rows) and validate every row lazily."""
    typed = type_flower_rows(raw)
    reasons: dict[Hashable, list[dict[str, Any]]] = {}
    if len(typed):
        try:
            FlowerAuctionRows.validate(typed, lazy=True)
        except pa.errors.SchemaErrors as errors:
            reasons = _reasons_from_failures(raw, errors.failure_cases)
    valid = pd.Series(True, index=typed.index)
    if reasons:
        valid.loc[list(reasons)] = False
    return FlowerValidation(typed=typed, valid=valid, reasons=reasons)


def plain_valid_rows(validation: FlowerValidation) -> pd.DataFrame:
    """The valid rows in :data:`VALID_COLUMNS` with plain dtypes (``int64``, ``str`` objects):
    nothing is missing any more, and plain columns are what the table writes and pickles want."""
    valid = validation.typed.loc[validation.valid.to_numpy(), list(VALID_COLUMNS)]
    return valid.astype({**{c: object for c in NAME_COLUMNS}, **{c: "int64" for c in AMOUNT_COLUMNS}})


def served_record(raw: pd.DataFrame, label: Hashable) -> dict[str, Any]:
    """The row as the API served it (API field names, text), for the quarantine."""
    row = raw.loc[label]
    return {api: (None if pd.isna(row[column]) else row[column]) for column, api in _RAW_TO_API.items()}


@dataclass(frozen=True)
class ValidatedFlowerDay:
    """One sale date's validated rows, with the verdict of the blocking checks stored beside them.

    The table assets write ``rows`` only when ``blocking_failures`` is empty; storing the verdict
    with the frame keeps a later, separate materialisation of the tables from writing a date that
    failed a blocking check.
    """

    sale_date: date
    rows: pd.DataFrame
    served: int
    rejected: int
    blocking_failures: tuple[str, ...] = ()
    #: Where the archived pages behind the rows came from: ``live`` or ``simulator``.
    source: str = "unknown"

    @property
    def writable(self) -> bool:
        return not self.blocking_failures

    @property
    def valid(self) -> int:
        """Its valid rows' count, as :class:`~aed_pipeline.lib.at_flower.rows.StoredFlowerDay` has it."""
        return len(self.rows)
