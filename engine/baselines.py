"""The two baselines every forecast is scored against.

- **seasonal-naive**: the value at the same time yesterday (288 steps back); its band is
  the point plus the 10th/90th percentile of the day-over-day changes seen over the
  last day of history.
- **linear trend**: a least-squares line over the last 6 hours extrapolated forward,
  as Prometheus' ``predict_linear`` does; its band is the point plus the 10th/90th
  percentile of the fit's residuals.

Both return quantile arrays of shape (horizon, len(quantiles)), clipped to the
metric's valid range.  Evaluation then orders each step's quantiles as it does the TFT's
(p10 <= p50 <= p90, ``engine.calibration.apply_calibration``): when the day's changes all
have one sign (a filling disk), the band's one side is the point itself.
"""
from __future__ import annotations

import numpy as np

SEASON = 288          # one day of 5-minute steps
TREND_WINDOW = 72     # six hours
MIN_RESIDUALS = 12


def _band(point: np.ndarray, residuals: np.ndarray, quantiles) -> np.ndarray:
    out = np.empty((len(point), len(quantiles)))
    for j, q in enumerate(quantiles):
        if q == 0.5 or len(residuals) < MIN_RESIDUALS:
            out[:, j] = point
        else:
            out[:, j] = point + np.quantile(residuals, q)
    return out


def seasonal_naive(history: np.ndarray, horizon: int, quantiles=(0.1, 0.5, 0.9),
                   season: int = SEASON) -> np.ndarray:
    history = np.asarray(history, dtype=np.float64)
    n = len(history)
    if n >= season:
        idx = n - season + (np.arange(horizon) % season)
        point = history[idx]
        lagged = np.arange(max(season, n - season), n)
        residuals = history[lagged] - history[lagged - season]
    else:  # less than a day of history: repeat the last value
        point = np.full(horizon, history[-1] if n else 0.0)
        residuals = np.diff(history)
    return _band(point, residuals, quantiles)


def linear_trend(history: np.ndarray, horizon: int, quantiles=(0.1, 0.5, 0.9),
                 window: int = TREND_WINDOW) -> np.ndarray:
    y = np.asarray(history, dtype=np.float64)[-window:]
    n = len(y)
    if n < 2:
        point = np.full(horizon, y[-1] if n else 0.0)
        return _band(point, np.zeros(0), quantiles)
    x = np.arange(n, dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    point = intercept + slope * np.arange(n, n + horizon)
    residuals = y - (intercept + slope * x)
    return _band(point, residuals, quantiles)


BASELINES = {"seasonal_naive": seasonal_naive, "linear_trend": linear_trend}
