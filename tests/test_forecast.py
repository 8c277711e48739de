"""Forecast app: CSV validation, no look-ahead, metrics and baselines against hand-computed oracles,
and one tiny end-to-end run (train -> SavedModel/TFLite parity -> evaluate -> predict -> bench)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
import types

import numpy as np
import pytest

from seqapps.export import tflite
from seqapps.forecast import backtest, data, features
from seqapps.forecast.config import ForecastConfig, tiny

HEADER = "Date,Open,High,Low,Close,Volume"


def gbm(n, seed=0, start="2015-01-05", price=100.0):
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0003, 0.015, n)))
    open_ = close * np.exp(rng.normal(0, 0.004, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
    vol = rng.integers(1_000_000, 5_000_000, n)
    dates = np.datetime64(start) + np.arange(n)  # calendar days (regular rows)
    return [
        f"{d},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v}" for d, o, h, lo, c, v in zip(dates, open_, high, low, close, vol)
    ]


def write_csv(path, rows, header=HEADER):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def cfg_for(path, **kw):
    return dataclasses.replace(tiny(), data=str(path), **kw)


# ---------------------------------------------------------------------------------------------- reading
def test_reads_ohlcv_case_insensitive_and_in_column_order(tmp_path):
    rows = gbm(40)
    p = write_csv(tmp_path / "x.csv", rows, header="DATE,open,HIGH,low,Close,volume")
    s = data.read_csv(p, cfg_for(p))
    assert s.columns == ["open", "high", "low", "close", "volume"] and s.target_index == 3
    first = [float(v) for v in rows[0].split(",")[1:]]
    np.testing.assert_allclose(s.values[0], first)
    assert s.times[0] == np.datetime64("2015-01-05")


def _bad(tmp_path, mutate, **cfg):
    rows = gbm(40)
    rows = mutate(rows)
    p = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(data.DataError) as err:
        data.read_csv(p, cfg_for(p, **cfg), min_rows=cfg.get("min_rows", 19))
    return str(err.value)


def _set(rows, i, col, value):
    parts = rows[i].split(",")
    parts[col] = value
    rows[i] = ",".join(parts)
    return rows


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: _set(r, 5, 4, "NA"), ["bad.csv", "line 7", "'Close'", "missing value", "missing=ffill"]),
        (lambda r: _set(r, 5, 4, ""), ["line 7", "'Close'", "missing value"]),
        (lambda r: _set(r, 9, 2, "12.5x"), ["line 11", "'High'", "not a number"]),
        (lambda r: _set(r, 3, 4, "0"), ["line 5", "'Close'", "<= 0"]),
        (lambda r: _set(r, 3, 1, "-2.5"), ["line 5", "'Open'", "<= 0"]),
        (lambda r: r[:2] + [r[3], r[2]] + r[4:], ["line 5", "before the previous row", "unsorted=sort"]),
        (lambda r: r[:6] + [r[5]] + r[6:], ["duplicate date", "line 8"]),
        (lambda r: r[:10], ["series too short", "10 rows", "19"]),
        (lambda r: _set(r, 0, 0, "not-a-date"), ["line 2", "'Date'", "date/time"]),
    ],
)
def test_bad_input_messages_name_file_line_and_column(tmp_path, mutate, expected):
    msg = _bad(tmp_path, mutate)
    for part in expected:
        assert part in msg, (part, msg)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: _set(r, 5, 4, "1e39"), ["line 7", "'Close'", "1e+39 is outside the range of float32"]),
        (lambda r: _set(r, 5, 5, "1e-40"), ["line 7", "'Volume'", "1e-40 is outside the range of float32"]),
        # a field past the header's in the first row (pandas takes the row's width from it)
        (lambda r: _set(r, 0, 5, r[0].split(",")[5] + ",9"), ["line 2: 7 fields where the header has 6", "'9'"]),
    ],
)
def test_values_the_model_cannot_hold_and_fields_past_the_header_are_named(tmp_path, mutate, expected):
    """Read as float32, 1e39 became inf and 1e-40 zero, and predict said only that the window held values the
    model cannot use; a seventh field was dropped without a word."""
    msg = _bad(tmp_path, mutate)
    for part in expected:
        assert part in msg, (part, msg)


def test_row_names_before_every_row_as_r_writes_them_are_read_as_the_index(tmp_path):
    """R's write.table: a header one name short and a row name first; index_col=False had read it shifted."""
    rows = gbm(30)
    want = data.read_csv(write_csv(tmp_path / "c.csv", rows), cfg_for(tmp_path / "c.csv"))
    p = write_csv(tmp_path / "r.csv", [f'"{i + 1}",{r}' for i, r in enumerate(rows)])
    np.testing.assert_array_equal(data.read_csv(p, cfg_for(p)).values, want.values)
    # decimal applies to ';' and tab files: a comma file keeps its thousands (a model trained on a ';' file)
    quoted = [f'{r.rsplit(",", 1)[0]},"{int(r.rsplit(",", 1)[1]):,}"' for r in rows]
    p = write_csv(tmp_path / "k.csv", quoted)
    np.testing.assert_array_equal(data.read_csv(p, cfg_for(p, decimal="comma")).values, want.values)


def test_a_separator_after_the_last_field_of_every_row_reads_the_fields_in_place(tmp_path):
    """Rows ending with a comma (the header without one) made pandas take the date as the row index: every
    column moved one to the left, and the error blamed the Date column for holding a price."""
    rows = gbm(30)
    want = data.read_csv(write_csv(tmp_path / "c.csv", rows), cfg_for(tmp_path / "c.csv"))
    p = write_csv(tmp_path / "t.csv", [r + "," for r in rows])
    got = data.read_csv(p, cfg_for(p))
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.times, want.times)


def test_a_column_the_model_reads_that_the_header_names_twice_is_an_error(tmp_path):
    """The first of two Close columns was read without a word; pandas renames the second to Close.1."""
    rows = [r + ",1.0" for r in gbm(30)]
    for header, listed in (
        (HEADER + ",Close", "'Close' (field 5), 'Close' (field 7)"),
        (HEADER + ",close ", "'Close' (field 5), 'close ' (field 7)"),
    ):
        p = write_csv(tmp_path / "d.csv", rows, header=header)
        with pytest.raises(
            data.DataError, match=rf"d.csv: the header names the column 'close' 2 times: {re.escape(listed)}"
        ):
            data.read_csv(p, cfg_for(p))
    p = write_csv(tmp_path / "n.csv", rows, header=HEADER + ",Note")  # a column it does not read may repeat
    write_csv(p, [r + ",x" for r in rows], header=HEADER + ",Note,note")
    assert len(data.read_csv(p, cfg_for(p)).values) == 30


def test_tab_file_whose_commas_could_be_decimal_or_thousands_asks_which(tmp_path):
    """112,630 in a tab-separated file with no other sign was read as 112630: a forecast 1000 times off."""
    rows = [r.replace(",", "\t") for r in gbm(30)]
    three = [
        "\t".join(v if i in (0, 5) else f"{float(v):.3f}".replace(".", ",") for i, v in enumerate(r.split("\t")))
        for r in rows
    ]
    p = write_csv(tmp_path / "a.tsv", three, header=HEADER.replace(",", "\t"))
    first = three[0].split("\t")[1]
    with pytest.raises(
        data.DataError,
        match=rf"a.tsv: line 2, column 'Open': '{first}' reads as {first.replace(',', '.')} with a decimal comma or "
        rf"{first.replace(',', '')} with a thousands separator.*--set decimal=comma \(3,25 is 3.25\) or --set "
        "decimal=point",
    ):
        data.read_csv(p, cfg_for(p))
    comma = data.read_csv(p, cfg_for(p, decimal="comma")).values
    np.testing.assert_allclose(comma[0, 0], float(first.replace(",", ".")))
    np.testing.assert_allclose(data.read_csv(p, cfg_for(p, decimal="point")).values[:, :4], comma[:, :4] * 1000)
    # grouped volumes (4,045,996) settle it: commas group thousands
    grouped = ["\t".join([*r.split("\t")[:5], f"{int(r.split(chr(9))[5]):,}"]) for r in three]
    p = write_csv(tmp_path / "g.tsv", grouped, header=HEADER.replace(",", "\t"))
    np.testing.assert_allclose(data.read_csv(p, cfg_for(p)).values[:, :4], comma[:, :4] * 1000, rtol=1e-12)
    from seqapps.forecast import app as app_mod

    with pytest.raises(ValueError, match="decimal must be one of"):
        app_mod._check_cfg(cfg_for(p, decimal="dot"))


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    rows = gbm(60)
    p = tmp_path / "l.csv"
    p.write_bytes((HEADER + "\n" + "\n".join(rows[:48])).encode() + "\n2015-02-22,caf\xe9".encode("latin-1"))
    with pytest.raises(data.DataError, match=r"l.csv: line 50: not UTF-8 text \(byte b'\\xe9'"):
        data.read_csv(p, cfg_for(p))


def test_missing_column_lists_what_the_file_has(tmp_path):
    p = write_csv(
        tmp_path / "novol.csv", [",".join(r.split(",")[:5]) for r in gbm(30)], header="Date,Open,High,Low,Close"
    )
    with pytest.raises(data.DataError, match=r"novol.csv: missing column\(s\) \['volume'\].*'Close'"):
        data.read_csv(p, cfg_for(p, mode="ohlcv"))
    with pytest.raises(data.DataError, match=r"missing column\(s\) \['price'\]"):
        data.read_csv(p, cfg_for(p, mode="generic", target="price"))


def test_semicolon_and_tab_separated_files_read_like_commas(tmp_path):
    rows = gbm(30)
    want = data.read_csv(write_csv(tmp_path / "c.csv", rows), cfg_for(tmp_path / "c.csv"))
    semi = [r.replace(",", ";").replace(".", ",") for r in rows]  # spreadsheet export: decimal commas
    tab = [r.replace(",", "\t") for r in rows]
    for name, body, header in (("s.csv", semi, HEADER.replace(",", ";")), ("t.tsv", tab, HEADER.replace(",", "\t"))):
        p = write_csv(tmp_path / name, body, header=header)
        got = data.read_csv(p, cfg_for(p))
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.times, want.times)
    semi[4] = semi[4].replace(",", ".", 1)  # one cell written 12.5 among 12,5: a thousand or twelve and a half?
    p = write_csv(tmp_path / "mixed.csv", semi, header=HEADER.replace(",", ";"))
    with pytest.raises(data.DataError, match=r"mixed.csv: line 6, column 'Open': .* '\.' .*decimal comma \(line 2\)"):
        data.read_csv(p, cfg_for(p))
    semi[4] = rows[4].replace(",", ";").replace(".", ",")  # as before the mixed cell
    semi[6] = semi[6].rsplit(";", 1)[0] + ";35,012,300"  # the message shows the cell as written, not as rewritten
    p = write_csv(tmp_path / "grouped.csv", semi, header=HEADER.replace(",", ";"))
    with pytest.raises(data.DataError, match=r"grouped.csv: line 8, column 'Volume': '35,012,300' is not a number"):
        data.read_csv(p, cfg_for(p))
    # tab-separated with decimal commas (no ';' to tell): read as decimals, not as thousands (3,25 -> 325)
    tab_dc = [r.replace(",", "\t").replace(".", ",") for r in rows]
    p = write_csv(tmp_path / "dc.tsv", tab_dc, header=HEADER.replace(",", "\t"))
    np.testing.assert_array_equal(data.read_csv(p, cfg_for(p)).values, want.values)
    # comma-separated: a comma must group thousands, anything else names the cell
    quoted = [r.split(",") for r in rows]
    quoted[3][4] = '"1,234.5"'
    p = write_csv(tmp_path / "k.csv", [",".join(r) for r in quoted])
    assert data.read_csv(p, cfg_for(p)).values[3, 3] == 1234.5
    quoted[3][4] = '"3,25"'
    p = write_csv(tmp_path / "dc.csv", [",".join(r) for r in quoted])
    with pytest.raises(data.DataError, match=r"dc.csv: line 5, column 'Close': '3,25' has a comma that is not a thou"):
        data.read_csv(p, cfg_for(p))


