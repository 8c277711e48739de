"""Reading and validating time-series CSV files, chronological splits and rolling windows.

Data specs
    ``default``            MSFT daily OHLCV 1986-2017 from ``pmdarima.datasets.load_msft()`` (offline, MIT)
    ``path/to/file.csv``   one series: a time column plus the target (and feature) columns
    ``path/to/folder``     one series per ``*.csv`` file (e.g. one file per ticker), trained on together

Every cell is checked. Problems are reported with the file, the line number (the header is line 1)
and the column, and what to do about them: missing values (``NA``, empty) are an error unless
``missing: ffill`` (forward fill, counted and recorded); unsorted dates are an error unless
``unsorted: sort``; duplicate dates, non-numeric cells, prices <= 0 and series shorter than
the window are always errors (``bad_series: skip`` drops such files from a folder and lists them).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
from pathlib import Path

import numpy as np

from seqapps.data import DATA_FIX, not_found

OHLCV = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close", "adj close")
CALENDAR_PERIODS = {"hour": 24.0, "dayofweek": 7.0, "dayofyear": 365.25, "month": 12.0}
# the values a calendar input column holds (a client filling the serving window computes them the same way)
CALENDAR_VALUES = {
    "hour": "0-23, the hour of the day",
    "dayofweek": "0-6, Monday = 0",
    "dayofyear": "0-365, 1 January = 0 (pandas' dayofyear - 1)",
    "month": "0-11, January = 0 (the month number - 1)",
}
NA_STRINGS = {"", "na", "n/a", "nan", "null", "none", "#n/a", "-"}


class DataError(ValueError):
    """A data file that cannot be used as it is; the message names file, line and column."""


@dataclasses.dataclass
class Series:
    name: str
    source: str
    times: np.ndarray  # datetime64[s], sorted, unique
    values: np.ndarray  # float64 [T, C], raw values in `columns` order (calendar fields derived)
    columns: list
    target_index: int
    filled: int = 0  # cells forward-filled
    mode: str = "generic"  # "ohlcv" or "generic", as `resolve_mode` resolved it for this file

    @property
    def target(self) -> np.ndarray:
        return self.values[:, self.target_index]

    def __len__(self):
        return len(self.times)


def parse_list(text) -> list:
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    return [t.strip() for t in str(text or "").split(",") if t.strip()]


def resolve_mode(cfg, header_lower) -> str:
    if cfg.mode in ("ohlcv", "generic"):
        return cfg.mode
    if cfg.mode != "auto":
        raise DataError(f"mode must be 'auto', 'ohlcv' or 'generic', got {cfg.mode!r}")
    return "ohlcv" if all(c in header_lower for c in OHLCV) else "generic"


def column_plan(cfg, mode: str) -> tuple[list, list, int]:
    """(csv columns to read, lower-case, in window order; calendar fields; index of the target)."""
    target = cfg.target.strip().lower()
    if mode == "ohlcv":
        cols = list(OHLCV) + ([target] if target not in OHLCV else [])
    else:
        feats = [f.lower() for f in parse_list(cfg.features) if f.lower() != target]
        cols = [target] + feats
    cal = [c.lower() for c in parse_list(cfg.calendar)]
    unknown = [c for c in cal if c not in CALENDAR_PERIODS]
    if unknown:
        raise DataError(f"calendar: unknown field(s) {unknown}; choose from {sorted(CALENDAR_PERIODS)}")
    return cols, cal, cols.index(target)


def _calendar(times: np.ndarray, field: str) -> np.ndarray:
    import pandas as pd

    idx = pd.DatetimeIndex(times)
    return {"hour": idx.hour, "dayofweek": idx.dayofweek, "dayofyear": idx.dayofyear - 1, "month": idx.month - 1}[
        field
    ].to_numpy(dtype=np.float64)


def calendar_columns(times, fields) -> np.ndarray:
    if not fields:
        return np.zeros((len(times), 0))
    return np.stack([_calendar(times, f) for f in fields], axis=1)


def format_times(times) -> list[str]:
    """Times as text in one format for all of them: dates alone when every time is midnight (daily data),
    else date and hours:minutes (with seconds when any has them), so that a forecast CSV's time column
    parses the same way on every row."""
    text = [str(t).replace("T", " ") for t in np.asarray(times, dtype="datetime64[s]")]
    if all(s.endswith("00:00:00") for s in text):
        return [s[:10] for s in text]
    return text if any(not s.endswith(":00") for s in text) else [s[:16] for s in text]


THOUSANDS = r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?"  # commas grouping thousands: 1,234.5 (not 0,125)

# How a message tells the user to fix a file (training and evaluation take --set; `predict` passes its own)
FIX_HINTS = {
    "columns": "Choose columns with --set target=... / features=...",
    "time_column": "Set time_column (e.g. --set time_column=Date, or year,month,day,hour).",
    "missing": "--set missing=ffill",
    "unsorted": "--set unsorted=sort",
    "date_order": "--set date_order=dmy",
    "decimal": "--set decimal=comma",
}


def file_lines(df) -> np.ndarray:
    """The file line of each row of ``df``: `read_csv` keeps the row index pandas gave each line (the
    header is line 1) when it drops blank lines, so the messages name the line an editor shows."""
    if df.index.dtype.kind in "iu":
        return df.index.to_numpy(np.int64) + 2
    return np.arange(len(df)) + 2


DATE_ORDERS = ("auto", "dmy", "mdy")
# a date whose year has two digits (1/2/20, 13-Feb-20), which pandas guesses no format for: its day, month and
# separator, the two digits, and the time of day if any
TWO_DIGIT_YEAR = re.compile(r"(\d{1,2}([./-])(?:\d{1,2}|[A-Za-z]{3,9})\2)(\d{2})(?![\d./-])(.*)")


def _two_digit_year(cell: str) -> int:
    """The year that ``%y`` reads from a date with a two-digit year (69-99: 1969-1999, 00-68: 2000-2068); 0 for
    a date without one."""
    m = TWO_DIGIT_YEAR.fullmatch(cell)
    if m is None:
        return 0
    return int(m[3]) + (1900 if int(m[3]) >= 69 else 2000)


def _to_datetime(text, **kwargs):
    """`pandas.to_datetime` into naive UTC times (a time with an offset, such as +01:00, is converted; one
    without is taken as it is), unparsable cells NaT. pandas' warning that it guessed a day-first format is
    silenced: `_read_dates` decides the order itself."""
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Parsing dates in", UserWarning)
        times = pd.to_datetime(text, errors="coerce", utc=True, **kwargs)
    return times.dt.tz_localize(None)


def _read_dates(raw, order: str, where: str, line, hints: dict):
    """Read a text column of dates in one consistent order. Year-first dates (``2020-01-31``, ISO 8601) are
    unambiguous. Others are read with one format for the whole column, day first or month first: where both
    read every date but differently (``01.02.2020``: 1 February or 2 January; a file with no day above 12),
    ``order`` (``date_order``: ``dmy`` or ``mdy``) decides, and ``auto`` is an error. Reading each cell on its own
    would take ``13.02.2020`` day first and ``01.02.2020`` month first in the same file. A date that reads one
    way only (``13.02.2020``) settles the order, and contradicts a ``date_order`` given the other way (an error).
    Otherwise the order whose format, guessed from the first dates, reads the most dates wins; dates in other
    formats (a time of day added, ...) are then read one by one in that order. Two-digit years (``13/2/20``),
    for which pandas guesses no format, are guessed as four (``13/2/2020``) and read with ``%y``."""
    import warnings

    import pandas as pd
    from pandas.tseries.api import guess_datetime_format

    if order not in DATE_ORDERS:
        raise DataError(f"date_order must be one of {DATE_ORDERS}, got {order!r}")
    times = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    year_first = raw.str.match(r"\d{4}").to_numpy()
    if year_first.any():
        times[year_first] = _to_datetime(raw[year_first], format="mixed")
    other = raw[~year_first]
    if other.empty:
        return times
    samples = list(dict.fromkeys(c for c in other.iloc[:2000] if c.lower() not in NA_STRINGS))
    guesses = {}  # (date, dayfirst) -> the format pandas guesses for it, and whether that format puts the day first

    def guess(c, dayfirst):
        if (c, dayfirst) not in guesses:
            with warnings.catch_warnings():  # pandas warns when the format it guesses puts the day the other way
                warnings.filterwarnings("ignore", "Parsing dates in", UserWarning)
                fmt = guess_datetime_format(c, dayfirst=dayfirst)
                if fmt is None and (m := TWO_DIGIT_YEAR.fullmatch(c)):  # 1/2/20: guessed as 1/2/2020, read as %y
                    fmt = guess_datetime_format(f"{m[1]}20{m[3]}{m[4]}", dayfirst=dayfirst)
                    fmt = fmt.replace("%Y", "%y") if fmt and fmt.count("%Y") == 1 else None
            day_first = fmt.index("%d") < fmt.index("%m") if fmt and "%d" in fmt and "%m" in fmt else None
            guesses[c, dayfirst] = fmt, day_first
        return guesses[c, dayfirst]

    # a date that reads one way only (13.02.2020: day first; 02/13/2020: month first) settles the order
    settling = next(
        ((c, d) for c in samples for d in (True, False) if guess(c, not d)[1] == d and guess(c, d)[1] == d), None
    )
    if settling is not None and order != "auto" and settling[1] != (order == "dmy"):
        i = int(np.flatnonzero((raw == settling[0]).to_numpy())[0])
        raise DataError(
            f"{where}: line {line[i]}: {settling[0]!r} can only be read {'day' if settling[1] else 'month'} first, "
            f"but date_order={order}; give date_order={'dmy' if settling[1] else 'mdy'} (or auto)"
        )
    if settling is not None:
        orders = (settling[1],)
    else:
        orders = {"dmy": (True,), "mdy": (False,)}.get(order, (False, True))
    read, fitted = {}, {}  # dayfirst -> the column read that way; how many dates one format read
    two_digit = other.map(_two_digit_year).to_numpy(np.int64)
    for dayfirst in orders:
        # the format of the first date that gives one in this order (with its time of day, if it has one)
        fmt = next((f for c in samples if (f := guess(c, dayfirst))[1] in (dayfirst, None) and f[0]), (None,))[0]
        t = _to_datetime(other, format=fmt or "mixed", dayfirst=dayfirst)
        fitted[dayfirst] = int(t.notna().sum()) if fmt else 0
        rest = t.isna().to_numpy() if fmt else np.ones(len(t), bool)
        if fmt and rest.any():  # dates in other formats (a time added, ...): each read on its own, in that order
            t[rest] = _to_datetime(other[rest], format="mixed", dayfirst=dayfirst)
        # a two-digit year read on its own takes dateutil's century (75: 2075); %y's is the rule (75: 1975). The
        # year is compared in centuries: a UTC offset can move the time into the year before or after
        off = rest & (two_digit > 0) & t.notna().to_numpy()
        centuries = np.zeros(len(t), np.int64)
        centuries[off] = np.round((t.dt.year.to_numpy()[off] - two_digit[off]) / 100).astype(np.int64)
        for c in set(centuries[centuries != 0].tolist()):
            t[centuries == c] = t[centuries == c] - pd.DateOffset(years=100 * c)
        read[dayfirst] = t
    best = max(fitted.values())
    read = {dayfirst: t for dayfirst, t in read.items() if fitted[dayfirst] == best}  # the order that fits best
    month_first, day_first = read.get(False), read.get(True)
    if month_first is not None and day_first is not None:
        both = month_first.notna().to_numpy() & day_first.notna().to_numpy()
        differ = np.flatnonzero((month_first != day_first).to_numpy() & both)
        if len(differ):
            i = differ[0]
            fix = hints.get("date_order", "--set date_order=dmy")
            why = (
                "no date in the column settles which (a day above 12)"
                if best
                else "their format could not be told from the first dates"
            )
            raise DataError(
                f"{where}: line {line[np.flatnonzero(~year_first)[i]]}: {other.iloc[i]!r} reads as "
                f"{day_first.iloc[i]:%Y-%m-%d} day first or {month_first.iloc[i]:%Y-%m-%d} month first, and {why}. "
                f"Say which with {fix} (31.12.2020) or {fix.replace('dmy', 'mdy')} (12/31/2020)"
            )
    times[~year_first] = next(iter(read.values()))
    return times


# a UTC offset after a time of day: 2020-03-29T01:00:00+02:00, 10:00Z, 10:00 -0500
UTC_OFFSET = re.compile(r".*\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:(Z)|([+-])(\d{2}):?(\d{2})?)")


def _dates_as_written(raw, times, where: str, line):
    """Times with UTC offsets are read in UTC (`_to_datetime`), so that hours stay in order across a clock
    change. A daily series stamped at local midnight (2015-04-07T00:00:00+09:00, a Tokyo export) keeps its
    dates as written instead: in UTC every day would move to the day before at 15:00. Rows with an offset and
    rows without one in the same column are an error: their times cannot be put on one clock."""
    import pandas as pd

    found = [UTC_OFFSET.fullmatch(c) for c in raw]
    has = np.array([m is not None for m in found])
    if not has.any():
        return times
    if not has.all():
        i = int(np.argmax(has != has[0]))
        raise DataError(
            f"{where}: line {line[i]}: {raw.iloc[i]!r} has {'a' if has[i] else 'no'} UTC offset, unlike line "
            f"{line[0]}'s {raw.iloc[0]!r}; write every time with its offset, or none"
        )
    minutes = np.array([0 if m[1] else (1 if m[2] == "+" else -1) * (60 * int(m[3]) + int(m[4] or 0)) for m in found])
    local = times + pd.to_timedelta(minutes, unit="min")
    return local if (local == local.dt.normalize()).all() else times


def _parse_times(df, spec: str, source: str, lower_map: dict, hints: dict | None = None, date_order="auto"):
    import pandas as pd

    hints = {**FIX_HINTS, **(hints or {})}
    hint = hints["time_column"]
    line = file_lines(df)
    names = [n.lower() for n in parse_list(spec)]
    missing = [n for n in names if n not in lower_map]
    if missing:
        raise DataError(f"{source}: time column(s) {missing} not found; columns are {list(df.columns)}. {hint}")
    if len(names) == 1:
        raw = df[lower_map[names[0]]].astype(str).str.strip()
        times = _read_dates(raw, date_order, f"{source}: column {lower_map[names[0]]!r}", line, hints)
        bad = np.flatnonzero(times.isna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise DataError(
                f"{source}: line {line[i]}, column {lower_map[names[0]]!r}: cannot read {raw.iloc[i]!r} "
                f"as a date/time ({len(bad)} such row(s))"
            )
        times = _dates_as_written(raw, times, f"{source}: column {lower_map[names[0]]!r}", line)
        return times.to_numpy().astype("datetime64[s]")
    parts = {}
    for n in names:
        key = {"year": "year", "month": "month", "day": "day", "hour": "hour", "minute": "minute"}.get(n)
        if key is None:
            raise DataError(f"time_column: composing a time needs year,month,day[,hour[,minute]] columns, got {n!r}")
        text = df[lower_map[n]].astype(str).str.strip()
        vals = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(vals) | (vals != np.round(vals)))
        if len(bad):
            raise DataError(
                f"{source}: line {line[bad[0]]}, column {lower_map[n]!r}: {text.iloc[bad[0]]!r} is not a whole "
                f"number ({len(bad)} such cell(s)); {n} must be one"
            )
        parts[key] = vals.astype(np.int64)
    try:
        times = pd.to_datetime(pd.DataFrame(parts), errors="raise")
    except (ValueError, OverflowError) as exc:
        raise DataError(f"{source}: the {'/'.join(names)} columns do not form valid times: {exc}") from None
    return times.to_numpy().astype("datetime64[s]")


def from_frame(
    df,
    source: str,
    cfg,
    name: str | None = None,
    min_rows: int | None = None,
    decimal: str = ".",
    hints: dict | None = None,
    header: list | None = None,
) -> Series:
    """Validate a DataFrame of strings/numbers read from ``source`` and return a `Series`.

    ``decimal=","`` (files separated by ``;``, and tab-separated ones with decimal commas) reads numbers
    written with a decimal comma (``3,25``) and refuses a column that mixes them with ``.`` (``1.234`` could
    be a thousand). With ``"."`` commas are thousands separators (``1,234.5``), and any other comma is an
    error. ``hints`` replaces entries of `FIX_HINTS`, the fixes that messages suggest. ``header``: the column
    names as the file writes them (pandas renames a repeated name: ``Close.1``), to tell a column that is there
    twice.
    """
    import pandas as pd

    hints = {**FIX_HINTS, **(hints or {})}
    if len(df) == 0:
        raise DataError(f"{source}: no data rows")
    line = file_lines(df)
    lower_map = {}
    for c in df.columns:
        lower_map.setdefault(str(c).strip().lower(), c)
    mode = resolve_mode(cfg, lower_map)
    cols, cal, target_index = column_plan(cfg, mode)
    _no_column_twice(df, header, [*cols, *(n.lower() for n in parse_list(cfg.time_column))], source)
    missing = [c for c in cols if c not in lower_map]
    if missing:
        hint = " (ohlcv mode needs Open, High, Low, Close, Volume)" if mode == "ohlcv" else ""
        raise DataError(
            f"{source}: missing column(s) {missing}{hint}; the file has {list(df.columns)}. {hints['columns']}"
        )
    times = _parse_times(df, cfg.time_column, source, lower_map, hints, cfg.date_order)

    values = np.empty((len(df), len(cols)), np.float64)
    filled = 0
    for j, c in enumerate(cols):
        col = df[lower_map[c]]
        if col.dtype.kind in "if":
            num = col.to_numpy(dtype=np.float64)
            na = np.isnan(num)
        else:
            text = written = col.astype(str).str.strip()  # `written`: as the file has it, for the messages
            na = text.str.lower().isin(NA_STRINGS).to_numpy() | col.isna().to_numpy()
            if decimal == ",":
                comma = text.str.contains(",", regex=False).to_numpy()
                dot = np.flatnonzero(text.str.contains(".", regex=False).to_numpy())
                if comma.any() and len(dot):  # 1.234 could be a thousand or one and a bit
                    i = int(dot[0])
                    raise DataError(
                        f"{source}: line {line[i]}, column {lower_map[c]!r}: {text.iloc[i]!r} has a '.' in a "
                        f"column whose other numbers use a decimal comma (line {line[np.argmax(comma)]}), "
                        "so it is ambiguous. Write the numbers without thousands separators, or save the file "
                        "separated by commas with '.' as the decimal mark"
                    )
                text = text.str.replace(",", ".", regex=False)
            else:
                odd = np.flatnonzero((text.str.contains(",", regex=False) & ~text.str.fullmatch(THOUSANDS)).to_numpy())
                if len(odd):
                    i = int(odd[0])
                    raise DataError(
                        f"{source}: line {line[i]}, column {lower_map[c]!r}: {text.iloc[i]!r} has a comma that is "
                        "not a thousands separator (as in 1,234.5). A file with decimal commas (3,25) must separate "
                        "its fields with ';' or tabs"
                    )
                text = text.str.replace(",", "", regex=False)
            num = pd.to_numeric(text.where(~na, None), errors="coerce").to_numpy(dtype=np.float64)
            bad = np.flatnonzero(np.isnan(num) & ~na)
            if len(bad):
                i = int(bad[0])
                raise DataError(
                    f"{source}: line {line[i]}, column {lower_map[c]!r}: {written.iloc[i]!r} is not a number "
                    f"({len(bad)} non-numeric cell(s) in this column); fix or remove the row"
                )
        bad_inf = np.flatnonzero(np.isinf(num))
        if len(bad_inf):
            raise DataError(f"{source}: line {line[bad_inf[0]]}, column {lower_map[c]!r}: infinite value")
        # the model reads float32: a value past its range would be infinite, one below its smallest normal 0
        f32 = np.finfo(np.float32)
        off = np.flatnonzero((np.abs(num) > f32.max) | ((num != 0) & (np.abs(num) < f32.tiny)))
        if len(off):
            raise DataError(
                f"{source}: line {line[off[0]]}, column {lower_map[c]!r}: {num[off[0]]:g} is outside the range of "
                f"float32, which the model computes in ({f32.tiny:.3g} to {f32.max:.3g} in size, or 0)"
            )
        if na.any():
            rows = np.flatnonzero(na)
            if cfg.missing != "ffill":
                raise DataError(
                    f"{source}: line {line[rows[0]]}, column {lower_map[c]!r}: missing value (NA/empty)"
                    f"; {len(rows)} missing cell(s) in this column. Fix the file or pass "
                    f"{hints['missing']} to forward-fill from the previous row."
                )
            if rows[0] == 0:
                raise DataError(
                    f"{source}: line {line[0]}, column {lower_map[c]!r}: missing value in the first row cannot be "
                    f"forward-filled; remove the leading rows"
                )
            num = pd.Series(num).ffill().to_numpy()
            filled += len(rows)
        values[:, j] = num

    order_bad = np.flatnonzero(times[1:] < times[:-1])
    if len(order_bad):
        i = int(order_bad[0]) + 1
        if cfg.unsorted != "sort":
            now, before = format_times([times[i], times[i - 1]])
            raise DataError(
                f"{source}: line {line[i]}: date {now} comes before the previous row's {before}; "
                f"dates must be increasing. Sort the file or pass {hints['unsorted']}."
            )
        order = np.argsort(times, kind="stable")
        times, values, line = times[order], values[order], line[order]
        if filled:
            raise DataError(f"{source}: unsorted rows with missing values: sort the file first, then forward-fill")
    dup = np.flatnonzero(times[1:] == times[:-1])
    if len(dup):
        i = int(dup[0]) + 1
        raise DataError(
            f"{source}: duplicate date {format_times([times[i]])[0]} (line {line[i]} and the row before it"
            f"{' after sorting' if len(order_bad) else ''}); keep one row per date"
        )
    if mode == "ohlcv":
        for j, c in enumerate(cols):
            if c in PRICE_COLUMNS or j == target_index:
                bad = np.flatnonzero(values[:, j] <= 0)
                if len(bad):
                    raise DataError(
                        f"{source}: line {line[bad[0]]}, column {lower_map[c]!r}: price "
                        f"{values[bad[0], j]:g} <= 0 ({len(bad)} such row(s)); prices must be positive "
                        f"for log returns"
                    )
            elif c == "volume":
                bad = np.flatnonzero(values[:, j] < 0)
                if len(bad):
                    raise DataError(f"{source}: line {line[bad[0]]}, column {lower_map[c]!r}: negative volume")
    if min_rows is not None and len(times) < min_rows:
        need = (
            f"window {cfg.window} + horizon {cfg.horizon}"
            if min_rows > cfg.window
            else f"the model's input window is {cfg.window} rows"
        )
        raise DataError(
            f"{source}: series too short: {len(times)} rows, but at least {min_rows} are needed ({need}); "
            f"use a longer series" + (" or a smaller window" if min_rows > cfg.window else "")
        )
    if cal:
        values = np.concatenate([values, calendar_columns(times, cal)], axis=1)
    name = name or Path(str(source)).stem.replace("_data", "")
    return Series(name, str(source), times, values, cols + cal, target_index, filled, mode)


def _no_column_twice(df, header, used: list, source: str) -> None:
    """A column the model reads that the file has twice (``Close`` and ``close``, or the same name twice):
    which one holds the series cannot be told, so it is an error rather than the first one."""
    names = [str(c) for c in (header if header is not None and len(header) == len(df.columns) else df.columns)]
    where = {}
    for i, n in enumerate(names):
        where.setdefault(n.strip().lower(), []).append(i)
    for u in dict.fromkeys(used):
        if len(where.get(u, ())) > 1:
            listed = ", ".join(f"{names[i]!r} (field {i + 1})" for i in where[u])
            raise DataError(
                f"{source}: the header names the column {u!r} {len(where[u])} times: {listed}; which one holds "
                "the data cannot be told. Rename or remove the others"
            )


def read_csv(path, cfg, min_rows=None, **options) -> Series:
    import warnings

    import pandas as pd

    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: a folder, not a CSV file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()  # read once: pandas, the line numbers and the checks below all take these bytes
    sep = separator(raw)
    read = {"sep": sep, "dtype": str, "keep_default_na": False, "skipinitialspace": True}
    # lines end as pandas ends them: \n, \r\n or a lone \r
    lines = re.split(rb"\r\n|\r|\n", raw)
    nonblank = [n for n, line in enumerate(lines, start=1) if line.strip()]
    try:
        # index_col=False: a row that ends with a separator (1,2,3,) keeps its first field as data; pandas would
        # otherwise make it the row's index and shift every column by one. It drops the extra field, with a
        # warning, which `_no_extra_fields` turns into an error where that field held something.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(io.BytesIO(raw), index_col=False, **read)
        # the names as written (pandas renames a repeated one: Close.1)
        header = next(csv.reader([lines[nonblank[0] - 1].decode("utf-8-sig")], delimiter=sep, skipinitialspace=True))
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a valid CSV: {exc}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: {_not_utf8(raw)}") from None
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught) and _no_extra_fields(
        raw, path, sep, len(df.columns)
    ):  # every row one field wider than the header: row names (R's write.table), which pandas reads as the index
        df = pd.read_csv(io.BytesIO(raw), **read).reset_index(drop=True)
    # pandas skips blank lines: index each row by its line in the file (minus 2, see `file_lines`), unless a
    # quoted field spans lines
    _no_cell_over_lines(df, path, nonblank, sep)
    if len(nonblank) == len(df) + 1:
        df.index = pd.Index(np.asarray(nonblank[1:], np.int64) - 2)
    if cfg.decimal != "auto" and sep != ",":  # a comma-separated file has decimal points
        decimal = "," if cfg.decimal == "comma" else "."
    else:
        hint = {**FIX_HINTS, **(options.get("hints") or {})}["decimal"]
        decimal = "," if sep == ";" or (sep == "\t" and _decimal_commas(df, path, hint)) else "."
    return from_frame(df, str(path), cfg, min_rows=min_rows, decimal=decimal, header=header, **options)


def _not_utf8(raw: bytes) -> str:
    """Where a file's bytes stop being UTF-8, by line: pandas' error gives a byte offset within its buffer."""
    try:
        raw.decode("utf-8-sig")
        return "not UTF-8 text"
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw[:start].count(b"\n") + 1
        return f"line {line}: not UTF-8 text (byte {raw[start : start + 1]!r}, {exc.reason}); save the file as UTF-8"


def _no_extra_fields(raw: bytes, path, sep: str, width: int) -> bool:
    """Rows with more fields than the header. An empty field at the end (a separator after the last value, as
    some tools write) is dropped. Where every row has exactly one field more, holding something, the first field
    is a row name (R's ``write.table``): True, read it as the index. Otherwise a field that holds something is
    an error, as it would never be read."""
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=sep, skipinitialspace=True)
    rows = [(row, reader.line_num) for row in reader if row][1:]
    if rows and all(len(row) == width + 1 and row[-1].strip() for row, _ in rows):
        return True
    for row, line in rows:
        extra = [v for v in row[width:] if v.strip()]
        if extra:
            raise DataError(
                f"{path}: line {line}: {len(row)} fields where the header has {width}; the extra {extra[0]!r} "
                "would be lost. Remove it, or name its column in the header"
            )
    return False


def _no_cell_over_lines(df, path, nonblank: list, sep: str) -> None:
    """A double quote left open takes the rows up to the next quote into one cell. Whichever column holds them,
    those rows would be lost without a word (a gap of a few days in a price history reads like a holiday), so a
    cell with a line that holds a whole row's separators is an error naming the lines. A quoted note over two
    lines of text is kept."""
    whole = max(len(df.columns) - 1, 1)  # the separators of a row
    spans = np.zeros(len(df), bool)
    for col in df.columns:
        text = df[col]
        multi = text.str.contains("[\r\n]", regex=True).to_numpy(bool)
        if multi.any():
            spans[multi] |= [
                any(line.count(sep) >= whole for line in re.split(r"\r\n|\r|\n", v)[1:]) for v in text[multi]
            ]
    if not spans.any():
        return
    row = int(np.flatnonzero(spans)[0])
    # every row before it took one line, so its first line is the (row + 2)-th line that is not blank
    first = nonblank[row + 1] if row + 1 < len(nonblank) else int(file_lines(df)[row])
    cells = df.iloc[row]
    col = next(c for c in df.columns if any(ch in cells[c] for ch in "\r\n"))
    extra = sum(len(re.split(r"\r\n|\r|\n", v)) - 1 for v in cells)  # the line breaks in the row
    raise DataError(
        f"{path}: line {first}, column {col!r}: a quoted cell runs over lines {first}-{first + extra}, so the rows "
        "on those lines would be lost in it. A double quote is left open: close or remove it."
    )


def _decimal_commas(df, path, hint: str) -> bool:
    """Whether a tab-separated file writes decimal commas: some cell holds a number with a comma that is not
    a thousands separator (3,25; 0,5). One whose commas group thousands in a way a decimal comma cannot
    (1,234,567; 1,234.5), or that writes decimal points elsewhere, reads them as thousands. A file whose only
    commas are one comma before three digits (112,630), with no decimal point, could be either: an error that
    asks which (``decimal``), since the wrong reading is 1000 times off."""
    single = None  # the first cell like 112,630: (row, column)
    thousands = False
    for col in df.columns:
        text = df[col].astype(str).str.strip()
        if (text.str.fullmatch(r"[+-]?\d*,\d+") & ~text.str.fullmatch(THOUSANDS)).any():
            return True
        one = text.str.fullmatch(r"[+-]?[1-9]\d{0,2},\d{3}").to_numpy(bool)
        # a decimal point (3.5, 1,234.5), or groups a decimal comma cannot make (1,234,567)
        thousands |= bool(
            (
                text.str.fullmatch(r"[+-]?(?:\d[\d,]*)?\.\d+(?:[eE][+-]?\d+)?")
                | text.str.fullmatch(r"[+-]?[1-9]\d{0,2}(?:,\d{3}){2,}")
            ).any()
        )
        if single is None and one.any():
            single = (int(np.argmax(one)), col)
    if single is not None and not thousands:
        i, col = single
        cell = df[col].astype(str).str.strip().iloc[i]
        raise DataError(
            f"{path}: line {file_lines(df)[i]}, column {col!r}: {cell!r} reads as {cell.replace(',', '.')} with "
            f"a decimal comma or {cell.replace(',', '')} with a thousands separator, and no number in the file "
            f"settles which. Say which with {hint} (3,25 is 3.25) or {hint.replace('comma', 'point')} (1,234 is "
            "1234)"
        )
    return False


def separator(raw: bytes) -> str:
    """The field separator of a CSV file's bytes: ``,`` unless its header line has none and holds ``;`` or a tab
    (spreadsheets in many locales save ``;``-separated files with decimal commas)."""
    header = raw[: raw.find(b"\n")] if b"\n" in raw else raw
    if b"," not in header:
        for sep in (";", "\t"):
            if sep.encode() in header:
                return sep
    return ","


def default_frame():
    """MSFT daily OHLCV (1986-2017) shipped with pmdarima: real prices, no network needed."""
    try:
        from pmdarima.datasets import load_msft
    except ImportError:
        raise DataError(
            "the default data set needs pmdarima, a seqapps dependency (pip install pmdarima), or give a CSV path "
            "with --data PATH"
        ) from None
    return load_msft()


@dataclasses.dataclass
class Dataset:
    spec: str
    series: list
    skipped: dict  # file -> reason
    columns: list
    target_index: int
    mode: str


def load(cfg, **options) -> Dataset:
    """Resolve ``cfg.data`` to validated series (see the module docstring); ``options`` go to `from_frame`."""
    min_rows = cfg.window + cfg.horizon
    spec = cfg.data
    skipped = {}
    if spec in ("default", "msft", "pmdarima:msft"):
        series = [
            from_frame(default_frame(), "pmdarima.datasets.load_msft()", cfg, name="MSFT", min_rows=min_rows, **options)
        ]
    else:
        path = Path(spec)
        if path.is_dir():
            files = sorted(path.glob("*.csv"))
            if not files:
                raise DataError(f"{path}: no *.csv files in this folder")
            if cfg.max_series:
                files = files[: cfg.max_series]
            series = []
            for f in files:
                try:
                    series.append(read_csv(f, cfg, min_rows=min_rows, **options))
                    # every other file is read with the first one's mode, so that all have the same columns
                    cfg = dataclasses.replace(cfg, mode=series[0].mode)
                except DataError as exc:
                    if cfg.bad_series != "skip":
                        raise DataError(f"{exc} (or pass --set bad_series=skip to leave such files out)") from None
                    skipped[f.name] = str(exc)
            if skipped:
                print(
                    f"[forecast] skipped {len(skipped)} file(s) that failed validation (bad_series=skip): "
                    + "; ".join(f"{k}: {v.split(': ', 1)[-1].split('; ')[0]}" for k, v in list(skipped.items())[:5])
                    + (" ..." if len(skipped) > 5 else "")
                )
            if not series:
                raise DataError(f"{path}: no usable series")
        elif path.is_file():
            series = [read_csv(path, cfg, min_rows=min_rows, **options)]
        elif spec.startswith(("http://", "https://")):
            raise DataError(f"data {spec!r}: download the CSV first and pass its path")
        else:
            raise not_found("data", path, f"give 'default', a CSV file or a folder of CSV files ({DATA_FIX})")
    s0 = series[0]
    return Dataset(spec, series, skipped, s0.columns, s0.target_index, s0.mode)


# ---------------------------------------------------------------------------------------------- splits
@dataclasses.dataclass
class Split:
    """Window origins per split: arrays of (series index, origin row t). Inputs are rows t-W+1..t,
    targets rows t+1..t+H. ``test_index[s]`` is the first row of series s in the test period."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_index: dict
    roles: dict  # series name -> "train" / "val" / "test" (series split) or "all" (time split)
    test_start: str


def _first_at(times, start) -> int:
    return int(np.searchsorted(times, np.datetime64(start, "s"), side="left"))


def parse_test_start(text: str) -> np.datetime64:
    """``test_start`` as a time, or an error that names the setting and the form it takes."""
    try:
        return np.datetime64(str(text).strip(), "s")
    except ValueError:
        raise DataError(
            f"test_start: expected a date (or time) written year first, like 2019-01-01, got {text!r}"
        ) from None


def split(ds: Dataset, cfg) -> Split:
    W, H = cfg.window, cfg.horizon
    if cfg.split not in ("time", "series"):
        raise DataError(f"split must be 'time' or 'series', got {cfg.split!r}")
    if cfg.test_start:
        test_start = parse_test_start(cfg.test_start)
    else:
        lo = min(s.times[0] for s in ds.series)
        hi = max(s.times[-1] for s in ds.series)
        test_start = lo + (hi - lo) * (1 - cfg.test_fraction)
    train, val, test, test_index, roles = [], [], [], {}, {}
    if cfg.split == "series":
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(ds.series))
        n_test = max(1, round(len(order) * cfg.test_fraction))
        n_val = max(1, round(len(order) * cfg.val_fraction)) if len(order) > 2 else 0
        if len(order) - n_test - n_val < 1:
            raise DataError(f"split=series needs at least 3 series (have {len(order)}); use split=time")
        role_of = {int(i): "test" for i in order[:n_test]}
        role_of.update({int(i): "val" for i in order[n_test : n_test + n_val]})
    for si, s in enumerate(ds.series):
        T = len(s)
        ti = _first_at(s.times, test_start)  # first test row
        test_index[si] = ti
        origins = np.arange(W - 1, T - H)
        if cfg.split == "time":
            roles[s.name] = "all"
            pre = ti  # rows before the test period
            vi = int(pre - round(pre * cfg.val_fraction))
            train.append(_pairs(si, origins[(origins + H < vi)][:: max(1, cfg.train_stride)]))
            val.append(_pairs(si, origins[(origins + 1 >= vi) & (origins + H < ti)]))
            test.append(_pairs(si, origins[origins + 1 >= ti]))
        else:
            role = role_of.get(si, "train")
            roles[s.name] = role
            if role == "train":
                train.append(_pairs(si, origins[origins + H < ti][:: max(1, cfg.train_stride)]))
            elif role == "val":
                val.append(_pairs(si, origins[origins + H < ti]))
            else:
                test.append(_pairs(si, origins[origins + 1 >= ti]))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros((0, 2), np.int64)  # noqa: E731
    out = Split(cat(train), cat(val), cat(test), test_index, roles, str(test_start))
    if not len(out.train):
        raise DataError("no training windows: the series are too short for window + horizon before the test period")
    if not len(out.test):
        raise DataError(f"no test windows: no series has {H} rows after test_start {test_start}")
    return out


