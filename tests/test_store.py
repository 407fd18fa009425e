"""Window store: ring buffers, right-aligned fleet windows, the contract's cadence rules."""
from __future__ import annotations

import numpy as np
import pytest
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


def test_bulk_load_matches_appending_one_by_one_with_gaps_repeats_and_known_servers():
    """extend_frame writes clean runs of new servers in one step and leaves the rest to
    append: every kind of run gives what appending sample by sample gives, in the same order."""
    ts = pd.date_range("2026-01-05", periods=30, freq="5min", tz="UTC")
    parts = []

    def server(name, times, profile="web"):
        n = len(times)
        parts.append(pd.DataFrame({"server_name": name, "timestamp": list(times), "cpu_percent": np.arange(n) * 1.5,
                                   "memory_percent": 40.0, "disk_percent": 50.0, "load_average": 0.25,
                                   "profile": profile}))

    server("known", ts[10:])                                  # already has samples: appended
    server("clean", ts)                                       # new, consecutive: one step
    server("gap", list(ts[:10]) + list(ts[12:]))              # a short gap: filled by append
    server("repeat", list(ts[:5]) + [ts[4] + pd.Timedelta("1min")] + list(ts[5:]))   # two samples in a step
    server("one", ts[:1], profile="db")                       # a single sample
    server("late", ts[3:], profile="")                        # no profile
    server("short", ts[:5])                                   # new, fewer samples than the window holds
    frame = pd.concat(parts, ignore_index=True)
    stores = [WindowStore(capacity=8), WindowStore(capacity=8)]
    for st in stores:
        st.append("known", int(ts[9].timestamp()), [1, 2, 3, 4], "cache")
    assert stores[0].extend_frame(frame) == []
    for r in frame.itertuples():
        stores[1].append(r.server_name, int(r.timestamp.timestamp()),
                         [r.cpu_percent, r.memory_percent, r.disk_percent, r.load_average], r.profile)
    a, b = (st.windows() for st in stores)
    assert a.names == b.names == ["known", "clean", "gap", "repeat", "one", "late", "short"]
    valid = np.arange(8)[None, :] >= (8 - b.lengths)[:, None]
    np.testing.assert_array_equal(a.values[valid], b.values[valid])
    for field in ("lengths", "last_epoch", "filled"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.profiles == b.profiles
    for st in stores:                                         # both go on the same way
        assert st.append("clean", int((ts[-1] + pd.Timedelta("5min")).timestamp()), [9, 9, 9, 9]) is None
        assert st.append("short", int(ts[5].timestamp()), [7, 7, 7, 7]) is None
    for name in ("clean", "short"):
        x, y = stores[0].windows([name]), stores[1].windows([name])
        n = int(y.lengths[0])
        np.testing.assert_array_equal(x.values[0, -n:], y.values[0, -n:])
        assert int(x.lengths[0]) == n


def _gathered(store: WindowStore, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The windows by one plain gather (the definition the sliced reads must equal)."""
    cap = store.capacity
    idx = (store._head[slots, None] + np.arange(cap)[None, :]) % cap
    lengths = store._len[slots]
    valid = np.arange(cap)[None, :] >= (cap - lengths)[:, None]
    return store._buf[slots[:, None], idx], (store._filled[slots[:, None], idx] & valid).sum(axis=1)


@pytest.mark.parametrize("servers", [5, 60])     # few distinct ring heads (slices), many (a gather)
def test_windows_equal_a_plain_gather_whatever_the_ring_heads(servers):
    rng = np.random.default_rng(servers)
    store = WindowStore(capacity=48)
    for i in range(servers):          # each server its own number of samples: its own head
        start = int(rng.integers(0, 5))
        for k in range(start, start + 3 + i):
            if rng.random() < 0.9:                      # some steps missing: filled gaps
                store.append(f"s{i}", T0 + 300 * k, rng.random(4) * 100)
    w = store.windows()
    values, filled = _gathered(store, np.arange(servers))
    np.testing.assert_array_equal(w.values, values)
    np.testing.assert_array_equal(w.filled, filled)
    some = store.windows(names=[f"s{i}" for i in range(0, servers, 3)])
    values, filled = _gathered(store, np.arange(0, servers, 3))
    np.testing.assert_array_equal(some.values, values)
    np.testing.assert_array_equal(some.filled, filled)
    heads = len(np.unique(store._head[:servers]))
    assert heads > 32 if servers > 32 else heads <= 32       # both ways of reading are covered


def test_a_sample_without_a_profile_keeps_the_known_one_and_an_unsorted_frame_loses_nothing():
    from engine.contract import UNKNOWN_PROFILE

    store = WindowStore(capacity=10)
    store.append("a", T0, [1, 2, 3, 0.1], "web")
    store.append("a", T0 + 300, [1, 2, 3, 0.1], UNKNOWN_PROFILE)
    assert store.windows().profiles == ["web"]
    store.append("a", T0 + 600, [1, 2, 3, 0.1], "db")
    assert store.windows().profiles == ["db"]
    # a frame with a later run first: every row is kept (was: the earlier rows refused as older)
    times = pd.to_datetime([T0 + 300 * k for k in (3, 4, 0, 1, 2)], unit="s", utc=True)
    frame = pd.DataFrame({"server_name": "b", "timestamp": times, "cpu_percent": [4.0, 5.0, 1.0, 2.0, 3.0],
                          "memory_percent": 1.0, "disk_percent": 1.0, "load_average": 1.0, "profile": UNKNOWN_PROFILE})
    fresh = WindowStore(capacity=10)
    assert fresh.extend_frame(frame) == []
    w = fresh.windows()
    assert w.lengths[0] == 5 and list(w.values[0, -5:, 0]) == [1, 2, 3, 4, 5]


def test_forget_drops_only_the_long_silent_servers_and_keeps_the_rest_intact():
    store = WindowStore(capacity=12)
    store.set_cores("b", 8)
    for k in range(20):
        for name in ("a", "b", "c"):
            if name == "b" and k >= 5:          # b goes silent after five samples
                continue
            store.append(name, T0 + 300 * k, [k, k + 1, k + 2, k + 3] if name == "a" else [50, 50, 50, 1])
    before = store.windows(names=["a", "c"])
    assert store.forget(T0 + 300 * 5) == ["b"]
    assert store.names == ["a", "c"] and store.last_epoch("b") is None
    after = store.windows()
    assert after.names == ["a", "c"]
    np.testing.assert_array_equal(after.values, before.values)
    np.testing.assert_array_equal(after.lengths, before.lengths)
    assert store.forget(T0 + 300 * 5) == []
    # the kept servers go on as before; the forgotten one starts afresh, its cores still known
    assert store.append("a", T0 + 300 * 20, [1, 2, 3, 4]) is None
    assert store.windows(names=["a"]).values[0, -1].tolist() == [1, 2, 3, 4]
    assert store.append("b", T0 + 300 * 21, [10, 20, 30, 1]) is None
    w = store.windows(names=["b"])
    assert (w.lengths[0], w.cores[0]) == (1, 8)


def test_the_same_sample_again_is_refused_not_averaged_in_twice():
    """A retried POST repeats its samples: averaging them in again would skew the step."""
    store = WindowStore(capacity=12)
    assert store.append("a", T0 + 60, [10, 10, 10, 1]) is None
    assert store.append("a", T0 + 60, [10, 10, 10, 1]) is None              # a retry: a no-op
    assert store.windows().values[0, -1, 0] == 10.0 and store._count[0] == 1
    again = store.append("a", T0 + 60, [90, 90, 90, 1])
    assert again is not None and "is not newer than the newest accepted" in again
    assert store.append("a", T0 + 30, [90, 90, 90, 1]) is not None          # older, inside the step
    assert store.append("a", T0 + 120, [30, 30, 30, 1]) is None             # newer: averaged
    assert store.windows().values[0, -1, 0] == 20.0
    # the bulk load remembers the exact time too
    bulk = WindowStore(capacity=12)
    bulk.extend_frame(pd.DataFrame({"server_name": ["b"] * 3,
                                    "timestamp": pd.to_datetime([T0, T0 + 300, T0 + 600], unit="s", utc=True),
                                    "cpu_percent": [1.0, 2, 3], "memory_percent": [1.0, 2, 3],
                                    "disk_percent": [1.0, 2, 3], "load_average": [1.0, 2, 3]}))
    assert bulk.append("b", T0 + 600, [9, 9, 9, 9]) is not None