def test_a_comma_after_a_leading_zero_is_a_decimal_comma_not_thousands(tmp_path):
    """0,125 cannot group thousands (no number is written with a leading zero group): in a tab-separated file it
    is a decimal comma, in a comma-separated file an error; read as 125, the value would be 1000 times off."""
    rows = gbm(30)
    tab = [r.replace(",", "\t") for r in rows]
    tab[2] = tab[2].replace(tab[2].split("\t")[4], "0,125")
    p = write_csv(
        tmp_path / "z.tsv",
        [r.replace(".", ",") if i != 2 else r for i, r in enumerate(tab)],
        header=HEADER.replace(",", "\t"),
    )
    assert data.read_csv(p, cfg_for(p, mode="generic")).values[2, 0] == 0.125
    only = write_csv(tmp_path / "only.tsv", ["2015-01-05\t0,125", "2015-01-06\t0,250"], header="Date\tx")
    np.testing.assert_array_equal(data.read_csv(only, cfg_for(only, target="x"), min_rows=2).target, [0.125, 0.25])
    quoted = [r.split(",") for r in rows]
    quoted[3][4] = '"0,125"'
    p = write_csv(tmp_path / "q.csv", [",".join(r) for r in quoted])
    with pytest.raises(data.DataError, match=r"q.csv: line 5, column 'Close': '0,125' has a comma that is not a thou"):
        data.read_csv(p, cfg_for(p))


def _dated(tmp_path, name, dates):
    return write_csv(tmp_path / name, [f"{d},{i + 1}" for i, d in enumerate(dates)], header="Date,x")


def test_dates_are_read_in_one_order_and_an_undecidable_order_is_asked_for(tmp_path):
    """Each date read on its own would take 13.02.2020 day first and 01.02.2020 month first in one file; the
    whole column is read day first or month first, and where every date reads both ways, date_order decides."""
    import pandas as pd

    def read(p, **kw):
        return data.read_csv(p, cfg_for(p, target="x", **kw), min_rows=5).times.astype("datetime64[D]").astype(str)

    days = pd.date_range("2020-01-01", periods=45)
    assert list(read(_dated(tmp_path, "eu.csv", days.strftime("%d.%m.%Y")))) == list(days.strftime("%Y-%m-%d"))
    assert list(read(_dated(tmp_path, "us.csv", days.strftime("%m/%d/%Y")))) == list(days.strftime("%Y-%m-%d"))
    iso = _dated(tmp_path, "iso.csv", days.strftime("%Y-%m-%d"))
    assert list(read(iso, date_order="dmy")) == list(read(iso)) == list(days.strftime("%Y-%m-%d"))
    months = pd.date_range("2020-01-01", periods=12, freq="MS")
    p = _dated(tmp_path, "monthly.csv", months.strftime("%d.%m.%Y"))  # no day above 12: both orders read it
    with pytest.raises(
        data.DataError,
        match=r"monthly.csv: column 'Date': line 3: '01.02.2020' reads as 2020-02-01 "
        r"day first or 2020-01-02 month first.*--set date_order=dmy \(31.12.2020\) or --set date_order=mdy",
    ):
        read(p)
    assert list(read(p, date_order="dmy")) == list(months.strftime("%Y-%m-%d"))
    assert read(p, date_order="mdy")[1] == "2020-01-02"
    p = _dated(tmp_path, "bad.csv", [*days[:10].strftime("%d.%m.%Y"), "45.01.2020", *days[11:].strftime("%d.%m.%Y")])
    with pytest.raises(data.DataError, match=r"bad.csv: line 12, column 'Date': cannot read '45.01.2020'"):
        read(p)
    p = _dated(tmp_path, "timed.csv", ["01/01/2020", "01/02/2020 10:00", "01/03/2020", "01/13/2020", "01/15/2020"])
    assert list(read(p)) == ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-13", "2020-01-15"]
    # a first date that puts the day first settles the order for the dates in other formats too
    p = _dated(tmp_path, "settled.csv", ["13.02.2020", "01.03.2020 10:00", "14.03.2020", "15.03.2020", "16.03.2020"])
    assert list(read(p)) == ["2020-02-13", "2020-03-01", "2020-03-14", "2020-03-15", "2020-03-16"]
    p = _dated(tmp_path, "later.csv", ["01.02.2020 10:00", "13.02.2020", "14.02.2020", "15.02.2020", "16.02.2020"])
    assert read(p)[0] == "2020-02-01"  # settled by 13.02.2020, though the first date has a time and a day <= 12
    with pytest.raises(data.DataError, match=r"line 3: '13.02.2020' can only be read day first, but date_order=mdy"):
        read(p, date_order="mdy")  # read cell by cell, 13.02.2020 would be taken day first and 01.02 month first
    p = _dated(tmp_path, "empty.csv", ["", "01.02.2020", "13.02.2020", "14.02.2020", "15.02.2020"])
    with pytest.raises(data.DataError, match=r"empty.csv: line 2, column 'Date': cannot read ''"):
        read(p)
    # two-digit years, for which pandas guesses no format: a day above 12 settles the order as for four digits
    p = _dated(tmp_path, "yy.csv", ["1/2/20", "2/2/20", "3/2/20", "4/2/20 10:00", "13/2/20"])
    assert list(read(p)) == ["2020-02-01", "2020-02-02", "2020-02-03", "2020-02-04", "2020-02-13"]
    p = _dated(tmp_path, "yy-us.csv", ["2/1/99", "2/2/99", "2/13/99", "2/14/99", "2/15/99"])
    assert list(read(p)) == ["1999-02-01", "1999-02-02", "1999-02-13", "1999-02-14", "1999-02-15"]
    p = _dated(tmp_path, "yy-75.csv", ["13/1/75", "14/1/75", "15/1/75 10:00", "16/1/75", "17/1/75"])
    assert read(p)[2] == "1975-01-15"  # read on its own (another format), it took dateutil's century: 2075
    # the century follows the year as written, not the UTC time's year, which an offset can move across New Year
    p = _dated(
        tmp_path,
        "yy-68.csv",  # the first time has seconds: the others, in another format, are read one by one
        ["31/12/68 20:00:00+00:00", *(f"31/12/68 2{h}:00+00:00" for h in (1, 2, 3)), "31/12/68 23:30-01:00"],
    )
    assert read(p)[-1] == "2069-01-01"  # 68 is 2068; at 00:30 UTC it is 2069 already, not 1969
    p = _dated(
        tmp_path,
        "yy-69.csv",
        [
            "31/12/1968 20:00+00:00",
            "31/12/1968 21:00+00:00",
            "1/1/69 00:30+01:00",
            "2/1/1969 00:00+00:00",
            "3/1/1969 00:00+00:00",
        ],
    )
    assert read(p)[2] == "1968-12-31"  # 69 is 1969; at 23:30 UTC it is still 1968, not 2068
    p = _dated(tmp_path, "yy-both.csv", ["1/2/20", "2/2/20", "3/2/20", "4/2/20", "5/2/20"])
    with pytest.raises(
        data.DataError, match="'1/2/20' reads as 2020-02-01 day first or 2020-01-02 month first, and no"
    ):
        read(p)
    assert read(p, date_order="mdy")[0] == "2020-01-02"
    p = _dated(tmp_path, "spaced.csv", ["1 2 20", "2 2 20", "3 2 20", "4 2 20", "5 2 20"])  # no format guessed
    with pytest.raises(data.DataError, match="their format could not be told from the first dates"):
        read(p)
    assert read(p, date_order="dmy")[0] == "2020-02-01"
    with pytest.raises(ValueError, match="date_order must be one of"):
        read(iso, date_order="ymd")


def test_times_with_utc_offsets_are_read_as_utc_across_a_clock_change(tmp_path):
    p = _dated(tmp_path, "dst.csv", [f"2020-03-29T0{h}:00:00+0{1 + (h >= 3)}:00" for h in (0, 1, 3, 4, 5)])
    times = data.read_csv(p, cfg_for(p, target="x"), min_rows=5).times
    assert list(times.astype(str)) == [
        f"2020-03-{d}T{h:02d}:00:00" for d, h in ((28, 23), (29, 0), (29, 1), (29, 2), (29, 3))
    ]


def test_a_daily_series_at_local_midnight_keeps_its_dates_and_offsets_are_all_or_none(tmp_path):
    """In UTC, a Tokyo export's 2015-04-07T00:00:00+09:00 is 04-06 15:00: every day moved back one, and the
    forecast's days skipped no weekend."""
    days = [f"2015-04-{d:02d}" for d in (6, 7, 8, 9, 10, 13, 14)]
    p = _dated(tmp_path, "tokyo.csv", [f"{d}T00:00:00+09:00" for d in days])
    assert list(data.read_csv(p, cfg_for(p, target="x"), min_rows=5).times.astype("datetime64[D]").astype(str)) == days
    assert data.read_csv(p, cfg_for(p, target="x"), min_rows=5).times[0] == np.datetime64("2015-04-06T00:00:00")
    p = _dated(tmp_path, "mixed.csv", [*(f"{d}T00:00:00+09:00" for d in days[:3]), *days[3:]])
    with pytest.raises(data.DataError, match=r"mixed.csv: column 'Date': line 5: '2015-04-09' has no UTC offset, "):
        data.read_csv(p, cfg_for(p, target="x"), min_rows=5)


def test_composed_time_parts_must_be_whole_numbers(tmp_path):
    """hour 23.9 was read as 23:00; year inf gave pandas' own message, with no file, line or column."""
    rows = [f"2014,12,31,{h},{h}" for h in range(19)]
    for cell, shown in (("23.9", "'23.9'"), ("inf", "'inf'")):
        p = write_csv(tmp_path / "p.csv", [*rows, f"2014,12,31,{cell},1"], header="year,month,day,hour,x")
        with pytest.raises(data.DataError, match=rf"p.csv: line 21, column 'hour': {shown} is not a whole number"):
            data.read_csv(p, cfg_for(p, time_column="year,month,day,hour", target="x"), min_rows=5)


def test_error_lines_count_blank_lines(tmp_path):
    rows = gbm(30)
    rows[6] = rows[6].replace(rows[6].split(",")[4], "x")
    p = tmp_path / "blank.csv"
    p.write_text(HEADER + "\n" + "\n".join(rows[:3]) + "\n\n  \n" + "\n".join(rows[3:]) + "\n")
    with pytest.raises(data.DataError, match=r"blank.csv: line 10, column 'Close': 'x' is not a number"):
        data.read_csv(p, cfg_for(p))  # rows[6]: header, 3 rows, 2 blank lines, 3 rows, then it


