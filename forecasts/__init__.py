"""Signals: the pure forecasting kernel (typed series, clocks, cron, models, backtests).

`forecasts.sources` is the I/O edge; everything else in this package is pure.
"""

__all__: list[str] = []