def _pairs(si, origins) -> np.ndarray:
    return np.stack([np.full(len(origins), si, np.int64), origins.astype(np.int64)], axis=1)


def windows(ds: Dataset, pairs: np.ndarray, window: int, horizon: int):
    """Raw input windows [N, W, C] (float32) and target rows [N, H] (float64) for (series, origin) pairs."""
    C = ds.series[0].values.shape[1]
    x = np.empty((len(pairs), window, C), np.float32)
    y = np.empty((len(pairs), horizon), np.float64)
    for k, (si, t) in enumerate(pairs):
        s = ds.series[si]
        x[k] = s.values[t - window + 1 : t + 1]
        y[k] = s.target[t + 1 : t + horizon + 1]
    return x, y


def future_changes(ds: Dataset, pairs: np.ndarray, horizon: int, columns: list) -> np.ndarray:
    """[N, H, len(columns)] (float32): each column's value 1..H rows after the origin minus its value at the
    origin, for (series, origin) pairs: the auxiliary training targets (``aux_targets``), never inputs."""
    idx = [ds.columns.index(c) for c in columns]
    out = np.empty((len(pairs), horizon, len(idx)), np.float32)
    for k, (si, t) in enumerate(pairs):
        v = ds.series[si].values
        out[k] = v[t + 1 : t + horizon + 1][:, idx] - v[t, idx]
    return out


def naive_scale(ds: Dataset, sp: Split) -> np.ndarray:
    """Per series: in-sample MAE of the one-step naive forecast, over the rows before the test period; NaN
    for a series with fewer than `backtest.MASE_MIN_ROWS` of them (one that starts in the test period), which
    MASE then leaves out rather than scale by a few test-period steps."""
    from seqapps.forecast.backtest import MASE_MIN_ROWS

    out = np.full(len(ds.series), math.nan)
    for si, s in enumerate(ds.series):
        if sp.test_index[si] >= MASE_MIN_ROWS:
            out[si] = float(np.mean(np.abs(np.diff(s.target[: sp.test_index[si]]))))
    return out