def test_a_quote_left_open_that_swallows_rows_is_an_error_naming_its_lines(tmp_path):
    """A quote opened in row 4's Volume and closed in row 6's took rows 5 and 6 into one cell. Read as OHLCV that
    cell was called a number with a stray comma, on the wrong line; with Volume not among the inputs nothing
    noticed, and the series skipped two days."""
    rows = gbm(30)
    head, volume = rows[3].rsplit(",", 1)
    rows[3] = f'{head},"{volume}'
    rows[5] = rows[5] + '"'
    p = tmp_path / "q.csv"
    p.write_text(HEADER + "\n\n" + "\n".join(rows) + "\n")  # a blank line first: the lines count it
    for cfg in (cfg_for(p), cfg_for(p, mode="generic", target="Close")):
        with pytest.raises(data.DataError, match=r"q.csv: line 6, column 'Volume': a quoted cell runs over lines 6-8"):
            data.read_csv(p, cfg)
    p.write_text(HEADER + "\r" + "\r".join(rows) + "\r")  # old Mac line ends: an IndexError
    with pytest.raises(data.DataError, match=r"q.csv: line 5, column 'Volume': a quoted cell runs over lines 5-7"):
        data.read_csv(p, cfg_for(p))
    # a note over two lines of text, correctly quoted, loses no row
    notes = [r + (',"line one\nline two, and more"' if i == 3 else ",") for i, r in enumerate(gbm(30))]
    p = write_csv(tmp_path / "notes.csv", notes, header=HEADER + ",Note")
    assert len(data.read_csv(p, cfg_for(p)).values) == 30


def test_a_folder_is_read_in_its_first_files_mode(tmp_path):
    """With mode auto, a file of a folder that lacks the first file's columns is an error (or skipped), never
    a series with other columns stretched into the same windows."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_csv(folder / "A.csv", gbm(60))
    write_csv(folder / "B.csv", [",".join(r.split(",")[i] for i in (0, 4)) for r in gbm(60, seed=1)], "Date,Close")
    with pytest.raises(data.DataError, match=r"B.csv: missing column\(s\) \['open', 'high', 'low', 'volume'\]"):
        data.load(cfg_for(folder))
    ds = data.load(cfg_for(folder, bad_series="skip"))
    assert [s.name for s in ds.series] == ["A"] and list(ds.skipped) == ["B.csv"] and ds.mode == "ohlcv"


def test_mase_leaves_out_series_that_start_in_the_test_period():
    """A series with fewer than MASE_MIN_ROWS rows before the test period has no in-sample scale: MASE is
    the mean over the other windows, and the backtest says which were left out."""
    err = np.array([[1.0], [2.0], [4.0]])
    scale = np.array([1.0, 2.0, np.nan])
    np.testing.assert_allclose(backtest._mase(err, scale), [1.0])  # (1/1 + 2/2) / 2
    assert np.isnan(backtest._mase(err, np.full(3, np.nan))).all()
    ds = types.SimpleNamespace(series=[types.SimpleNamespace(name="OLD"), types.SimpleNamespace(name="NEW")])
    pairs = np.array([[0, 50], [1, 3], [1, 4]])
    note = backtest.mase_note(ds, pairs, np.array([1.0, np.nan, np.nan]))
    assert note.startswith("MASE leaves out 2 of the 3 windows: those of NEW,")
    assert backtest.mase_note(ds, pairs, np.ones(3)) is None
    series = [types.SimpleNamespace(target=np.arange(40.0) * k) for k in (1.0, 2.0)]  # steps of 1 and 2 per row
    split = types.SimpleNamespace(test_index=[backtest.MASE_MIN_ROWS, 5])
    scaled = data.naive_scale(types.SimpleNamespace(series=series), split)
    assert scaled[0] == 1.0 and np.isnan(scaled[1])


def test_forward_fill_and_sort_are_options_with_stated_effect(tmp_path):
    rows = _set(gbm(30), 5, 4, "NA")
    p = write_csv(tmp_path / "f.csv", rows)
    s = data.read_csv(p, cfg_for(p, missing="ffill"))
    assert s.filled == 1 and s.values[5, 3] == s.values[4, 3]
    rows = gbm(30)
    p = write_csv(tmp_path / "u.csv", rows[:2] + [rows[3], rows[2]] + rows[4:])
    s = data.read_csv(p, cfg_for(p, unsorted="sort"))
    assert np.all(np.diff(s.times) > np.timedelta64(0))
    with pytest.raises(data.DataError, match="first row cannot be forward-filled"):
        p = write_csv(tmp_path / "g.csv", _set(gbm(30), 0, 4, "NA"))
        data.read_csv(p, cfg_for(p, missing="ffill"))


def test_folder_skip_lists_bad_files(tmp_path, capsys):
    folder = tmp_path / "tickers"
    folder.mkdir()
    for i in range(3):
        write_csv(folder / f"T{i}.csv", gbm(60, seed=i))
    write_csv(folder / "BAD.csv", _set(gbm(60), 7, 4, "-1"))
    with pytest.raises(data.DataError, match="BAD.csv: line 9.*bad_series=skip"):
        data.load(cfg_for(folder))
    ds = data.load(cfg_for(folder, bad_series="skip"))
    assert [s.name for s in ds.series] == ["T0", "T1", "T2"] and list(ds.skipped) == ["BAD.csv"]
    # the printed summary gives each file's first clause whole, not cut mid-word
    assert "BAD.csv: line 9, column 'Close': price -1 <= 0 (1 such row(s))\n" in capsys.readouterr().out


def test_data_that_does_not_exist_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data no/such.csv not found \(relative to .*--data PATH"):
        data.load(cfg_for("no/such.csv"))
    with pytest.raises(FileNotFoundError, match=r"such.csv not found; give 'default'"):
        data.load(cfg_for(tmp_path / "such.csv"))


def test_generic_csv_with_composed_time_and_calendar(tmp_path):
    lines = [
        f"{2014},{1 + (i // 24) // 28},{1 + (i // 24) % 28},{i % 24},{np.sin(i / 4):.3f},{i % 7}" for i in range(120)
    ]
    p = write_csv(tmp_path / "w.csv", lines, header="year,month,day,hour,TEMP,PRES")
    cfg = cfg_for(
        p, mode="generic", time_column="year,month,day,hour", target="temp", features="pres", calendar="hour,dayofyear"
    )
    s = data.read_csv(p, cfg)
    assert s.columns == ["temp", "pres", "hour", "dayofyear"]
    np.testing.assert_array_equal(s.values[:30, 2], np.arange(30) % 24)
    assert s.values[24, 3] == 1.0  # Jan 2 -> day of year 1 (0-based)


# ---------------------------------------------------------------------------------------------- leakage
def _dataset(tmp_path, n=200, k=1, **kw):
    folder = tmp_path / "d"
    folder.mkdir(exist_ok=True)
    for i in range(k):
        write_csv(folder / f"S{i}.csv", gbm(n, seed=i))
    cfg = cfg_for(folder if k > 1 else folder / "S0.csv", **kw)
    return data.load(cfg), cfg


def test_windows_use_no_row_after_the_origin(tmp_path):
    ds, cfg = _dataset(tmp_path)
    sp = data.split(ds, cfg)
    spec = features.FeatureSpec("ohlcv", ds.columns, ds.target_index, cfg.window, cfg.horizon, cfg.vol_window)
    x, y = data.windows(ds, sp.train, cfg.window, cfg.horizon)
    spec = features.fit_spec(spec, x, y)
    pairs = sp.test[::7][:5]
    x0, y0 = data.windows(ds, pairs, cfg.window, cfg.horizon)
    np.testing.assert_array_equal(x0[:, -1], np.stack([ds.series[si].values[t] for si, t in pairs]).astype(np.float32))
    original = ds.series[0].values.copy()
    for k, (si, t) in enumerate(pairs):
        # scramble every row after the origin: this window's inputs must not change, its targets must
        ds.series[si].values[:] = original
        ds.series[si].values[t + 1 :] *= 3.0
        x1, y1 = data.windows(ds, pairs[k : k + 1], cfg.window, cfg.horizon)
        np.testing.assert_array_equal(x1[0], x0[k])
        f1 = [v.numpy() for v in features.engineer(x1, spec)]
        for a, b in zip([v.numpy() for v in features.engineer(x0[k : k + 1], spec)], f1):
            np.testing.assert_array_equal(a, b)
        assert not np.allclose(y0[k], y1[0])


def test_chronological_split_orders_train_val_test(tmp_path):
    ds, cfg = _dataset(tmp_path, n=300)
    sp = data.split(ds, cfg)
    H = cfg.horizon
    assert sp.train[:, 1].max() + H < sp.val[:, 1].min() + 1  # every training target before validation
    assert sp.val[:, 1].max() + H < sp.test[:, 1].min() + 1
    ti = sp.test_index[0]
    assert sp.test[:, 1].min() + 1 == ti and ds.series[0].times[ti] >= np.datetime64(sp.test_start)


def test_series_split_holds_out_whole_series_and_test_period(tmp_path):
    ds, cfg = _dataset(
        tmp_path, n=200, k=6, split="series", test_start="2015-06-01", test_fraction=0.34, val_fraction=0.17
    )
    sp = data.split(ds, cfg)
    train_s, test_s = set(sp.train[:, 0]), set(sp.test[:, 0])
    assert train_s and test_s and not (train_s & test_s) and not (set(sp.val[:, 0]) & (train_s | test_s))
    for si, t in sp.train:
        assert ds.series[si].times[t + cfg.horizon] < np.datetime64("2015-06-01")
    for si, t in sp.test:
        assert ds.series[si].times[t + 1] >= np.datetime64("2015-06-01")


def test_scaling_is_fitted_on_training_windows_only(tmp_path):
    from seqapps.forecast.app import ForecastApp

    app = ForecastApp()
    csv = tmp_path / "s.csv"
    rows = gbm(300, seed=3)
    write_csv(csv, rows)
    cfg = dataclasses.replace(tiny(), data=str(csv), mode="generic", target="close", features="volume")
    spec_a = app.prepare(cfg)[2]
    # multiply the prices in the test period (last 10%) by 10: the fitted statistics must not move
    cut = 300 - 25
    changed = rows[:cut] + [
        ",".join([r.split(",")[0]] + [f"{float(v) * 10:.4f}" for v in r.split(",")[1:]]) for r in rows[cut:]
    ]
    write_csv(csv, changed)
    spec_b = app.prepare(cfg)[2]
    assert spec_a.col_mean == spec_b.col_mean and spec_a.col_std == spec_b.col_std
    assert spec_a.horizon_scale == spec_b.horizon_scale


# ---------------------------------------------------------------------------------------------- oracles
def test_targets_round_trip_through_decode():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for mode in ("ohlcv", "generic"):
        spec = features.FeatureSpec(mode, ["close"], 0, 5, 3, horizon_scale=[1.0, 2.0, 3.0])
        y = rng.uniform(50, 150, (4, 3))
        anchor = np.log(rng.uniform(50, 150, 4)) if mode == "ohlcv" else rng.uniform(50, 150, 4)
        scale = rng.uniform(0.01, 0.05, (4, 3))
        z = features.encode_targets(y, anchor, scale, spec)
        back = np.asarray(
            features.decode(
                tf.constant(z[..., None]), tf.constant(anchor, tf.float32), tf.constant(scale, tf.float32), spec
            )
        )[..., 0]
        np.testing.assert_allclose(back, y, rtol=1e-4)


def test_pinball_loss_and_monotone_quantiles():
    from seqapps.forecast.model import MonotoneQuantiles, PinballLoss, horizon_weights

    qs = [0.1, 0.5, 0.9]
    y = np.array([[1.0, -2.0]], np.float32)
    pred = np.array([[[0.0, 0.5, 2.0], [-1.0, 0.0, 1.0]]], np.float32)
    e = y[..., None] - pred
    q = np.array(qs)
    expected = np.mean(np.maximum(q * e, (q - 1) * e))
    assert float(PinballLoss(qs)(y, pred)) == pytest.approx(expected, rel=1e-6)
    # horizon weights: the last horizon counts 1, the first 0.2, scaled to mean 1 (0.2/0.6, 1/0.6)
    w = horizon_weights(2, 1, 0.2)
    assert w == pytest.approx([1 / 3, 5 / 3])
    per_h = np.mean(np.maximum(q * e, (q - 1) * e), axis=-1)[0]
    weighted = PinballLoss(qs, horizon_weights=w)
    assert float(weighted(y, pred)) == pytest.approx((per_h[0] / 3 + per_h[1] * 5 / 3) / 2, rel=1e-6)
    assert PinballLoss.from_config(weighted.get_config()).horizon_weights == pytest.approx(w)
    assert horizon_weights(2, 0, 0.2) is None and horizon_weights(2, 2, 0.2) is None
    raw = np.random.default_rng(1).normal(size=(5, 2 * 3)).astype(np.float32) * 5
    out = MonotoneQuantiles(2, 3)(raw).numpy()
    assert out.shape == (5, 2, 3) and np.all(np.diff(out, axis=-1) > 0)


def test_metrics_against_hand_computed_values():
    pred = np.array([[10.0, 12.0], [20.0, 18.0]])
    y = np.array([[11.0, 11.0], [19.0, 22.0]])
    last = np.array([10.5, 19.5])
    scale = np.array([1.0, 2.0])
    interval = np.stack([pred - 1.5, pred + 1.5], -1)
    m = backtest.metrics(pred, y, last, scale, interval)
    assert m["mae"] == [1.0, 2.5]
    assert m["rmse"] == pytest.approx([1.0, np.sqrt((1 + 16) / 2)], abs=1e-6)
    assert m["mape"][0] == pytest.approx(100 * (1 / 11 + 1 / 19) / 2, abs=1e-5)
    assert m["mase"] == pytest.approx([(1 / 1 + 1 / 2) / 2, (1 / 1 + 4 / 2) / 2], abs=1e-6)
    # direction: h1 pred-last = -0.5,+0.5 ; y-last = +0.5,-0.5 -> 0/2 ; h2: +1.5,-1.5 vs +0.5,+2.5 -> 1/2
    assert m["directional"] == [0.0, 0.5]
    assert m["coverage80"] == [1.0, 0.5]


def test_mape_is_flagged_where_the_actual_values_reach_zero():
    assert backtest.mape_note(np.array([[310.3, 311.2], [0.01, 2.0]])) is None  # prices: positive
    note = backtest.mape_note(np.array([[-3.0, 0.0], [0.0, 12.0], [np.nan, 5.0]]))
    assert note.startswith("MAPE says little here: the actual values run from -3 to 12, through zero (2 of the 5 ")
    y, last, scale = np.array([[-1.0], [2.0]]), np.array([0.0, 1.0]), np.ones(2)
    methods = {
        "model": backtest.metrics(y + 0.5, y, last, scale),
        "naive": backtest.metrics(last[:, None], y, last, scale),
    }
    res = {"windows": 2, "series": 1, "methods": methods, "mape_note": note}
    assert backtest.table(res, 1).splitlines()[-1] == note
    del res["mape_note"]
    assert "MAPE says" not in backtest.table(res, 1)


def test_baselines_against_hand_computed_values(tmp_path):
    y = np.arange(1.0, 21.0) ** 1.5  # 20 rows
    rows = [f"{np.datetime64('2020-01-01') + i},{v},{v},{v},{v},1" for i, v in enumerate(y)]
    p = write_csv(tmp_path / "b.csv", rows)
    ds = data.load(cfg_for(p, window=5, horizon=3))
    pairs = np.array([[0, 12]])
    naive, drift, snaive, nint = backtest.baselines(ds, pairs, 3, 5, 6, log_space=True)
    np.testing.assert_allclose(naive[0], [y[12]] * 3)
    slope = (y[12] - y[7]) / 5
    np.testing.assert_allclose(drift[0], y[12] + slope * np.arange(1, 4))
    np.testing.assert_allclose(snaive[0], [y[8], y[9], y[10]])  # t+h-5
    sd = np.std(np.diff(np.log(y[7:13])))
    np.testing.assert_allclose(nint[0, :, 1], y[12] * np.exp(backtest.Z80 * sd * np.sqrt([1, 2, 3])))
    scale = data.naive_scale(ds, data.Split(pairs, pairs, pairs, {0: 20}, {}, ""))  # backtest.MASE_MIN_ROWS
    assert scale[0] == pytest.approx(np.mean(np.abs(np.diff(y[:20]))))


def test_ratio_intervals_block_bootstrap():
    """90% intervals for MAE(model) / MAE(baseline): exact where the ratio cannot vary, windows of one origin
    time kept together, every time drawn equally often (circular blocks), the point estimate inside."""
    rng = np.random.default_rng(0)
    n, H = 400, 2
    times = np.arange(n)
    y = np.zeros((n, H))
    base = rng.normal(size=(n, H)) * 2
    iv = backtest.ratio_intervals({"model": 0.5 * base, "naive": base}, y, times, block=10, resamples=200)
    assert iv["vs"]["naive"]["lo"] == iv["vs"]["naive"]["hi"] == [0.5, 0.5]
    assert iv["vs"]["naive"]["mean_over_horizons"] == [0.5, 0.5]
    assert (iv["block_origins"], iv["origin_times"], iv["resamples"], iv["level"]) == (10, n, 200, 0.9)

    # two series at the same times, the model better on one and worse on the other by the same amount: per
    # origin time the ratio is exactly 1, so resampling whole times gives [1, 1]; resampling windows would not
    t2 = np.concatenate([times, times])
    b2 = np.full((2 * n, H), 2.0)
    m2 = np.concatenate([np.full((n, H), 1.0), np.full((n, H), 3.0)])
    iv2 = backtest.ratio_intervals({"model": m2, "naive": b2}, np.zeros((2 * n, H)), t2, block=10, resamples=200)
    assert iv2["vs"]["naive"]["lo"] == iv2["vs"]["naive"]["hi"] == [1.0, 1.0]

    # the model fails only at the first and last 5 times: circular blocks draw those as often as any other, so
    # the resampled mean of the ratio stays at the full-period ratio (plain moving blocks under-draw the ends)
    model = np.ones((n, 1))
    model[:5] = model[-5:] = 40.0
    point = {"model": model, "naive": np.ones((n, 1))}
    iv3 = backtest.ratio_intervals(point, np.zeros((n, 1)), times, block=40, resamples=4000, level=0.0)
    full = model.sum() / n
    assert iv3["vs"]["naive"]["lo"][0] == pytest.approx(full, rel=0.1)  # level 0: the resampled median

    # a real spread: the interval holds the point estimate and widens with longer blocks of correlated errors
    err = np.abs(np.repeat(rng.normal(size=(n // 20, 1)), 20, axis=0)) + 0.1  # errors correlated over 20 times
    pm = {"model": err, "naive": np.ones((n, 1))}
    short = backtest.ratio_intervals(pm, np.zeros((n, 1)), times, block=1, resamples=1000, seed=1)
    long = backtest.ratio_intervals(pm, np.zeros((n, 1)), times, block=40, resamples=1000, seed=1)
    for r in (short, long):
        assert r["vs"]["naive"]["lo"][0] < err.mean() < r["vs"]["naive"]["hi"][0]
    width = [r["vs"]["naive"]["hi"][0] - r["vs"]["naive"]["lo"][0] for r in (short, long)]
    assert width[1] > 1.5 * width[0]

    # a baseline without error has no bounded ratio: no interval (None, shown as "-"), and no inf in the JSON
    perfect = backtest.ratio_intervals({"model": base, "naive": y}, y, times, block=10, resamples=20)
    assert perfect["vs"]["naive"]["hi"] == [None, None]
    assert backtest.interval_text(perfect, 1) == "naive -"

    # a short period: blocks shortened to a fifth of it
    assert backtest.ratio_intervals(point, np.zeros((n, 1)), times, block=1000, resamples=5)["block_origins"] == 80
    with pytest.raises(ValueError, match="'model'"):
        backtest.ratio_intervals({"naive": base}, y, times, block=10, resamples=10)
    with pytest.raises(ValueError, match="at least 1"):
        backtest.ratio_intervals({"model": base}, y, times, block=10, resamples=0)


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained across 4 synthetic tickers (one held out), exported."""
    import keras

    from seqapps.forecast.app import ForecastApp

    root = tmp_path_factory.mktemp("forecast")
    folder = root / "tickers"
    folder.mkdir()
    for i in range(4):
        write_csv(folder / f"T{i}.csv", gbm(260, seed=10 + i))
    cfg = dataclasses.replace(
        tiny(),
        data=str(folder),
        split="series",
        test_start="2015-08-01",
        test_fraction=0.25,
        val_fraction=0.25,
        epochs=2,
    )
    keras.utils.set_random_seed(0)
    results = ForecastApp().train(cfg, root / "model")
    return root, folder, results


