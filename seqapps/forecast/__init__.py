"""Probabilistic multi-horizon forecasting (stock prices and other time series) with a recurrent encoder."""
