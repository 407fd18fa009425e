"""Window store: ring buffers, right-aligned fleet windows, the contract's cadence rules."""
from __future__ import annotations

import numpy as np
import pandas as pd

from engine.store import WindowStore

T0 = int(pd.Timestamp("2026-01-05T00:00:00Z").timestamp())


def test_windows_are_right_aligned_and_keep_the_last_capacity_samples():
    store = WindowStore(capacity=4)
    for k in range(6):
        assert store.append("a", T0 + 300 * k, [k, 10 + k, 20 + k, k / 10]) is None
    store.append("b", T0, [1, 2, 3, 0.5])
    w = store.windows()
    assert w.names == ["a", "b"]
    assert list(w.lengths) == [4, 1]
    assert list(w.values[0, :, 0]) == [2, 3, 4, 5]          # oldest .. newest
    assert list(w.values[1, -1]) == [1, 2, 3, 0.5]
    assert w.last_epoch[0] == T0 + 300 * 5


def test_short_gap_is_filled_linearly_and_marked():
    store = WindowStore(capacity=10)
    store.append("a", T0, [10, 0, 0, 0])
    store.append("a", T0 + 300 * 3, [40, 0, 0, 0])          # two steps missing
    w = store.windows()
    assert w.lengths[0] == 4
    assert list(w.values[0, -4:, 0]) == [10, 20, 30, 40]
    assert w.filled[0] == 2


def test_long_gap_breaks_the_window():
    store = WindowStore(capacity=10, max_fill_steps=6)
    store.append("a", T0, [10, 0, 0, 0])
    store.append("a", T0 + 300, [11, 0, 0, 0])
    store.append("a", T0 + 300 * 9, [50, 0, 0, 0])          # seven steps missing
    w = store.windows()
    assert w.lengths[0] == 1 and w.values[0, -1, 0] == 50


def test_older_sample_is_refused_and_nothing_is_lost():
    store = WindowStore(capacity=10)
    store.append("a", T0 + 600, [10, 0, 0, 0])
    reason = store.append("a", T0, [99, 0, 0, 0])
    assert reason is not None and "older than the newest accepted" in reason and reason.startswith("a:")
    w = store.windows()
    assert w.lengths[0] == 1 and w.values[0, -1, 0] == 10


def test_samples_within_one_step_are_averaged():
    store = WindowStore(capacity=10)
    store.append("a", T0, [10, 0, 0, 0])
    store.append("a", T0 + 60, [20, 0, 0, 0])
    store.append("a", T0 + 120, [60, 0, 0, 0])
    w = store.windows()
    assert w.lengths[0] == 1 and np.isclose(w.values[0, -1, 0], 30.0)


def test_extend_frame_matches_appending_one_by_one():
    ts = pd.date_range("2026-01-05", periods=20, freq="5min", tz="UTC")
    frame = pd.DataFrame({"server_name": ["a"] * 20 + ["b"] * 20, "timestamp": list(ts) * 2,
                          "cpu_percent": np.arange(40.0), "memory_percent": 1.0, "disk_percent": 2.0,
                          "load_average": 0.5, "profile": ["web"] * 20 + ["db"] * 20})
    bulk = WindowStore(capacity=8)
    assert bulk.extend_frame(frame) == []
    single = WindowStore(capacity=8)
    for r in frame.itertuples():
        single.append(r.server_name, int(r.timestamp.timestamp()), [r.cpu_percent, 1.0, 2.0, 0.5], r.profile)
    a, b = bulk.windows(), single.windows()
    np.testing.assert_array_equal(a.values, b.values)
    assert a.profiles == ["web", "db"] and list(a.lengths) == [8, 8]