def test_train_exports_checked_artifacts(trained):
    root, _, results = trained
    out = root / "model"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["input_columns"] == ["open", "high", "low", "close", "volume"]
    assert meta["window"] == 16 and meta["horizon"] == 3 and meta["quantiles"] == [0.1, 0.5, 0.9]
    assert meta["saved_model"]["plain_tensorflow_max_abs_diff"] < 1e-3
    for variant in ("float32", "dynamic"):
        r = meta["tflite"][variant]
        assert (out / r["file"]).is_file() and r["max_rel_diff"] < 1e-2 and "WHILE" in r["ops"]
        assert not any("Flex" in op for op in r["ops"])
    bt = meta["backtest"]
    assert set(bt["methods"]) == {"model", "naive", "drift", "seasonal_naive"} and "arima_subset" in bt
    assert results["windows"] == bt["windows"] > 0 and bt["series"] == 1
    iv = bt["mae_ratio_interval"]
    assert set(iv["vs"]) == {"naive", "drift", "seasonal_naive"} and iv["resamples"] == 1000
    for v in iv["vs"].values():
        assert len(v["lo"]) == len(v["hi"]) == 3 and all(lo <= hi for lo, hi in zip(v["lo"], v["hi"]))
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Backtest" in card and card.count("90% interval of model MAE / baseline MAE: naive") == 3
    assert "circular block bootstrap over origin times" in card


