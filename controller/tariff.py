"""Time-of-use prices at epoch times, from the site's local tariff periods."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from youxu.controller.siteconfig import TariffSection


def tariff_fn(tariff: TariffSection, tz: ZoneInfo):
    """A function epoch seconds -> (import, export) prices, honouring the site's time zone."""

    def prices(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t_s, dtype=float)
        # the UTC offset of each quarter hour: zones change clocks at :00 or :30 past a UTC hour (Lord Howe)
        quarters = np.floor(t / 900.0).astype(np.int64)
        uniq, inv = np.unique(quarters, return_inverse=True)
        offsets = np.array([datetime.fromtimestamp(q * 900, tz).utcoffset().total_seconds() for q in uniq])
        local_min = ((t + offsets[inv]) % 86400.0) // 60.0
        return tariff.prices_at(local_min)

    return prices
