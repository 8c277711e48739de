"""Configuration of the forecasting app (flat keys: each one can be overridden with ``--set key=value``)."""

from __future__ import annotations

import dataclasses

from seqapps.config import TrainConfig


@dataclasses.dataclass
class ForecastConfig(TrainConfig):
    # ---- data
    data: str = "default"  # "default" (pmdarima MSFT daily OHLCV, offline), a CSV file, or a folder of CSV files
    mode: str = "auto"  # "ohlcv" (prices: log returns, volatility scaling), "generic" (levels), "auto" (from columns)
    time_column: str = "date"  # one column, or several to compose ("year,month,day,hour"); case-insensitive
    target: str = "close"  # column to forecast (case-insensitive); for "ohlcv" it must be a price > 0
    features: str = (
        ""  # generic mode: extra input columns, comma-separated (ohlcv mode uses open/high/low/close/volume)
    )
    calendar: str = ""  # calendar fields derived from the time column: hour, dayofweek, dayofyear, month
    missing: str = "error"  # NA/empty cells: "error" (names file, row, column) or "ffill" (forward fill, counted)
    unsorted: str = "error"  # unsorted dates: "error" or "sort"
    # dates that are not year first (01.02.2020): "dmy" (day first), "mdy" (month first), or "auto": whichever
    # reads every date of the column, an error when both do (no day above 12)
    date_order: str = "auto"
    # numbers in tab-separated files: "auto" (a comma is decimal where no number says otherwise), "comma" (3,25)
    # or "point" (1,234.5); ';'-separated files use decimal commas unless "point" is set
    decimal: str = "auto"
    bad_series: str = "error"  # folder data: a file that fails validation: "error" or "skip" (listed in metadata)
    max_series: int = 0  # folder data: use at most this many files (sorted by name); 0 = all
    # ---- windows and splits
    window: int = 60  # input rows per example
    horizon: int = 5  # steps ahead, 1..horizon
    quantiles: str = "0.1,0.5,0.9"
    vol_window: int = 20  # ohlcv: returns used for the volatility scale (last rows of the window)
    split: str = "time"  # "time" (one timeline: train < val < test) or "series" (held-out files, plus test_start)
    test_start: str = ""  # first origin date of the test split (e.g. 2019-01-01); "" = last test_fraction of time
    train_stride: int = 1  # step between training window origins
    season: int = 5  # seasonal-naive period in rows (5 = a trading week, 24 = a day of hourly data)
    # ---- model
    cell: str = "gru"  # gru, lstm or rnn (seqapps.layers)
    units: int = 32
    num_layers: int = 1
    bidirectional: bool = False  # each RNN also reads the window backwards (outputs concatenated)
    dropout: float = 0.1
    ensemble: int = 1  # members trained with seeds seed, seed+1, ...; the saved model averages their quantiles
    # 0..1: blend a ridge forecast into the median: the quantiles move by linear_blend x (ridge - median); the
    # ridge regression of the scaled targets on the flattened window is solved on the training windows
    # (ridge_l2: its L2 penalty). 0 = off
    linear_blend: float = 0.0
    ridge_l2: float = 10.0
    # generic mode: input columns (comma-separated) whose changes over the next 1..horizon rows the networks
    # also learn to predict while training (a second head on the hidden layer, MAE on the changes divided by
    # their training std, weighted aux_weight against the pinball loss). The head is dropped from the saved
    # model: serving is unchanged. "" = off
    aux_targets: str = ""
    aux_weight: float = 0.5
    # generic mode: the step the target is recorded in (1 = whole units, e.g. the Beijing station's whole
    # degrees). > 0: the saved model rounds its median to a multiple of it (the median of a quantity recorded
    # in whole steps is a whole step, so this lowers the expected absolute error) and clips the other quantiles
    # so that none crosses it. Training targets off that grid are an error. 0 = off
    target_step: float = 0.0
    # the pinball loss weighs the last loss_last_horizons horizons 1 and the others loss_other_weight
    # (weights scaled to mean 1): training that cares most about the far end of the horizon. 0 = all alike
    loss_last_horizons: int = 0
    loss_other_weight: float = 0.2
    # ---- backtest
    backtest_step: int = 1  # rows between rolling origins in the test split
    backtest_max_windows: int = 0  # 0 = all origins
    arima_windows: int = 100  # ARIMA (pmdarima auto_arima) on this many evenly spaced windows; 0 = skip
    arima_history: int = 250  # rows of history ARIMA and drift are fitted on at each origin
    # 90% intervals for the model's MAE / each baseline's MAE: circular block bootstrap over the test origins with
    # this many resamples (0 = off) and blocks of bootstrap_block consecutive origin times (0 = the origins in 7 x
    # season rows: a week of hourly data, seven weeks of trading days), so that errors correlated over days stay in
    # one block
    bootstrap: int = 1000
    bootstrap_block: int = 0
    # ---- training
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 2e-3
    patience: int = 4
    run_dir: str = ""  # checkpoints, TensorBoard logs, history; "" = <out>/run
    max_val_examples: int = 20000  # validation windows used for early stopping (evenly spaced); 0 = all
    tflite_eval_windows: int = 64  # windows used for TFLite parity
    # also write model_int8.tflite (int8 network, float feature engineering; calibrated on training windows).
    # Off by default: on trained/forecast it moves the median forecast by 1.0% of the price (median over the
    # parity windows), twenty times the model's own predicted move (README, "Forecasting").
    tflite_int8: bool = False


def tiny() -> ForecastConfig:
    return ForecastConfig(
        window=16,
        horizon=3,
        vol_window=8,
        units=8,
        epochs=2,
        batch_size=64,
        dropout=0.0,
        arima_windows=3,
        arima_history=60,
        backtest_max_windows=60,
        verbose=0,
        patience=0,
        tflite_eval_windows=10,
    )