def test_int8_variant_only_on_request_with_float_front_end(trained, capsys):
    """`export --set tflite_int8=true` adds a full-integer file calibrated on training windows; the feature
    engineering stays float (raw prices in int8 would round the moves away)."""
    root = trained[0]
    assert "int8" not in json.loads((root / "model" / "metadata.json").read_text())["tflite"]
    rc, _, err = _cli(
        capsys,
        "export",
        "forecast",
        "--model",
        str(root / "model"),
        "--out",
        str(root / "int8"),
        "--set",
        "tflite_int8=true",
    )
    assert rc == 0, err
    meta = json.loads((root / "int8" / "metadata.json").read_text())
    r = meta["tflite"]["int8"]
    assert r["file"] == "model_int8.tflite" and "WHILE" not in r["ops"] and not any("Flex" in op for op in r["ops"])
    assert {"QUANTIZE", "DEQUANTIZE", "LOG"} <= set(r["ops"])  # int8 network, float log returns around it
    assert r["max_rel_diff"] < 0.5
    interp = tflite.interpreter(root / "int8" / "model_int8.tflite")
    assert any(d["dtype"] == np.int8 for d in interp.get_tensor_details())
    calibration = np.load(root / "int8" / "assets" / "calibration_windows.npy")
    assert calibration.shape[1:] == (16, 5)
    rc, _, err = _cli(capsys, "export", "forecast", "--model", str(root / "model"), "--set", "nope=1")
    assert rc == 2 and "nope" in err
    # the network outputs three quantiles: recorded as five, predict and evaluate would label them wrongly
    out = ["--out", str(root / "five")]
    rc, _, err = _cli(
        capsys, "export", "forecast", "--model", str(root / "model"), *out, "--set", "quantiles=0.05,0.1,0.5,0.9,0.95"
    )
    assert rc == 2 and "export --set quantiles=0.05,0.1,0.5,0.9,0.95: the trained model fixes this" in err
    assert "config.yaml records quantiles=0.1,0.5,0.9" in err and not (root / "five").exists()
    # an int8 file that was asked for and cannot be calibrated is an error, not skipped with exit 0: a folder
    # without the calibration windows (the shipped ones: they hold rows of the data) and no readable data
    shutil.copytree(root / "model", root / "bare")
    (root / "bare" / "assets" / "calibration_windows.npy").unlink()
    args = ["--out", str(root / "no-int8"), "--set", "tflite_int8=true", "--set", f"data={root / 'gone.csv'}"]
    rc, _, err = _cli(capsys, "export", "forecast", "--model", str(root / "bare"), *args)
    assert rc == 2 and "tflite_int8=true needs training windows to calibrate on" in err and "--set data=" in err
    assert not (root / "no-int8").exists()


def test_an_export_whose_float32_file_computes_another_function_stops_and_writes_nothing(trained, monkeypatch, capsys):
    """A float32 TFLite file that differs from the Keras model beyond float rounding is a conversion gone wrong:
    `seqapps export` stops with exit 2 and leaves the output folder as it was (here: not created)."""
    from seqapps.export import metadata

    root = trained[0]
    real_run = tflite.run

    def off_by_one_percent(interp, signature, **inputs):
        out = real_run(interp, signature, **inputs)
        return {**out, "quantiles": out["quantiles"] * 1.01}

    monkeypatch.setattr(tflite, "run", off_by_one_percent)
    rc, _, err = _cli(capsys, "export", "forecast", "--model", str(root / "model"), "--out", str(root / "off"))
    assert rc == 2 and "model.tflite (difference / largest forecast) differs from the Keras model by 0.01" in err
    assert not (root / "off").exists()
    metadata.check_parity("x", 1e-6)
    with pytest.raises(metadata.ExportError, match="differs"):
        metadata.check_parity("x", float("nan"))


def test_saved_model_runs_without_seqapps_and_flags_bad_windows(trained):
    from seqapps.export import saved_model

    out = trained[0] / "model"
    sample = np.load(out / "assets" / "sample_windows.npy")[:3].copy()
    sample[1, 4, 3] = np.nan
    sample[2, 0, 0] = -1.0
    res = saved_model.run_isolated(saved_model.latest(out), {"window": sample})
    assert res["quantiles"].shape == (3, 3, 3)
    assert res["valid"].tolist() == [True, False, False]
    q = res["quantiles"][0]
    assert np.all(np.isfinite(q)) and np.all(np.diff(q, axis=-1) >= 0)
    # prices: the median one step ahead is near the last close of the window
    assert abs(q[0, 1] / sample[0, -1, 3] - 1) < 0.2
    assert np.isnan(res["quantiles"][1]).all()
    # the TFLite files too: a bad window gets valid=false and NaN quantiles, never a plausible forecast (the
    # batch-1 graph used to give one from the placeholder values that keep NaN out of the RNN)
    for name in ("model.tflite", "model_dynamic.tflite", "model_gpu.tflite"):
        interp = tflite.interpreter(out / name)
        outs = [tflite.run(interp, "serving_default", window=w[None]) for w in sample]
        assert [bool(o["valid"][0]) for o in outs] == [True, False, False], name
        assert np.all(np.isfinite(outs[0]["quantiles"])) and all(np.isnan(o["quantiles"]).all() for o in outs[1:])


def test_evaluate_write_stores_the_new_backtest_with_the_model(trained, tmp_path, capsys):
    import shutil

    root, _, _ = trained
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    old = json.loads((model / "evaluation.json").read_text())
    assert "arima" in json.dumps(old["backtest"])  # trained with arima_windows=3
    rc, _, err = _cli(
        capsys, "evaluate", "forecast", "--model", str(model), "--set", "arima_windows=0", "--set", "write=true"
    )
    assert rc == 0, err
    new = json.loads((model / "evaluation.json").read_text())
    assert new["training"] == old["training"] and "arima" not in json.dumps(new["backtest"])
    meta = json.loads((model / "metadata.json").read_text())
    assert "arima" not in json.dumps(meta["backtest"])  # metadata.json refreshed from it
    assert not [p.name for p in model.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_predict_that_fails_leaves_earlier_outputs_as_they_were(trained, tmp_path, monkeypatch):
    from seqapps.forecast import app as app_mod

    root, folder, _ = trained
    out_csv = tmp_path / "fc.csv"
    out_csv.write_text("an earlier forecast\n")

    def broken_chart(*args, **kwargs):
        raise RuntimeError("the chart could not be drawn")

    monkeypatch.setattr(app_mod, "fan_chart", broken_chart)
    args = [
        "predict",
        "forecast",
        "--model",
        str(root / "model"),
        "--csv",
        str(folder / "T1.csv"),
        "--out",
        str(out_csv),
    ]
    from seqapps import cli

    with pytest.raises(RuntimeError, match="could not be drawn"):
        cli.main(args)
    assert out_csv.read_text() == "an earlier forecast\n" and sorted(p.name for p in tmp_path.iterdir()) == ["fc.csv"]


def test_predict_refuses_outputs_that_would_lose_data_and_forecasts_that_are_not_finite(trained, tmp_path, capsys):
    """--out naming the --csv overwrote the price history; --out naming a folder left a chart and named a
    temporary file; a price of 1e35 in the window wrote inf into the CSV with exit status 0."""
    root, folder, _ = trained
    csv = tmp_path / "in.csv"
    shutil.copy(folder / "T1.csv", csv)
    before = csv.read_text()
    (tmp_path / "adir.csv").mkdir()
    (tmp_path / "afile").write_text("x")
    base = ["predict", "forecast", "--model", str(root / "model"), "--csv", str(csv), "--out"]
    for out, message in (
        (csv, "is the input file --csv"),
        (tmp_path / "adir.csv", "is a folder; give a file name"),
        (tmp_path / "afile" / "f.csv", "afile is a file, not a folder"),
    ):
        rc, _, err = _cli(capsys, *base, str(out))
        assert rc == 2 and message in err, err
    assert csv.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["adir.csv", "afile", "in.csv"]
    rows = before.splitlines()
    rows[-1] = _set(rows[-1:], 0, 4, "1e35")[0]
    rows[-3] = _set(rows[-3:], 0, 2, "nan")[0]
    csv.write_text("\n".join(rows) + "\n")
    rc, out, err = _cli(capsys, *base, str(tmp_path / "f.csv"), "--ffill")
    assert rc == 2 and "in.csv: the forecast from the last 16 rows is not a finite number" in err, err
    assert "(up to 1e+35 in 'close')" in err and f"note: {csv}: 1 missing cell(s) forward-filled" in err
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "f.png").exists()


def test_forecast_times_are_written_in_one_format():
    from seqapps.forecast.app import future_times
    from seqapps.forecast.data import format_times

    # hourly data: the forecast crosses midnight, which keeps its hours like every other row
    hourly = np.arange("2014-12-31T20:00", "2015-01-01T00:00", dtype="datetime64[h]").astype("datetime64[s]")
    text = format_times([hourly[-1], *future_times(hourly, 3)])
    assert text == ["2014-12-31 23:00", "2015-01-01 00:00", "2015-01-01 01:00", "2015-01-01 02:00"]
    # daily data (business days after a Friday): dates alone
    daily = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[s]")
    assert format_times([daily[-1], *future_times(daily, 2)]) == ["2020-01-03", "2020-01-06", "2020-01-07"]
    # hourly bars of prices are forecast hour by hour, and prices traded every day (crypto) day by day
    bars = np.arange("2020-01-03T06", "2020-01-03T10", dtype="datetime64[h]").astype("datetime64[s]")
    assert format_times(future_times(bars, 2)) == ["2020-01-03 10:00", "2020-01-03 11:00"]
    every_day = np.arange("2019-12-28", "2020-01-04", dtype="datetime64[D]").astype("datetime64[s]")
    assert format_times(future_times(every_day, 2)) == ["2020-01-04", "2020-01-05"]
    assert format_times(np.array(["2020-01-01T00:00:30"], dtype="datetime64[s]")) == ["2020-01-01 00:00:30"]


