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


def write_fleet(directory, frame: pd.DataFrame, heldout_from: str | None = None,
                heldout_servers: list[str] | None = None) -> None:
    """Write a grid frame as a tft-top data directory (fleet.csv [+ split.json])."""
    import json
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = frame.drop(columns=[c for c in ("filled", "segment") if c in frame])
    out.assign(timestamp=out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(directory / "fleet.csv", index=False)
    if heldout_from is not None:
        (directory / "split.json").write_text(json.dumps(
            {"heldout_from": heldout_from, "heldout_servers": heldout_servers or []}))


def train_tiny_model(root, epochs: int = 1, batches: int = 3, workers: int = 0, ramp_share: float | None = None,
                     incidents: pd.DataFrame | None = None, ramp_kinds: dict[str, float] | None = None,
                     day_ago: bool = False, days: float = 2.5):
    """Train a tiny TFT for a few batches on a 4-server synthetic fleet (~5 s); returns its directory.
    (2.5 days: the evaluation at the end scores origins with two days of history before them.)"""
    from pathlib import Path

    from engine.tft_model import ModelConfig
    from engine.training import TrainOptions, train

    root = Path(root)
    heldout_from = pd.Timestamp("2026-01-05T00:00:00Z") + pd.Timedelta(days=days) - pd.Timedelta(hours=8)
    write_fleet(root / "data", make_grid(n_servers=4, days=days), heldout_from.strftime("%Y-%m-%dT%H:%M:%SZ"),
                ["srv-03"])
    if incidents is not None:
        incidents.to_csv(root / "data" / "incidents.csv", index=False)
    config = ModelConfig(max_encoder_length=48, min_encoder_length=12, max_prediction_length=12,
                         hidden_size=8, attention_head_size=1, hidden_continuous_size=4, day_ago=day_ago)
    opts = TrainOptions(data=[str(root / "data")], out=str(root / "models"), epochs=epochs,
                        batches_per_epoch=batches, batch_size=16, val_days=0.25, calib_every=6,
                        config=config, progress=False, workers=workers, ramp_share=ramp_share,
                        ramp_kinds=ramp_kinds)
    return train(opts)
