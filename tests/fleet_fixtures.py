"""Small synthetic fleets built in the test, never from ../shared."""
from __future__ import annotations

import numpy as np
import pandas as pd


def make_grid(n_servers: int = 3, days: float = 2.0, seed: int = 0, start="2026-01-05T00:00:00Z") -> pd.DataFrame:
    """A clean 5-minute grid frame (as engine.contract.to_grid returns) with daily cycles."""
    rng = np.random.default_rng(seed)
    n = int(days * 288)
    ts = pd.date_range(start, periods=n, freq="5min", tz="UTC")
    day = np.arange(n) / 288.0
    frames = []
    for i in range(n_servers):
        phase = rng.uniform(0, 2 * np.pi)
        f = pd.DataFrame({
            "server_name": f"srv-{i:02d}",
            "timestamp": ts,
            "cpu_percent": np.clip(40 + 20 * np.sin(2 * np.pi * day + phase) + rng.normal(0, 3, n), 0, 100),
            "memory_percent": np.clip(60 + 5 * np.sin(2 * np.pi * day) + rng.normal(0, 1, n), 0, 100),
            "disk_percent": np.clip(30 + 2 * day + rng.normal(0, 0.2, n), 0, 100),
            "load_average": np.clip(2 + np.sin(2 * np.pi * day + phase) + rng.normal(0, 0.2, n), 0, None),
            "profile": ["web", "database", "batch"][i % 3],
        })
        f["filled"] = False
        f["segment"] = 0
        frames.append(f)
    return pd.concat(frames, ignore_index=True)