def test_fan_chart_draws_the_median_and_only_bands_between_mirrored_levels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqapps.forecast.app import fan_chart

    times = np.datetime64("2020-01-01") + np.arange(10)
    quantiles = [0.05, 0.1, 0.5, 0.9, 0.95, 0.99]  # 0.99 has no mirror; the median is not the middle level
    q = np.array([[1.0, 2.0, 10.0, 18.0, 19.0, 25.0]] * 3) + np.arange(3)[:, None]
    fig, ax = plt.subplots()
    fan_chart(times, np.arange(10.0), times[-1] + 1 + np.arange(3), q, quantiles, None, history=10, ax=ax)
    median = [line for line in ax.get_lines() if line.get_label().startswith("median")]
    assert [line.get_label() for line in median] == ["median (q0.5)"]
    np.testing.assert_array_equal(median[0].get_ydata()[1:], [10.0, 11.0, 12.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()][1:] == ["90% interval", "80% interval", "median (q0.5)"]
    plt.close(fig)


def test_printed_forecast_shows_every_quantile_with_the_decimals_its_spread_needs():
    from seqapps.forecast.app import display_decimals, forecast_table

    price = np.array([[306.925, 310.311, 313.468], [302.764, 311.174, 318.703]])
    assert display_decimals(price) == 2  # narrowest interval 6.5: cents
    assert display_decimals(price / 1000) == 5  # 0.0065
    assert display_decimals(price * 1000) == 0  # never negative
    assert display_decimals(np.full((2, 3), 4.0)) == 3  # no spread
    assert display_decimals(np.array([[np.nan, 1.0, np.nan], [0.5, 1.0, 0.52]])) == 4  # NaN widths are left out
    text = forecast_table("close", "2020-01-10", 310.33, ["2020-01-13", "2020-01-17"], ["q10", "q50", "q90"], price)
    assert text.splitlines() == [
        "close at 2020-01-10: 310.33",
        "  step time           q10     q50     q90",
        "    +1 2020-01-13  306.93  310.31  313.47",
        "    +2 2020-01-17  302.76  311.17  318.70",
    ]


def _cli(capsys, *args):
    from seqapps import cli

    capsys.readouterr()
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_predict_evaluate_and_errors(trained, tmp_path, capsys, monkeypatch):
    root, folder, _ = trained
    model = str(root / "model")
    out_csv = tmp_path / "fc.csv"
    rc, out, err = _cli(
        capsys,
        "predict",
        "forecast",
        "--model",
        model,
        "--csv",
        str(folder / "T1.csv"),
        "--horizon",
        "2",
        "--out",
        str(out_csv),
    )
    assert rc == 0, err
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "step,time,last_observed,q10,q50,q90" and len(lines) == 3
    vals = np.array([[float(v) for v in ln.split(",")[3:]] for ln in lines[1:]])
    assert np.all(np.diff(vals, axis=1) >= 0)
    assert out_csv.with_suffix(".png").stat().st_size > 5000 and "q50" in out

    for steps in ("9", "0"):  # 0 used to mean every step
        rc, _, err = _cli(
            capsys, "predict", "forecast", "--model", model, "--csv", str(folder / "T1.csv"), "--horizon", steps
        )
        assert rc == 2 and f"--horizon {steps}: this model forecasts 1 to 3 steps" in err
    rc, _, err = _cli(
        capsys, "predict", "forecast", "--model", model, "--csv", str(folder / "T1.csv"), "--out", "f.png"
    )
    assert rc == 2 and "--out f.png: give the CSV's name (e.g. f.csv)" in err
    short = write_csv(tmp_path / "short.csv", gbm(10))
    rc, _, err = _cli(capsys, "predict", "forecast", "--model", model, "--csv", str(short))
    assert rc == 2 and "short.csv" in err and "too short" in err and "16" in err
    na = write_csv(tmp_path / "na.csv", _set(gbm(40), 30, 4, "NA"))
    rc, _, err = _cli(
        capsys, "predict", "forecast", "--model", model, "--csv", str(na), "--out", str(tmp_path / "n.csv")
    )
    assert rc == 2 and "na.csv: line 32, column 'Close': missing value" in err
    rc, _, err = _cli(
        capsys, "predict", "forecast", "--model", model, "--csv", str(na), "--ffill", "--out", str(tmp_path / "n.csv")
    )
    assert rc == 0, err
    novol = write_csv(
        tmp_path / "novol.csv", [",".join(r.split(",")[:5]) for r in gbm(30)], header="Date,Open,High,Low,Close"
    )
    rc, _, err = _cli(capsys, "predict", "forecast", "--model", model, "--csv", str(novol))
    assert rc == 2 and "missing column(s) ['volume']" in err
    # the trained model fixes its columns: the message names them, not --set (which predict does not take)
    assert f"The model {model} reads the columns ['open', 'high', 'low', 'close', 'volume']" in err
    assert "--set" not in err
    rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--data", str(novol))
    assert rc == 2 and "missing column(s) ['volume']" in err and "--set" not in err
    assert f"The model {model} reads the columns ['open', 'high', 'low', 'close', 'volume']" in err
    notime = tmp_path / "notime.csv"
    notime.write_text(na.read_text().replace("Date,", "Day,", 1))
    rc, _, err = _cli(capsys, "predict", "forecast", "--model", model, "--csv", str(notime))
    assert rc == 2 and "time column(s) ['date'] not found" in err and "the time from 'date'" in err
    assert "--set" not in err
    swapped = (folder / "T1.csv").read_text().splitlines()
    swapped[5], swapped[6] = swapped[6], swapped[5]
    (tmp_path / "unsorted.csv").write_text("\n".join(swapped) + "\n")
    for name, option in (("na.csv", "--ffill"), ("unsorted.csv", "--sort")):
        rc, _, err = _cli(capsys, "predict", "forecast", "--model", model, "--csv", str(tmp_path / name))
        assert rc == 2 and f"pass {option}" in err and "--set" not in err, err
    assert "comes before the previous row's 2015-01-1" in err and "T00:00:00" not in err  # dates as written
    months = [f"01.{1 + k % 12:02d}.{2015 + k // 12}" for k in range(20)]  # day first or month first?
    monthly = write_csv(tmp_path / "monthly.csv", [m + r[r.index(",") :] for m, r in zip(months, gbm(20))])
    rc, _, err = _cli(capsys, "predict", "forecast", "--model", model, "--csv", str(monthly))
    assert rc == 2 and "Say which with --date-order dmy (31.12.2020) or --date-order mdy" in err, err
    out_csv = tmp_path / "monthly_forecast.csv"
    rc, _, err = _cli(
        capsys,
        *["predict", "forecast", "--model", model, "--csv", str(monthly)],
        "--date-order",
        "dmy",
        "--out",
        str(out_csv),
    )
    first = out_csv.read_text().splitlines()[1].split(",")[1]  # the first forecast's time: after 1 August 2016
    assert rc == 0 and "2016-08-01" < first <= "2016-09-01", (first, err)

    rc, out, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "arima_windows=0")
    assert rc == 0, err
    assert "naive" in out and "seasonal_naive" in out and "coverage80" in out
    with monkeypatch.context() as m:  # at a terminal, the ARIMA fits show a progress bar
        m.setattr(sys.stdout, "isatty", lambda: True)
        rc, out, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "arima_windows=2")
    assert rc == 0 and "ARIMA (pmdarima.auto_arima) on 2 test windows:" in out and "2/2" in out, err
    assert out.count("90% interval of model MAE / baseline MAE: naive") == 3  # horizons 1, 3 and their mean
    rc, out, err = _cli(
        capsys, "evaluate", "forecast", "--model", model, "--set", "arima_windows=0", "--set", "bootstrap=0"
    )
    assert rc == 0 and "interval" not in out
    rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "quantiles=0.1,0.25,0.5,0.9")
    assert rc == 2 and "the model outputs the quantiles 0.1,0.5,0.9, fixed by training" in err
    rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "bootstrap=-5")
    assert rc == 2 and "evaluate --set: bootstrap=-5 must be >= 0" in err
    # held out by series: another seed or fraction, a split by time or an earlier start would score series or
    # times the model was trained on
    for bad in ("test_fraction=0.5", "seed=7", "test_start=2015-01-05", "split=time"):
        rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", bad)
        assert rc == 2 and f"evaluate --set {bad}: on the data this model was trained on" in err, err
    rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "test_start=01.08.2015")
    assert rc == 2 and "test_start: expected a date (or time) written year first, like 2019-01-01" in err, err
    rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "target=open")
    assert rc == 2 and "(target 'open') differ from the model's" in err, err
    rc, _, err = _cli(capsys, "evaluate", "forecast", "--model", model, "--set", "write=maybe")
    assert rc == 2 and "write=maybe: give true or false" in err


def test_bench_rows(trained):
    from seqapps.forecast.app import ForecastApp

    rows = ForecastApp().bench(trained[0] / "model", quick=True)
    assert {r["unit"] for r in rows} >= {"ms", "windows/s"}
    for r in rows:
        assert set(r) == {"benchmark", "value", "unit", "baseline", "ratio"} and r["value"] > 0


def test_ensemble_averages_members_blends_ridge_and_resume_keeps_finished_ones(tmp_path, capsys):
    """`ensemble: 2` trains two seeded networks and the saved model averages their quantiles; with
    `linear_blend: 0.5` those move halfway to the ridge forecast. The exports match that model, and --resume
    reuses the members already trained instead of training them again."""
    import keras

    from seqapps.forecast.app import ForecastApp

    csv = write_csv(tmp_path / "s.csv", gbm(220, seed=5))
    cfg = cfg_for(csv, ensemble=2, linear_blend=0.5, epochs=1, arima_windows=0, backtest_max_windows=20)
    ForecastApp().train(cfg, tmp_path / "m")
    model = keras.saving.load_model(tmp_path / "m" / "model.keras", compile=False)
    ensemble = model.get_layer("forecaster_ensemble")
    members = [layer for layer in ensemble.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in members] == ["forecaster_0", "forecaster_1"]
    x = np.random.default_rng(0).normal(size=(4, 15, 5)).astype("float32")
    outs = [m.predict(x, verbose=0) for m in members]
    assert not np.allclose(outs[0], outs[1])  # different seeds, different networks
    mean = (outs[0] + outs[1]) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), mean, rtol=1e-5, atol=1e-6)
    kernel, bias = model.get_layer("ridge").get_weights()
    ridge = x.reshape(4, -1) @ kernel + bias
    np.testing.assert_allclose(
        model.predict(x, verbose=0), mean + 0.5 * (ridge - mean[:, :, 1])[..., None], rtol=1e-4, atol=1e-5
    )
    ev = json.loads((tmp_path / "m" / "evaluation.json").read_text())["training"]
    assert [m["seed"] for m in ev["members"]] == [cfg.seed, cfg.seed + 1]
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert (
        meta["saved_model"]["plain_tensorflow_max_abs_diff"] < 1e-3 and meta["tflite"]["float32"]["max_rel_diff"] < 1e-2
    )
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert "average of 2 such networks" in card and "0.5 x (ridge forecast - median)" in card

    capsys.readouterr()
    ForecastApp().train(cfg, tmp_path / "m", resume=True)
    assert capsys.readouterr().out.count("trained in the earlier run") == 2
    again = keras.saving.load_model(tmp_path / "m" / "model.keras", compile=False)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match="ensemble must be >= 1"):
        ForecastApp().train(dataclasses.replace(cfg, ensemble=0), tmp_path / "bad")
    with pytest.raises(ValueError, match="linear_blend must be in"):
        ForecastApp().train(dataclasses.replace(cfg, linear_blend=1.5), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_aux_targets_train_a_second_head_that_the_saved_model_leaves_out(tmp_path):
    """`aux_targets: dewp,pres` trains each network to also predict those columns' changes after the origin
    (training targets only, scaled by their training std); early stopping watches the forecast's own loss; the
    saved model has only the quantile output. Columns that cannot be auxiliary targets are refused by name."""
    import keras

    from seqapps.forecast.app import ForecastApp, model_card

    rng = np.random.default_rng(3)
    n = 400
    temp = 10 * np.sin(np.arange(n) / 24 * 2 * np.pi) + rng.normal(0, 1, n).cumsum() * 0.2
    lines = [
        f"{np.datetime64('2014-01-01T00') + np.timedelta64(i, 'h')},{t:.3f},{t - 5 + rng.normal():.3f},{1000 + i % 13}"
        for i, t in enumerate(temp)
    ]
    csv = write_csv(tmp_path / "h.csv", lines, header="Date,TEMP,DEWP,PRES")
    cfg = cfg_for(
        csv, mode="generic", target="temp", features="dewp,pres", aux_targets="DEWP,pres", epochs=2, patience=1
    )
    cfg = dataclasses.replace(cfg, arima_windows=0, backtest_max_windows=20)
    app = ForecastApp()
    ds, sp, _, _, arrays, _ = app.prepare(cfg)
    changes = data.future_changes(ds, sp.train, cfg.horizon, ["dewp", "pres"])
    si, t = sp.train[5]
    v = ds.series[si].values
    np.testing.assert_allclose(changes[5], v[t + 1 : t + 4, 1:3] - v[t, 1:3], rtol=1e-6)
    assert arrays["aux"]["columns"] == ["dewp", "pres"]
    np.testing.assert_allclose(arrays["aux"]["train"].reshape(-1, 2).std(0), [1, 1], rtol=1e-4)
    assert arrays["aux"]["val"].shape == (len(arrays["val"][0]), cfg.horizon, 2)

    app.train(cfg, tmp_path / "m")
    model = keras.saving.load_model(tmp_path / "m" / "model.keras", compile=False)
    assert len(model.outputs) == 1 and tuple(model.outputs[0].shape[1:]) == (cfg.horizon, 3)
    assert "aux_head" not in [layer.name for layer in model.layers]
    final = json.loads((tmp_path / "m" / "evaluation.json").read_text())["training"]["final"]
    assert final["aux_loss"] > 0 and "val_quantiles_loss" in final
    assert "also predict the changes of DEWP,pres" in (tmp_path / "m" / "MODEL_CARD.md").read_text()

    for bad, message in (("temp", "other than the target 'temp'"), ("wind", r"\['wind'\] must be distinct")):
        with pytest.raises(ValueError, match=message):
            app.train(dataclasses.replace(cfg, aux_targets=bad), tmp_path / "bad")
    with pytest.raises(ValueError, match="aux_targets .* is for generic mode"):
        app.train(cfg_for(write_csv(tmp_path / "p.csv", gbm(200)), aux_targets="volume"), tmp_path / "bad")
    with pytest.raises(ValueError, match="aux_weight must be >= 0"):
        app.train(dataclasses.replace(cfg, aux_weight=-1.0), tmp_path / "bad")
    for bad in ({"loss_last_horizons": cfg.horizon + 1}, {"loss_last_horizons": 1, "loss_other_weight": 0.0}):
        with pytest.raises(ValueError, match="loss_last_horizons must be in .* loss_other_weight in"):
            app.train(dataclasses.replace(cfg, **bad), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()

    # loss weights towards the last horizons reach the compiled loss, a moving average of the weights the
    # optimizer, and the card says so
    focus = dataclasses.replace(cfg, aux_targets="", loss_last_horizons=1, loss_other_weight=0.5, epochs=1, ema=0.9)
    _, _, spec, quantiles, arrays, _ = app.prepare(focus)
    network, _ = app.fit_network(focus, spec, quantiles, arrays, 0, tmp_path / "focus-run")
    assert network.loss.horizon_weights == pytest.approx([0.75, 0.75, 1.5])
    assert network.optimizer.use_ema and network.optimizer.ema_momentum == pytest.approx(0.9)
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    card = model_card(meta, focus)
    assert "weighted 1 on the last 1 horizons and 0.5 on the others" in card
    assert "keeping a moving average of the weights (momentum 0.9)" in card


def test_bidirectional_network_reads_the_window_both_ways_and_exports(tmp_path):
    """`bidirectional: true` wraps each RNN in `keras.layers.Bidirectional` (a forward and a backward
    `seqapps.layers` RNN, final states concatenated); the saved model, SavedModel and builtin-op TFLite
    agree with it, and the model card says so."""
    import keras

    from seqapps.forecast import model as model_lib
    from seqapps.forecast.app import ForecastApp

    cfg = dataclasses.replace(tiny(), bidirectional=True, num_layers=2)
    model = model_lib.build_model(cfg, 16, 3, (0.1, 0.5, 0.9))
    wrapped = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert [layer.name for layer in wrapped] == ["birnn_0", "birnn_1"]
    assert wrapped[0].output.shape[-1] == 2 * cfg.units and wrapped[0].backward_layer.go_backwards

    csv = write_csv(tmp_path / "p.csv", gbm(300))
    cfg = cfg_for(csv, bidirectional=True, arima_windows=0, backtest_max_windows=20)
    ForecastApp().train(cfg, tmp_path / "m")
    out = tmp_path / "m"
    loaded = keras.saving.load_model(out / "model.keras", compile=False)
    assert isinstance(loaded.get_layer("birnn_0"), keras.layers.Bidirectional)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["saved_model"]["plain_tensorflow_max_abs_diff"] < 1e-3
    r = meta["tflite"]["float32"]
    assert r["max_rel_diff"] < 1e-2 and not any("Flex" in op for op in r["ops"])
    assert "bidirectional GRU" in (out / "MODEL_CARD.md").read_text()


def test_ridge_fit_recovers_a_linear_map_and_blend_moves_quantiles_together():
    import keras

    from seqapps.forecast import model as model_lib

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4, 3)).astype("float32")
    true = rng.normal(size=(12, 2))
    y = x.reshape(500, -1) @ true + np.array([0.5, -1.0])
    kernel, bias = model_lib.fit_ridge(x, y, l2=0.0)
    np.testing.assert_allclose(kernel, true, atol=1e-4)
    np.testing.assert_allclose(bias, [0.5, -1.0], atol=1e-4)

    inputs = keras.Input((4, 3))
    flat = keras.layers.Flatten()(inputs)
    zero = keras.layers.Dense(6, kernel_initializer="zeros", bias_initializer="zeros")(flat)
    net = keras.Model(inputs, model_lib.MonotoneQuantiles(2, 3)(zero))  # quantiles 0, 1, 2
    blended = model_lib.with_linear_blend(net, kernel, bias, weight=0.5, median_index=1)
    q, b = net.predict(x[:5], verbose=0), blended.predict(x[:5], verbose=0)
    shift = 0.5 * (x[:5].reshape(5, -1) @ kernel + bias - q[:, :, 1])
    np.testing.assert_allclose(b, q + shift[..., None], rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(b, axis=-1) > 0)
    assert not blended.get_layer("ridge").trainable


