"""Transaction tables: loading a user's own history, and rows as event dicts.

A user's CSV/Parquet is mapped onto fraudstream's columns with `ColumnMap`.
Required: transaction id, timestamp, customer, terminal, amount, fraud label.
Optional (filled with nulls when absent): device, latitude, longitude, channel,
mcc, currency, country, ip.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.errors import DataError
from models.units import DAY_MS

REQUIRED = ("transaction_id", "event_time", "customer_id", "terminal_id", "amount", "is_fraud")
OPTIONAL_DEFAULTS: dict[str, Any] = {
    "currency": "EUR",
    "channel": "POS",
    "mcc": 0,
    "device_id": None,
    "ip": None,
    "latitude": None,
    "longitude": None,
    "country": None,
}
EVENT_COLUMNS = (*REQUIRED[:5], *OPTIONAL_DEFAULTS)


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Which column of the user's file holds each field (None = absent)."""

    transaction_id: str = "transaction_id"
    event_time: str = "event_time"
    customer_id: str = "customer_id"
    terminal_id: str = "terminal_id"
    amount: str = "amount"
    is_fraud: str = "is_fraud"
    device_id: str | None = "device_id"
    latitude: str | None = "latitude"
    longitude: str | None = "longitude"
    channel: str | None = "channel"
    mcc: str | None = "mcc"
    currency: str | None = "currency"
    country: str | None = "country"
    ip: str | None = "ip"
    # How `amount` is expressed: "minor" (cents, integers) or "major" (e.g. 12.34); None: minor
    # when every amount is a whole number, an error naming the choice otherwise.
    amount_unit: str | None = None

    def __post_init__(self) -> None:
        if self.amount_unit not in (None, "minor", "major"):
            raise DataError(f"amount_unit '{self.amount_unit}': expected 'minor' (cents) or 'major' (e.g. 12.34)")

    @classmethod
    def parse(cls, spec: str) -> ColumnMap:
        """From 'field=column,field=column' (the CLI's --columns)."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in known:
                raise DataError(f"bad column mapping '{part}': expected field=column with field in {sorted(known)}")
            kwargs[key] = value
        return cls(**kwargs)


COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet file or a CSV file, compressed or not (.csv.gz, .csv.zst, ...)."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffixes = [x.lower() for x in path.suffixes[-2:]]
    if suffixes[-1:] and suffixes[-1] in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffixes[-1:] and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if suffixes[-1:] and suffixes[-1] in (".csv", ".txt"):
        return pd.read_csv(path)  # pandas infers the compression from the name
    raise DataError(f"{path}: expected a .csv (optionally {', '.join(COMPRESSIONS)}) or .parquet file")


_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def parse_labels(values: pd.Series, column: str) -> np.ndarray:
    """Booleans, 0/1 or true/false/yes/no (any case) as bools; DataError naming the column and
    the first value that is none of these (a missing one included)."""
    if values.dtype == bool:
        return np.asarray(values.to_numpy(), dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    is_true, is_false = text.isin(_TRUE), text.isin(_FALSE)
    bad = ~(is_true | is_false) | values.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"column '{column}': {int(bad.sum())} value(s) are not a fraud label (true/false, yes/no, 1/0); "
            f"first at row {first}: {values.iloc[first]!r}"
        )
    return np.asarray(is_true.to_numpy(), dtype=bool)


def parse_amounts(values: pd.Series, column: str, unit: str | None) -> np.ndarray:
    """Amounts in minor units (int64); DataError naming the column and a bad value."""
    amount = pd.to_numeric(values, errors="coerce")
    if amount.isna().any():
        first = int(np.flatnonzero(amount.isna().to_numpy())[0])
        raise DataError(
            f"column '{column}': {int(amount.isna().sum())} non-numeric amount(s); first at row {first}: {values.iloc[first]!r}"
        )
    fractional = (amount % 1) != 0
    if unit != "major" and fractional.any():
        first = int(np.flatnonzero(fractional.to_numpy())[0])
        raise DataError(
            f"column '{column}' has amounts with decimals (row {first}: {values.iloc[first]!r}): "
            "set amount_unit=major for amounts like 12.34 (minor units must be whole numbers)"
        )
    return np.asarray((amount * 100 if unit == "major" else amount).round(), dtype=np.int64)


def normalise(raw: pd.DataFrame, cmap: ColumnMap | None = None) -> pd.DataFrame:
    """Map a user's table onto fraudstream's columns, time-ordered; DataError when unusable."""
    cmap = cmap or ColumnMap()
    missing = [f for f in REQUIRED if getattr(cmap, f) not in raw.columns]
    if missing:
        names = ", ".join(f"{f} (column '{getattr(cmap, f)}')" for f in missing)
        raise DataError(f"missing required columns: {names}")
    df = pd.DataFrame({f: raw[getattr(cmap, f)] for f in REQUIRED})
    df["event_time"] = _to_epoch_ms(df["event_time"])
    df["amount"] = parse_amounts(df["amount"], cmap.amount, cmap.amount_unit)
    df["is_fraud"] = parse_labels(df["is_fraud"], cmap.is_fraud)
    for col in ("transaction_id", "customer_id", "terminal_id"):
        df[col] = df[col].astype(str)
    for f, default in OPTIONAL_DEFAULTS.items():
        src = getattr(cmap, f)
        df[f] = raw[src].to_numpy() if src is not None and src in raw.columns else default
    df["mcc"] = pd.to_numeric(df["mcc"], errors="coerce").fillna(0).astype(np.int32)
    df["channel"] = df["channel"].fillna("POS").astype(str).str.upper()
    if "scenario" in raw.columns:
        df["scenario"] = raw["scenario"].astype(str)
    if df["transaction_id"].duplicated().any():
        raise DataError("transaction ids are not unique")
    return df.sort_values(["event_time", "transaction_id"], kind="stable", ignore_index=True)


def _to_epoch_ms(col: pd.Series) -> pd.Series:
    if pd.api.types.is_integer_dtype(col):
        return col.astype(np.int64)
    if pd.api.types.is_float_dtype(col):
        return col.round().astype(np.int64)
    parsed = pd.to_datetime(col, utc=True, errors="coerce")
    if parsed.isna().any():
        raise DataError(f"{int(parsed.isna().sum())} rows have an unreadable timestamp")
    # Resolution-independent (pandas may parse to s, ms, us or ns).
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(milliseconds=1)).astype(np.int64)


def _clean(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def to_events(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as Transaction-shaped dicts (nulls as None, numpy scalars as Python)."""
    cols = [c for c in EVENT_COLUMNS if c in df.columns]
    return [{k: _clean(v) for k, v in zip(cols, row, strict=True)} for row in df[cols].itertuples(index=False)]


def to_label_events(labels: pd.DataFrame) -> list[dict[str, Any]]:
    """Label rows as dicts, sorted by label_time."""
    ordered = labels.sort_values("label_time", kind="stable")
    return [{k: _clean(v) for k, v in row.items()} for row in ordered.to_dict("records")]


def labels_from_history(df: pd.DataFrame, delay_days: float) -> pd.DataFrame:
    """For a user's history without label times: each fraud reported `delay_days` after it happened."""
    frauds = df[df["is_fraud"]]
    return pd.DataFrame(
        {
            "transaction_id": frauds["transaction_id"].to_numpy(),
            "customer_id": frauds["customer_id"].to_numpy(),
            "terminal_id": frauds["terminal_id"].to_numpy(),
            "is_fraud": True,
            "label_time": frauds["event_time"].to_numpy() + int(delay_days * DAY_MS),
            "event_time": frauds["event_time"].to_numpy(),
            "source": "history",
        }
    )


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of the columns training depends on."""
    h = hashlib.sha256()
    for col in (*REQUIRED,):
        h.update(pd.util.hash_pandas_object(df[col], index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]
