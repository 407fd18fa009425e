"""A model that reads the same time yesterday: the frame's day-ago columns, the library
path's scaling of them (DayAgoDataSet), FastTFT's parity with that path, the forecaster's
longer windows, and the warm start from a model without these inputs."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from engine.contract import METRICS
from engine.evaluation import stock_predict
from engine.fast_tft import FastTFT
from engine.tft_model import (DAY_KNOWN, DAY_STEPS, LoadedModel, ModelConfig, build_dataset, build_model,
                              day_ago_feature, load_model_dir, prepare_frame, read_config)
from fleet_fixtures import make_grid, train_tiny_model


@pytest.fixture(scope="module")
def day_model(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = train_tiny_model(tmp_path_factory.mktemp("day_model"), day_ago=True, days=3.0)
        yield load_model_dir(path), make_grid(n_servers=4, days=3.0)
    finally:
        torch.set_num_threads(before)       # later tests run as they would alone


def test_day_ago_columns_by_hand():
    grid = make_grid(n_servers=2, days=1.5)
    # a second segment (after a long gap) is a series of its own: younger than a day again
    grid.loc[(grid["server_name"] == "srv-01") & (grid.index % 432 >= 300), "segment"] = 1
    frame = prepare_frame(grid)
    for (server, segment), part in frame.groupby(["server_name", "segment"]):
        cpu = part["cpu_percent"].to_numpy()
        lag = part[day_ago_feature("cpu_percent")].to_numpy()
        known = part[DAY_KNOWN].to_numpy()
        n = len(part)
        assert (known[:DAY_STEPS] == 0).all() and (known[DAY_STEPS:] == 1).all()
        assert (lag[:DAY_STEPS] == cpu[0]).all()                 # younger than a day: the first value
        np.testing.assert_array_equal(lag[DAY_STEPS:], cpu[:n - DAY_STEPS])
    # rows in any order give the same columns (the lookup is by series and time, not by row)
    shuffled = prepare_frame(grid.sample(frac=1.0, random_state=0)).sort_values(["series", "time_idx"])
    np.testing.assert_array_equal(shuffled[day_ago_feature("load_average")].to_numpy(),
                                  frame.sort_values(["series", "time_idx"])[day_ago_feature("load_average")].to_numpy())


def test_library_path_scales_them_as_the_target():
    config = ModelConfig(max_encoder_length=48, min_encoder_length=12, max_prediction_length=12,
                         hidden_size=8, attention_head_size=1, hidden_continuous_size=4, day_ago=True)
    frame = prepare_frame(make_grid(n_servers=1, days=2.0))
    ds = build_dataset(config, frame)
    x, _ = ds[350]          # a window whose day-ago values all exist
    start = int(x["encoder_time_idx_start"]) - int(frame["time_idx"].iloc[0])
    for j, m in enumerate(config.targets):
        center, scale = (float(v) for v in x["target_scale"][j])
        raw = frame[m].to_numpy(dtype=np.float32)[start - DAY_STEPS:start - DAY_STEPS + len(x["x_cont"])]
        got = x["x_cont"][:, ds.reals.index(day_ago_feature(m))].numpy()
        np.testing.assert_allclose(got * scale + center, raw, rtol=1e-5, atol=1e-4)
        assert abs(got).max() > 0.1          # really scaled values, not zeros
    assert x["x_cont"][:, ds.reals.index(DAY_KNOWN)].min() == 1.0


def test_config_round_trip_and_old_configs(day_model):
    loaded, _ = day_model
    data = json.loads((loaded.model_dir / "config.json").read_text())
    assert data["features"]["day_ago"] is True
    assert day_ago_feature("cpu_percent") in data["features"]["time_varying_known_reals"]
    assert read_config(loaded.model_dir).history_length == 48 + DAY_STEPS
    del data["features"]["day_ago"]                       # a config.json from before: no day-ago inputs
    assert ModelConfig.from_json(data).day_ago is False
    assert ModelConfig.from_json(data).history_length == 48
    with pytest.raises(ValueError):
        ModelConfig(max_prediction_length=DAY_STEPS + 1, day_ago=True)


# (encoder length, origin position, first row of the window's series): the series starts at
# the first row given, so the day-ago values are all there, partly there, or none
WINDOWS = [(48, 600, 0), (48, 400, 0), (48, 330, 0), (30, 300, 270), (48, 360, 300), (12, 500, 488), (48, 700, 380)]


def _windows(loaded, grid):
    config = loaded.config
    W, H = config.history_length, config.max_prediction_length
    rows = grid[grid["server_name"] == "srv-00"].reset_index(drop=True)
    n = len(WINDOWS)
    values = np.full((n, W, len(METRICS)), np.nan)
    lengths = np.empty(n, dtype=np.int64)
    last = np.empty(n, dtype=np.int64)
    parts, origins = [], []
    for i, (enc, o, first) in enumerate(WINDOWS):
        # the library takes the longest encoder it can: cut the series' start to give `enc`
        part = rows.iloc[first:o + H + 1].copy()
        name = f"d{i}"
        part["server_name"] = name
        parts.append(part)
        origins.append((f"{name}#0", name, int(rows["timestamp"].iloc[o].value // 10**9 // 300)))
        hist = min(o - first, W)
        values[i, W - hist:] = rows[list(METRICS)].to_numpy()[o - hist:o]
        lengths[i] = hist
        last[i] = rows["timestamp"].iloc[o - 1].value // 10**9
    prepared = prepare_frame(pd.concat(parts, ignore_index=True))
    origins = pd.DataFrame(origins, columns=["series", "server_name", "origin_idx"])
    index = build_dataset(config, prepared).decoded_index
    for (series, _, o), (enc, _, _) in zip(origins.itertuples(index=False), WINDOWS):
        hits = index[(index["series"] == series) & (index["time_idx_first_prediction"] == o)]
        assert list(hits["time_idx_first_prediction"] - hits["time_idx_first"]) == [enc], series
    return prepared, origins, values, lengths, last, ["web"] * n


@pytest.mark.parametrize("scrambled", [False, True])
def test_fast_path_matches_the_library_path(day_model, scrambled):
    loaded, grid = day_model
    if scrambled:       # large random weights: inputs off by a step or a scale could hide in a barely trained model
        model = copy.deepcopy(loaded.model)
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
        loaded = LoadedModel(model=model.eval(), config=loaded.config, model_dir=loaded.model_dir, metadata={})
    prepared, origins, values, lengths, last, profiles = _windows(loaded, grid)
    stock = stock_predict(loaded, prepared, origins)
    # batches of 3 and all at once mix windows (the folded variable selection's per-value path);
    # one window per batch is aligned with itself (its one-row path, day_ago_known included)
    for kwargs in (dict(batch_size=3), dict(batch_size=1024), dict(batch_size=1), dict(batch_size=3, on_device=True)):
        out = FastTFT(loaded, **kwargs).predict(values, lengths, last, profiles)
        for m in loaded.config.targets:
            np.testing.assert_allclose(out.raw[m], stock[m], rtol=1e-4, atol=1e-5, err_msg=f"{m} {kwargs}")
    # the inputs matter: yesterday's values changed, the forecast changes
    changed = values.copy()
    changed[:, :DAY_STEPS] += 10.0
    other = FastTFT(loaded, batch_size=3).predict(changed, lengths, last, profiles)
    assert np.abs(other.raw["cpu_percent"][:3] - out.raw["cpu_percent"][:3]).max() > 1e-3
    # (windows 3-5 have less than a day before their encoder ends)


def test_windows_of_the_wrong_length_are_refused(day_model):
    loaded, _ = day_model
    fast = FastTFT(loaded)
    with pytest.raises(ValueError, match=f"\\(n, {48 + DAY_STEPS}, 4\\)"):
        fast.predict(np.zeros((1, 48, 4)), np.array([48]), np.array([0]), ["web"])


def test_forecaster_reads_a_day_more(day_model, tmp_path):
    from engine.forecaster import Forecaster
    from engine.store import WindowStore

    loaded, grid = day_model
    forecaster = Forecaster(loaded.model_dir, device="cpu")
    forecaster.load()
    assert forecaster.loaded and forecaster.capacity == 48 + DAY_STEPS
    store = WindowStore(capacity=forecaster.capacity)
    store.extend_frame(grid[grid["timestamp"] < grid["timestamp"].min() + pd.Timedelta(days=2)])
    fc = forecaster.forecast(store.windows())
    assert fc.source == ["tft"] * 4
    windows = store.windows()
    direct = FastTFT(loaded).predict(windows.values, windows.lengths, windows.last_epoch, windows.profiles)
    np.testing.assert_allclose(fc.quantiles["cpu_percent"], direct.quantiles["cpu_percent"])
    # a store narrower than the model's history (24 h): still the model, with yesterday unknown
    narrow = WindowStore(capacity=288)
    narrow.extend_frame(grid)
    fc = forecaster.forecast(narrow.windows())
    assert fc.source == ["tft"] * 4
    assert np.isfinite(fc.quantiles["cpu_percent"]).all()


def test_warm_start_keeps_what_the_new_inputs_leave_unchanged(tiny_model_dir):
    from engine.training import warm_start_partial

    old = load_model_dir(tiny_model_dir)
    new_config = ModelConfig(**{**old.config.__dict__, "day_ago": True})
    model = build_model(new_config)
    kept, fresh = warm_start_partial(model, old.model)
    assert kept > 0 and fresh
    assert all(k.startswith(("encoder_variable_selection.", "decoder_variable_selection.", "prescalers.")) for k in fresh), fresh
    own, theirs = model.state_dict(), old.model.state_dict()
    assert torch.equal(own["lstm_encoder.weight_ih_l0"], theirs["lstm_encoder.weight_ih_l0"])
    assert any(day_ago_feature("cpu_percent") in k for k in fresh)


def test_engine_backfills_the_day_the_model_reads(day_model, tmp_path):
    from engine.runtime import Engine
    from engine.sources import ReplaySource
    from fleet_fixtures import write_fleet

    loaded, grid = day_model
    write_fleet(tmp_path / "fleet", grid, "2026-01-07T12:00:00Z")       # 2.5 days before the replay
    engine = Engine(ReplaySource(tmp_path / "fleet"), loaded.model_dir, device="cpu")
    engine.start()
    windows = engine.store.windows()
    # the default backfill is 24 h; this model reads 48 + 288 steps (28 h)
    assert (windows.lengths == loaded.config.history_length).all()
    snap = engine.tick()
    assert snap.metadata["model_type"] == "TFT"
    # the drill-down and the daemon's history still show the last 24 h
    epochs, values = engine.history(windows.names[0])
    assert len(epochs) == 288 and len(values["cpu_percent"]) == 288 and np.all(np.diff(epochs) == 300)