def test_dynamic_range_tflite_keeps_the_ridge_forecast_in_float():
    """FrozenLinear multiplies in blocks of < 1,024 weights, which the dynamic-range quantizer leaves float:
    its TFLite output matches Keras; the same weights in one Dense layer are rounded to int8."""
    import keras
    import tensorflow as tf

    from seqapps.export.saved_model import KerasModule
    from seqapps.forecast import model as model_lib

    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(720, 24)).astype("float32"), rng.normal(size=24).astype("float32")
    x = rng.normal(size=(1, 720)).astype("float32")

    def dynamic(layer):
        inp = keras.Input((720,), batch_size=1)
        model = keras.Model(inp, layer(inp))
        layer.set_weights([kernel, bias])
        module = KerasModule(model)
        module.fn = tf.function(lambda w: {"y": model(w)}, input_signature=[tf.TensorSpec([1, 720])])
        blob = tflite.convert_module(module, {"serving_default": module.fn.get_concrete_function()}, "dynamic")
        return np.array(tflite.run(tflite.interpreter(blob), "serving_default", w=x)["y"]), model(x).numpy()

    got, keras_out = dynamic(model_lib.FrozenLinear(24))
    np.testing.assert_allclose(keras_out, x @ kernel + bias, rtol=1e-4, atol=1e-3)
    assert np.abs(got - keras_out).max() < 1e-3
    got, keras_out = dynamic(keras.layers.Dense(24))
    assert np.abs(got - keras_out).max() > 0.05  # what the blocks prevent


def test_round_median_rounds_the_point_forecast_and_keeps_quantiles_ordered():
    import tensorflow as tf

    q = tf.constant([[[2.9, 3.4, 3.6], [1.2, 1.6, 2.0], [3.45, 3.49, 3.7], [-2.7, -2.6, -2.2]]], tf.float32)
    out = features.round_median(q, 1.0, 1).numpy()[0]
    np.testing.assert_allclose(out[:, 1], [3, 2, 3, -3])
    np.testing.assert_allclose(out[:, 0], [2.9, 1.2, 3.0, -3.0], rtol=1e-6)  # clipped where it would cross
    np.testing.assert_allclose(out[:, 2], [3.6, 2.0, 3.7, -2.2], rtol=1e-6)
    assert np.all(np.diff(out, axis=-1) >= 0)
    np.testing.assert_allclose(features.round_median(q, 0.5, 1).numpy()[0, :, 1], [3.5, 1.5, 3.5, -2.5])


def _integer_temperatures(tmp_path, n=400, fractional=False):
    rng = np.random.default_rng(3)
    i = np.arange(n)
    temp = 10 + 6 * np.sin(2 * np.pi * i / 24) + np.cumsum(rng.normal(0, 0.3, n))
    temp = temp if fractional else np.round(temp)
    lines = [
        f"2014,{1 + (k // 24) // 28},{1 + (k // 24) % 28},{k % 24},{t:.2f},{1000 + (k % 11)}" for k, t in zip(i, temp)
    ]
    p = write_csv(tmp_path / "w.csv", lines, header="year,month,day,hour,TEMP,PRES")
    return cfg_for(
        p,
        mode="generic",
        time_column="year,month,day,hour",
        target="temp",
        features="pres",
        calendar="hour",
        season=24,
        arima_windows=0,
        target_step=1.0,
    )


def test_target_step_rounds_the_served_median_and_rejects_data_off_its_grid(tmp_path):
    """`target_step: 1` (a target recorded in whole units): the SavedModel and the builtin-op TFLite model
    give whole-unit medians with the other quantiles on either side; data off the grid, or prices, fail."""
    import tensorflow as tf

    from seqapps.export import saved_model
    from seqapps.forecast.app import ForecastApp

    app = ForecastApp()
    cfg = _integer_temperatures(tmp_path)
    app.train(cfg, tmp_path / "m")
    out = tmp_path / "m"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["feature_spec"]["target_step"] == 1.0 and meta["feature_spec"]["median_index"] == 1
    assert meta["calendar_values"] == {"hour": "0-23, the hour of the day"}  # what a client puts in that column
    assert "`hour` is 0-23, the hour of the day" in (out / "MODEL_CARD.md").read_text()
    windows = np.load(out / "assets" / "sample_windows.npy")
    fn = tf.saved_model.load(str(saved_model.latest(out))).signatures["serving_default"]
    q = fn(window=tf.constant(windows))["quantiles"].numpy()
    np.testing.assert_array_equal(q[..., 1], np.round(q[..., 1]))
    assert np.all(np.diff(q, axis=-1) >= 0) and not np.array_equal(q[..., 0], np.round(q[..., 0]))
    r = meta["tflite"]["float32"]
    assert r["max_abs_diff"] < 1e-3 and not any("Flex" in op for op in r["ops"]) and "FLOOR" in r["ops"]
    assert "rounded to a multiple of 1" in (out / "MODEL_CARD.md").read_text()
    with pytest.raises(ValueError, match="differs from the 1 this model was trained with"):
        app.export(out, tmp_path / "again", cfg=dataclasses.replace(cfg, target_step=0.0))
    assert not (tmp_path / "again").exists()
    with pytest.raises(ValueError, match="target_step are fixed by the trained model"):
        app.evaluate(out, target_step="0")

    with pytest.raises(ValueError, match=r"target_step=1: w: 'temp' at 2014-01-0.* is .*, off that grid \("):
        app.prepare(_integer_temperatures(tmp_path, fractional=True))
    with pytest.raises(ValueError, match="generic .* set target_step=0"):
        app.prepare(cfg_for(write_csv(tmp_path / "p.csv", gbm(100)), target_step=0.01))
    with pytest.raises(ValueError, match="target_step must be >= 0"):
        app.prepare(dataclasses.replace(cfg, target_step=-1.0))


def test_quantile_and_config_validation():
    from seqapps.forecast.app import parse_quantiles

    assert parse_quantiles("0.9, 0.1,0.5") == [0.1, 0.5, 0.9]
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        parse_quantiles("0.5,1.2")
    with pytest.raises(ValueError, match=r"quantiles=0.05,0.25,0.75,0.95: add 0.1,0.5,0.9. The median"):
        parse_quantiles("0.05,0.25,0.75,0.95")
    assert parse_quantiles("0.05,0.1,0.5,0.9,0.95") == [0.05, 0.1, 0.5, 0.9, 0.95]
    with pytest.raises(data.DataError, match="calendar"):
        data.column_plan(ForecastConfig(calendar="weekday"), "generic")
    from seqapps.forecast.app import _check_cfg

    for bad in ({"bootstrap": -1}, {"bootstrap_block": -2}):
        with pytest.raises(ValueError, match="bootstrap .* must be >= 0"):
            _check_cfg(ForecastConfig(**bad))
    with pytest.raises(ValueError, match="mixed_precision=mixed_float16: forecast trains in float32"):
        _check_cfg(ForecastConfig(mixed_precision="mixed_float16"))


def test_notebook_runs(trained):
    from tests.notebooks_util import ROOT, execute_notebook

    # from the repository root, not notebooks/: the notebook finds the shipped models from either
    env = {"FORECAST_MODEL_DIR": str(trained[0] / "model")}
    nb = execute_notebook("forecast.ipynb", env=env, cwd=ROOT)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "origins, MSFT 2012" in text and "80% interval coverage by horizon" in text
    # the backtest plot of both shipped models, each with its MAE ratio
    assert "forecast: model MAE / naive MAE at 5 steps" in text and "weather: model MAE / naive MAE at 24" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4


def test_weather_linear_baseline_recovers_a_linear_signal_and_checks_columns(tmp_path):
    from seqapps.experiments import weather_linear as wl

    n = 24 * 365 * 5
    rng = np.random.default_rng(0)
    hours = np.arange(n)
    years = 2010 + hours // (24 * 365)
    dewp = rng.normal(size=n).cumsum() * 0.1
    temp = np.roll(dewp, wl.HORIZON)  # temperature 24 h later is today's dew point: learnable exactly
    cols = {c: rng.normal(size=n) for c in wl.BASE}
    cols.update(TEMP=temp, DEWP=dewp, year=years.astype(float))
    mae, naive, windows = wl.ridge_mae(cols, ["TEMP", "DEWP"], lam=1e-6)
    assert windows == int((years[wl.WINDOW - 1 : n - wl.HORIZON] == 2014).sum())
    assert mae < 0.05 * naive
    for name in ("hour_sin", "hour_cos", "doy_sin", "doy_cos"):
        cols[name] = np.zeros(n)
    tree_mae, tree_naive, tree_windows = wl.boosted_trees_mae(cols, ["TEMP", "DEWP"])
    assert (tree_naive, tree_windows) == (naive, windows) and tree_mae < 0.3 * naive  # trees: close, not exact
    # the trees' summary of a window: lags from the last row, 3- and season-row changes, last-season stats
    w = np.arange(2 * 72, dtype=float).reshape(2, 72, 1) ** 2  # row r of window 0 holds r^2
    w = np.concatenate([w, np.full((2, 72, 1), 6.0)], 2)  # a calendar column: hour 6 of 24
    f = wl.summary_features(w, [0], [(1, 24)])
    last = 71.0**2
    assert f.shape == (2, len(wl.LAGS) + 5 + 2)
    assert f[0, : len(wl.LAGS)].tolist() == [(71.0 - lag) ** 2 for lag in wl.LAGS]
    assert f[0, len(wl.LAGS) : len(wl.LAGS) + 2].tolist() == [last - 68.0**2, last - 47.0**2]
    day = np.arange(48, 72) ** 2.0
    assert f[0, len(wl.LAGS) + 2 : len(wl.LAGS) + 5] == pytest.approx([day.mean(), day.min(), day.max()])
    assert f[0, -2:] == pytest.approx([1.0, 0.0])  # sin, cos of 6 h
    short = wl.summary_features(w[:, -8:], [0], season=24)  # lags, changes and stats clipped to 8 rows
    assert short.shape == (2, 5 + 2 + 3) and short[0, 5] == last - 68.0**2 and short[0, 6] == last - 64.0**2
    with pytest.raises(ValueError, match="at least 2 rows"):
        wl.summary_features(w[:, -1:], [0])
    bad = tmp_path / "bad.csv"
    bad.write_text("year,month,day,hour,TEMP\n2010,1,1,0,3\n")
    with pytest.raises(ValueError, match="expected the Beijing PM2.5 columns"):
        wl.load(bad)


def test_weather_sweep_scores_variants_on_the_dev_year_and_reuses_finished_networks(tmp_path, capsys, monkeypatch):
    """`weather_sweep` drops the rows after the development year, tests on that year, prints one row per
    variant plus all networks together, keeps each network's forecasts, and refuses a folder whose networks
    were trained with other settings."""
    from seqapps.experiments import weather_sweep
    from seqapps.forecast.app import ForecastApp

    days = np.arange(np.datetime64("2010-01-01"), np.datetime64("2014-01-01"))
    rng = np.random.default_rng(0)
    temp = 10 * np.sin(2 * np.pi * np.arange(len(days)) / 365.25) + rng.normal(0, 1, len(days)).cumsum() * 0.3
    temp = np.round(temp)  # recorded in whole degrees
    lines = [f"{d},{t:.1f},{1000 + 5 * np.cos(i / 9):.2f}" for i, (d, t) in enumerate(zip(days, temp))]
    csv = write_csv(tmp_path / "daily.csv", lines, header="Date,TEMP,PRES")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {csv}\nmode: generic\ntarget: TEMP\nfeatures: PRES\nwindow: 16\nhorizon: 3\nseason: 7\n"
        "units: 8\nepochs: 1\npatience: 0\nbatch_size: 64\narima_windows: 0\n"
    )
    out = tmp_path / "sweep"
    argv = ["--config", str(config), "--dev-year", "2012", "--seeds", "1,2", "--out", str(out)]
    argv += ["--variant", "plain=", "--variant", "small=units:4"]
    assert weather_sweep.main(argv) == 0
    text = capsys.readouterr().out
    assert "364 windows of 2012" in text  # origins 2011-12-31 .. 2012-12-28: 2013 rows are gone
    assert sorted(p.name for p in (out / "small").glob("seed*.npy")) == ["seed1.npy", "seed2.npy"]
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in table] == ["| plain", "| small", "| all 4 networks"]
    # the "average" column is the mean of the kept forecasts, scored against the seasonal naive
    ds = data.load(cfg_for(csv, mode="generic", target="TEMP", features="PRES", window=16, horizon=3))
    t = ds.series[0].target
    first = int(np.searchsorted(ds.series[0].times, np.datetime64("2012-01-01")))
    origins = np.arange(first - 1, first - 1 + 364)
    y, naive = t[origins + 3], np.abs(t[origins + 3 - 7] - t[origins + 3]).mean()
    avg = np.mean([np.load(out / "plain" / f"seed{s}.npy") for s in (1, 2)], 0)
    assert f"| {100 * (1 - np.abs(avg - y).mean() / naive):.1f}% |" in table[0]

    monkeypatch.setattr(ForecastApp, "fit_network", lambda *a, **k: pytest.fail("a finished network was retrained"))
    assert weather_sweep.main(argv) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:] == table
    # under the table: each row's last column against the first row's, a ratio of MAEs with a paired interval
    assert weather_sweep.main([*argv, "--blend", "0"]) == 0
    text = capsys.readouterr().out
    assert "Last column's MAE / that of 'plain' on the same windows" in text and "blocks of 49 origins" in text
    small = np.mean([np.load(out / "small" / f"seed{s}.npy") for s in (1, 2)], 0)
    ratio = np.abs(small - y).sum() / np.abs(avg - y).sum()
    line = [row for row in text.splitlines() if row.startswith("  small: ")][0]
    assert line.startswith(f"  small: {ratio:.4f} (")
    lo, hi = (float(v) for v in line.split("(")[1].rstrip(")").split("-"))
    assert lo <= ratio <= hi and lo < hi
    assert text.splitlines()[-1].startswith("  all 4 networks: ")
    same = weather_sweep.paired_intervals([("a", avg), ("b", avg.copy())], y, origins, 49)
    assert same.splitlines()[-1] == "  b: 1.0000 (1.0000-1.0000)"
    # target_step rounds the scored forecasts as the saved model rounds its median; the networks are reused
    assert weather_sweep.main([*argv, "--set", "target_step=1"]) == 0
    text = capsys.readouterr().out
    assert "rounded to multiples of target_step=1" in text
    row = [line for line in text.splitlines() if line.startswith("| plain")][0]
    assert f"| {100 * (1 - np.abs(np.floor(avg + 0.5) - y).mean() / naive):.1f}% |" in row
    assert weather_sweep.lower_mae([0.4, 1.6, -2.6], np.array([0.0, 2.0, -3.0]), 1.0, step=1) == 100
    assert weather_sweep.lower_mae([0.4, 1.6, -2.6], np.array([0.0, 2.0, -3.0]), 1.0) == pytest.approx(60)
    with pytest.raises(SystemExit):
        weather_sweep.main([*argv, "--set", "dropout=0.3"])
    assert "holds networks trained with other settings (dropout)" in capsys.readouterr().err
    # networks kept before an option existed still match while it is at its default (and only then)
    kept = out / "plain" / "config.yaml"
    kept.write_text("".join(line for line in kept.read_text().splitlines(True) if not line.startswith("lr_plateau:")))
    assert weather_sweep.main(argv) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:] == table
    with pytest.raises(SystemExit):
        weather_sweep.main([*argv, "--set", "lr_plateau=2"])
    assert "(lr_plateau)" in capsys.readouterr().err
    # --trees: boosted trees as a third model, in an extra column; the kept networks are reused
    assert weather_sweep.main([*argv, "--blend", "0.25", "--trees", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "| + ridge x0.25 + trees x0.3 |" in text
    trees = float(text.split("boosted trees alone ")[1].split("%")[0])
    assert trees > 20  # a random walk: the trees learn persistence, far better than the value 7 days back
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[:3] for r in rows] == [r.split(" | ")[:3] for r in table]  # same networks, averages
    assert all(len(r.split(" | ")) == len(t.split(" | ")) + 1 for r, t in zip(rows, table))
    # the trees' forecast is the origin's value plus their predicted change: trees that predict no change
    # score as persistence, against the same targets, and enter the blend at their weight
    from seqapps.experiments import weather_linear

    labels = []
    monkeypatch.setattr(weather_linear, "fit_boosted_trees", lambda x, y, seeds: labels.append(y) or [])
    monkeypatch.setattr(weather_linear, "predict_trees", lambda models, x: np.zeros(len(x)))
    assert weather_sweep.main([*argv[:-2], "--blend", "0", "--trees", "0.3"]) == 0
    text = capsys.readouterr().out
    persistence = t[origins]
    assert f"boosted trees alone {100 * (1 - np.abs(persistence - y).mean() / naive):.1f}%" in text
    blend = 0.7 * avg + 0.3 * persistence
    assert text.splitlines()[-1].endswith(f"| {100 * (1 - np.abs(blend - y).mean() / naive):.1f}% |")
    # trained on the changes 3 days ahead of every window before 2012 (one window per day, none of 2012)
    np.testing.assert_allclose(labels[0], t[18:first] - t[15 : first - 3])  # origins 15 .. first - 4
    with pytest.raises(SystemExit):
        weather_sweep.main([*argv, "--blend", "0.8", "--trees", "0.3"])
    assert "--trees must be in [0, 1 - --blend]" in capsys.readouterr().err
    assert weather_sweep.parse_variant("aux=aux_targets:dewp,pres,aux_weight:1") == (
        "aux",
        ["aux_targets=dewp,pres", "aux_weight=1"],
    )
    with pytest.raises(SystemExit):
        weather_sweep.main([*argv[:-4], "--variant", "units:4"])
    assert "expected NAME=key:value" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # another horizon scores other targets: not comparable in one table
        weather_sweep.main([*argv[:-4], "--variant", "plain=", "--variant", "h2=horizon:2"])
    assert "'h2' changes the test windows or targets" in capsys.readouterr().err
