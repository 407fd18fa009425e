"""Model directory: a tiny TFT trains in seconds, saves, reloads bit-identically, and bad
directories are refused with a one-line reason."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from engine.tft_model import (CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE, ModelLoadError,
                              build_dataset, find_latest_model, load_model_dir, prepare_frame, stamp_fingerprint)
from fleet_fixtures import make_grid, train_tiny_model


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    return tiny_model_dir, make_grid(n_servers=4, days=2.0)


def _batch(config, frame):
    ds = build_dataset(config, prepare_frame(frame), predict=True)
    x, _ = next(iter(ds.to_dataloader(train=False, batch_size=8, num_workers=0)))
    return x


def test_training_writes_the_three_files(trained):
    model_dir, _ = trained
    assert model_dir.name.startswith("tft_model_")
    assert {p.name for p in model_dir.iterdir()} == {WEIGHTS_FILE, CONFIG_FILE, METADATA_FILE}
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    assert meta["servers"] == ["srv-00", "srv-01", "srv-02"]      # srv-03 is held out
    assert meta["training_seconds"] > 0 and meta["parameters"] > 0
    assert 0 < meta["data_seconds"] < meta["training_seconds"]       # the preparation part of it
    # the shape eval --record writes: datasets and targets (alerts are not scored by train)
    assert meta["evaluation"]["datasets"][0]["results"]["heldout"]["cpu_percent"]["tft"]["windows"] > 0
    assert "cells" in meta["evaluation"]["targets"] and meta["evaluation"]["alerts_skipped"] is True
    assert meta["training_steps"] == meta["epochs"] * meta["batches_per_epoch"]
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    assert config["calibration"]["lower"]["cpu_percent"]
    assert config["categorical_vocabularies"]["profile"] == ["batch", "database", "unknown", "web"]
    assert find_latest_model(model_dir.parent) == model_dir
    assert meta["best_val_loss"] is not None and 0 <= meta["weights_from_epoch"] <= meta["epochs"]


@pytest.mark.slow
def test_training_with_data_loader_workers(tmp_path):
    """`--workers N` (made for GPU machines, where batches made in the training process
    starve the GPU): worker processes build the batches and the model still trains."""
    from fleet_fixtures import train_tiny_model

    model_dir = train_tiny_model(tmp_path, workers=1)
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    assert meta["data_loader_workers"] == 1
    assert meta["losses"]["final_val_loss"] is not None
    load_model_dir(model_dir)


def _ramp(server="srv-01", start="2026-01-05T12:00:00Z", crossing="2026-01-05T14:00:00Z"):
    import pandas as pd

    return pd.DataFrame({"server_name": [server], "kind": ["memory_leak"], "metric": ["memory_percent"],
                         "start": [pd.Timestamp(start)], "crossing": [pd.Timestamp(crossing)],
                         "end": [pd.Timestamp(crossing) + pd.Timedelta(hours=1)], "threshold": [95.0]})


def test_ramp_windows_are_those_forecasting_from_inside_a_labelled_ramp():
    """`train --ramp-share S`: a window counts as a ramp window when its first forecast step
    lies from 15 min after a labelled incident's start to its crossing, on that server only;
    ramp windows together get a share S of the sampler's weight."""
    import numpy as np
    import pandas as pd

    from engine.tft_model import ModelConfig, build_dataset, prepare_frame
    from engine.training import ramp_sample_weights
    from fleet_fixtures import make_grid

    config = ModelConfig(max_encoder_length=48, min_encoder_length=12, max_prediction_length=12,
                         hidden_size=8, attention_head_size=1, hidden_continuous_size=4)
    rows = prepare_frame(make_grid(n_servers=3, days=2.0))
    ds = build_dataset(config, rows)
    ramp = _ramp()
    weights, n = ramp_sample_weights(ds, rows, ramp, 0.25)
    index = ds.decoded_index
    first = pd.to_datetime(index["time_idx_first_prediction"] * 300, unit="s", utc=True)
    server = rows.groupby("series")["server_name"].first().reindex(index["series"]).to_numpy()
    expected = ((server == "srv-01") & (first >= ramp["start"][0] + pd.Timedelta(minutes=15))
                & (first <= ramp["crossing"][0])).to_numpy()
    assert n == expected.sum() == 22                      # 12:15 .. 14:00, every 5 minutes
    is_ramp = weights > 1.0
    assert np.array_equal(is_ramp, expected)
    assert weights[is_ramp].sum() / weights.sum() == pytest.approx(0.25)
    assert np.all(weights[~is_ramp] == 1.0)
    # kinds: a second ramp on srv-02 of another kind, drawn 4x as often per window; the
    # ramp windows keep their share together
    two = pd.concat([ramp.assign(kind="memory_leak"),
                     ramp.assign(kind="cpu_runaway", server_name="srv-02")], ignore_index=True)
    weighted, n2 = ramp_sample_weights(ds, rows, two, 0.25, {"cpu_runaway": 4.0})
    assert n2 == 44
    on1, on2 = weighted[expected], weighted[(server == "srv-02") & (weighted > 1)]
    assert len(on2) == 22 and np.allclose(on2, 4 * on1)
    assert weighted[weighted > 1].sum() / weighted.sum() == pytest.approx(0.25)
    plain, _ = ramp_sample_weights(ds, rows, two, 0.25)       # no kinds: every ramp window alike
    assert np.allclose(plain[plain > 1], plain[plain > 1][0])
    with pytest.raises(ValueError):
        ramp_sample_weights(ds, rows, two, 0.25, {"cpu_runaway": 0.0})
    # no labelled incidents: uniform weights
    none, n0 = ramp_sample_weights(ds, rows, ramp.iloc[:0], 0.25)
    assert n0 == 0 and np.all(none == 1.0)
    with pytest.raises(ValueError):
        ramp_sample_weights(ds, rows, ramp, 1.0)


def test_every_origin_is_drawn_alike_whatever_its_encoder_length_copies():
    """At a series' end the library offers one window per encoder length for the same
    forecast steps; training weights each by 1 / copies, so each origin's total weight is 1,
    and the ramp share still holds on top of those weights."""
    import numpy as np
    import pandas as pd

    from engine.tft_model import ModelConfig, build_dataset, prepare_frame
    from engine.training import origin_weights, ramp_sample_weights
    from fleet_fixtures import make_grid

    config = ModelConfig(max_encoder_length=48, min_encoder_length=12, max_prediction_length=12,
                         hidden_size=8, attention_head_size=1, hidden_continuous_size=4)
    rows = prepare_frame(make_grid(n_servers=3, days=2.0))
    ds = build_dataset(config, rows)
    index = ds.decoded_index
    w = origin_weights(index)
    per_origin = pd.Series(w).groupby([index["series"].to_numpy(), index["time_idx_first_prediction"].to_numpy()]).sum()
    assert np.allclose(per_origin.to_numpy(), 1.0)
    last = index.groupby("series")["time_idx_first_prediction"].transform("max").to_numpy()
    at_end = index["time_idx_first_prediction"].to_numpy() == last
    assert at_end.sum() == 3 * (48 - 12 + 1)                   # one copy per encoder length 12..48
    assert np.allclose(w[at_end], 1 / 37) and np.all(w[~at_end] == 1.0)
    weights, n = ramp_sample_weights(ds, rows, _ramp(), 0.25, base=w)
    is_ramp = weights != w
    assert n == is_ramp.sum() == 22
    assert weights[is_ramp].sum() / weights.sum() == pytest.approx(0.25)
    with pytest.raises(ValueError):
        ramp_sample_weights(ds, rows, _ramp(), 0.25, base=w[:-1])


def test_window_sampler_draws_by_weight_from_any_number_of_windows():
    """torch's WeightedRandomSampler refuses more than 2^24 windows (~3,200 servers at 21
    days); the training sampler draws by weight from any number, seeded."""
    import numpy as np

    from engine.training import WindowSampler

    w = np.array([0.0, 1.0, 3.0])
    sampler = WindowSampler(w, 40000, seed=1)
    draws = np.array(list(sampler))
    assert len(sampler) == len(draws) == 40000 and set(draws.tolist()) <= {1, 2}
    assert abs((draws == 2).mean() - 0.75) < 0.01
    assert list(WindowSampler(w, 50, 7)) == list(WindowSampler(w, 50, 7))
    assert list(sampler) != list(sampler)                    # a new draw every epoch
    big = list(WindowSampler(np.ones(2**24 + 1), 1000))
    assert max(big) <= 2**24 and len(set(big)) > 990
    # drawn a chunk at a time (an epoch's list at once grew with --batches-per-epoch: ~15 GB
    # at 10^7), the draws are those of one call: a seed's run is the run it was
    n = 3 * WindowSampler.CHUNK + 5
    once = np.searchsorted(np.cumsum(w / w.sum()), np.random.default_rng(3).random(n), side="right")
    sampler = WindowSampler(w, n, seed=3)
    lazy = iter(sampler)
    assert next(lazy) == once[0]
    ahead = np.random.default_rng(3)
    ahead.random(WindowSampler.CHUNK)                     # one chunk drawn so far, not the epoch
    state = sampler.rng.bit_generator.state
    assert sampler.rng.random() == ahead.random()
    sampler.rng.bit_generator.state = state
    assert list(lazy) == once[1:].tolist()
    for bad in (np.zeros(3), np.array([1.0, np.nan]), np.array([1.0, -1.0])):
        with pytest.raises(ValueError):
            WindowSampler(bad, 10)


def test_training_draws_its_batches_by_origin_weights(tmp_path, monkeypatch):
    import numpy as np

    import engine.training as training
    from fleet_fixtures import train_tiny_model

    seen = []

    class Spy(training.WindowSampler):
        def __init__(self, weights, num_samples, seed=0):
            seen.append((np.asarray(weights).copy(), num_samples))
            super().__init__(weights, num_samples, seed)

    monkeypatch.setattr(training, "WindowSampler", Spy)
    train_tiny_model(tmp_path, batches=3)
    (weights, draws), = seen
    assert draws == 3 * 16                                   # batches per epoch x batch size
    assert weights.min() == pytest.approx(1 / 37) and weights.max() == 1.0   # 37 copies at each end


def test_early_stopping_and_calibration_never_score_the_same_steps():
    """The validation days split at their midpoint: early-stopping forecasts end before it,
    calibration origins start at it (alternating origins every 2 h shared most steps)."""
    import pandas as pd

    from engine.tft_model import ModelConfig, prepare_frame
    from engine.training import _validation_origins
    from fleet_fixtures import make_grid

    config = ModelConfig(max_encoder_length=48, min_encoder_length=12, max_prediction_length=12,
                         hidden_size=8, attention_head_size=1, hidden_continuous_size=4)
    grid = make_grid(n_servers=2, days=3.0)
    rows = prepare_frame(grid)
    servers = sorted(grid["server_name"].unique())
    val_start = pd.Series(grid["timestamp"].max() - pd.Timedelta(days=1), index=servers)
    stop, calib = _validation_origins(rows, val_start, config, every=6)
    assert len(stop) and len(calib)
    for series in rows["series"].unique():
        s = stop[stop["series"] == series]["origin_idx"]
        c = calib[calib["series"] == series]["origin_idx"]
        assert len(s) and len(c)
        assert s.max() + config.max_prediction_length <= c.min()
        v0 = int(val_start.iloc[0].timestamp()) // 300
        assert s.min() >= v0


def test_training_draws_ramp_windows_when_asked(tmp_path):
    from fleet_fixtures import train_tiny_model

    model_dir = train_tiny_model(tmp_path, ramp_share=0.3, incidents=_ramp(), ramp_kinds={"memory_leak": 2.0})
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    assert meta["ramp_share"] == 0.3 and meta["ramp_kinds"] == {"memory_leak": 2.0}
    assert meta["ramp_windows"] > 0
    load_model_dir(model_dir)


def test_ramp_kinds_naming_a_kind_the_labels_lack_is_refused(tmp_path):
    """A typo in --ramp-kinds must not silently train with uniform ramp weights."""
    from engine.contract import DataError
    from fleet_fixtures import train_tiny_model

    with pytest.raises(DataError, match=r"no labelled incident of kind 'cpu_runway'.*kinds there: memory_leak"):
        train_tiny_model(tmp_path, ramp_share=0.3, incidents=_ramp(), ramp_kinds={"cpu_runway": 4.0})


def test_a_broken_warm_start_is_refused_before_the_data_is_read(tmp_path, monkeypatch):
    """Reading the shipped model's four data sets takes minutes: a typo in --init-from was
    only said after them."""
    import engine.training as training
    from engine.training import TrainOptions

    def no(*a, **kw):
        raise AssertionError("the data was read first")

    monkeypatch.setattr(training, "_prepare_sources", no)
    with pytest.raises(ModelLoadError):
        training.train(TrainOptions(data=[str(tmp_path)], out=str(tmp_path / "m"), init_from=str(tmp_path / "typo")))


def test_ramp_share_without_any_labelled_incidents_says_so(tmp_path):
    from engine.contract import DataError

    with pytest.raises(DataError, match="no labelled incidents: none of the --data has an incidents.csv"):
        train_tiny_model(tmp_path, ramp_share=0.3)


def test_patience_running_out_in_the_last_epoch_is_no_early_stop(tmp_path, monkeypatch, capsys):
    """EarlyStopping sets stopped_epoch when patience runs out, in the last epoch too: that
    run used every epoch it was given and must not say it stopped early."""
    from lightning.pytorch import callbacks

    class OutOfPatienceAtTheEnd(callbacks.EarlyStopping):
        def on_validation_end(self, trainer, pl_module):
            if trainer.current_epoch == trainer.max_epochs - 1:
                self.stopped_epoch, trainer.should_stop = trainer.current_epoch, True

    monkeypatch.setattr(callbacks, "EarlyStopping", OutOfPatienceAtTheEnd)
    meta = load_model_dir(train_tiny_model(tmp_path, epochs=2)).metadata
    assert meta["epochs"] == 2 and meta["early_stopped"] is False
    assert "(ran its 2 epoch(s))" in capsys.readouterr().out


def test_training_keeps_the_weights_of_the_best_validation_epoch():
    """EarlyStopping only stops; the weights written are those of the lowest val_loss."""
    from types import SimpleNamespace

    from engine.training import best_weights_callback

    module = torch.nn.Linear(2, 2)
    cb = best_weights_callback()
    trainer = SimpleNamespace(sanity_checking=True, current_epoch=0, callback_metrics={"val_loss": torch.tensor(0.1)})
    cb.on_validation_end(trainer, module)            # the sanity check does not count
    assert cb.best is None
    trainer.sanity_checking = False
    snapshots = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, float("nan")]):
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        trainer.current_epoch = epoch
        trainer.callback_metrics = {"val_loss": torch.tensor(loss)}
        cb.on_validation_end(trainer, module)
        snapshots.append(module.weight.detach().clone())
    assert (cb.best, cb.best_epoch) == (2.0, 1)
    cb.on_fit_end(trainer, module)
    assert torch.equal(module.weight, snapshots[1])  # epoch 1's weights are back


def test_reload_gives_bit_identical_outputs_without_training_data(trained, tmp_path):
    model_dir, frame = trained
    a = load_model_dir(model_dir)
    b = load_model_dir(model_dir)   # rebuilt from config.json alone
    x = _batch(a.config, frame)
    with torch.inference_mode():
        pa = a.model(x)["prediction"]
        pb = b.model(x)["prediction"]
    for ta, tb in zip(pa, pb):
        assert torch.equal(ta, tb)
    assert not a.model.training


def test_missing_files_are_refused(trained, tmp_path):
    model_dir, _ = trained
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        broken = tmp_path / name.replace(".", "_")
        shutil.copytree(model_dir, broken)
        (broken / name).unlink()
        with pytest.raises(ModelLoadError, match=f"{name}: missing"):
            load_model_dir(broken)
    with pytest.raises(ModelLoadError, match="no such model directory"):
        load_model_dir(tmp_path / "nope")


def test_corrupt_weights_are_refused(trained, tmp_path):
    model_dir, _ = trained
    broken = tmp_path / "corrupt"
    shutil.copytree(model_dir, broken)
    (broken / WEIGHTS_FILE).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="corrupt weights file") as info:
        load_model_dir(broken)
    assert "\n" not in str(info.value)


def test_flipped_bytes_in_the_tensors_are_refused_by_their_checksum(trained, tmp_path):
    from engine.tft_model import TENSORS_KEY, _recorded

    model_dir, _ = trained
    assert TENSORS_KEY in _recorded(model_dir / WEIGHTS_FILE)       # written with every new model
    broken = tmp_path / "flipped"
    shutil.copytree(model_dir, broken)
    raw = bytearray((broken / WEIGHTS_FILE).read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")                   # past the header: tensor bytes
    for i in range(start + 100, start + 140):
        raw[i] ^= 0x5A
    (broken / WEIGHTS_FILE).write_bytes(bytes(raw))
    with pytest.raises(ModelLoadError) as info:
        load_model_dir(broken)
    assert str(info.value) == (f"{broken / WEIGHTS_FILE}: corrupt weights file (its tensors do not match "
                               "the checksum stored with them)")


def test_the_shipped_model_carries_its_tensors_checksum():
    from pathlib import Path

    from engine.tft_model import TENSORS_KEY, _recorded, find_latest_model

    shipped = find_latest_model(Path(__file__).resolve().parents[1] / "models")
    assert shipped is not None and TENSORS_KEY in _recorded(shipped / WEIGHTS_FILE)


def test_unreadable_weights_say_so_not_corrupt_or_missing(trained, tmp_path, monkeypatch):
    import builtins

    import engine.tft_model as tm

    model_dir, _ = trained
    real_open = builtins.open

    def guarded(file, *args, **kwargs):    # (chmod 000 does not stop root, who runs CI)
        if str(file).endswith(WEIGHTS_FILE):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(tm, "open", guarded, raising=False)
    with pytest.raises(ModelLoadError) as info:
        load_model_dir(model_dir)
    assert str(info.value) == f"{model_dir / WEIGHTS_FILE}: cannot read (Permission denied)"


def test_config_that_does_not_match_the_weights_is_refused(trained, tmp_path):
    model_dir, _ = trained
    broken = tmp_path / "mismatch"
    shutil.copytree(model_dir, broken)
    cfg = json.loads((broken / CONFIG_FILE).read_text())
    cfg["hyperparameters"]["hidden_size"] = 16
    (broken / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not match the weights"):
        load_model_dir(broken)


def test_bad_config_json_is_refused(trained, tmp_path):
    model_dir, _ = trained
    good = json.loads((model_dir / CONFIG_FILE).read_text())
    del good["hyperparameters"]
    for text, reason in (("{not json", "not valid JSON"), ('{"format": "other"}', "format is 'other'"),
                         ('{"format": "tft-top-model", "format_version": 99}', "format_version 99"),
                         (json.dumps(good), "missing or invalid field")):
        broken = tmp_path / f"bad{abs(hash(text))}"
        shutil.copytree(model_dir, broken)
        (broken / CONFIG_FILE).write_text(text)
        with pytest.raises(ModelLoadError, match=reason) as exc:
            load_model_dir(broken)
        # each reason names the model directory: the badge and `eval` say which model it is
        assert str(exc.value).startswith(str(broken / CONFIG_FILE)), exc.value


def test_normaliser_centre_round_trips_and_an_unknown_one_is_refused(trained, tmp_path):
    model_dir, _ = trained
    cfg = json.loads((model_dir / CONFIG_FILE).read_text())
    assert load_model_dir(model_dir).config.normalizer_center == cfg["normalizer"]["center"] == "last"
    for value, ok in (("mean", True), (None, True), ("median", False)):
        other = tmp_path / f"centre-{value}"
        shutil.copytree(model_dir, other)
        edited = json.loads(json.dumps(cfg))
        if value is None:          # config.json written before the option: the library's mean
            del edited["normalizer"]["center"]
        else:
            edited["normalizer"]["center"] = value
        (other / CONFIG_FILE).write_text(json.dumps(edited))
        if ok:
            # the weights were trained centred on the last value: the fingerprint refuses the edit...
            with pytest.raises(ModelLoadError, match="does not match the weights"):
                load_model_dir(other)
            # ...and a weights file without the stamps (not written by tft-top) is refused
            # before a tensor is read, whatever its config says
            from safetensors.torch import load_file, save_file

            save_file(load_file(str(other / WEIGHTS_FILE)), str(other / WEIGHTS_FILE))
            with pytest.raises(ModelLoadError, match="it carries no config fingerprint \\(tft-top train writes both"):
                load_model_dir(other)
            # stamped for the edited config (stamp_fingerprint: what the config says is taken
            # as the truth), it loads what its config says
            stamp_fingerprint(other)
            assert load_model_dir(other).config.normalizer_center == (value or "mean")
        else:
            with pytest.raises(ModelLoadError, match="normalizer.center 'median'"):
                load_model_dir(other)


def test_calibration_and_metadata_name_the_weights_they_describe(trained, tmp_path, capsys):
    # weights copied in from another model of the same shape loaded beside the other's bands
    # and evaluation figures without a word
    from engine.tft_model import TENSORS_KEY, WEIGHTS_ID, _recorded

    model_dir, _ = trained
    digest = _recorded(model_dir / WEIGHTS_FILE)[TENSORS_KEY]
    cfg = json.loads((model_dir / CONFIG_FILE).read_text())
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    assert cfg["calibration"][WEIGHTS_ID] == digest == meta[WEIGHTS_ID]       # written by train
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    (other / METADATA_FILE).write_text(json.dumps({**meta, WEIGHTS_ID: "0" * 64}))
    loaded = load_model_dir(other)
    assert loaded.metadata == {} and loaded.metadata_problem.endswith("describes other weights than model.safetensors's")
    cfg["calibration"][WEIGHTS_ID] = "0" * 64
    (other / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="its calibration was fitted for other weights.*beside the "
                                             "training_metadata.json of these weights"):
        load_model_dir(other)
    from tui.cli import main

    # beside the other weights' metadata, calibrate cannot tell their split: refused, and the
    # load's message does not promise it (it did: a way out that was closed)
    (other / METADATA_FILE).write_text(json.dumps({**meta, WEIGHTS_ID: "0" * 64}))
    data = str(model_dir.parent.parent / "data")
    assert main(["calibrate", "--model", str(other), "--data", data, "--force"]) == 2
    assert "describes other weights" in capsys.readouterr().err
    # beside these weights' own metadata, calibrate fits bands for them, as the message says
    (other / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["calibrate", "--model", str(other), "--data", data, "--force"]) == 0
    assert load_model_dir(other).config.calibration[WEIGHTS_ID] == meta[WEIGHTS_ID]
    # the shipped model names its weights too
    shipped = sorted((Path(__file__).resolve().parents[1] / "models").glob("tft_model_*"))[-1]
    digest = _recorded(shipped / WEIGHTS_FILE)[TENSORS_KEY]
    assert json.loads((shipped / CONFIG_FILE).read_text())["calibration"][WEIGHTS_ID] == digest
    assert json.loads((shipped / METADATA_FILE).read_text())[WEIGHTS_ID] == digest


def test_an_epoch_cut_short_is_not_counted_as_trained():
    # Lightning counts an epoch --max-time cut after 11 of 200 batches: "trained 1 epoch(s)"
    from types import SimpleNamespace

    from engine.training import _full_epochs

    assert _full_epochs(SimpleNamespace(num_training_batches=200, global_step=11, current_epoch=1)) == 0
    assert _full_epochs(SimpleNamespace(num_training_batches=200, global_step=411, current_epoch=3)) == 2
    assert _full_epochs(SimpleNamespace(num_training_batches=200, global_step=400, current_epoch=2)) == 2


def test_weights_file_holds_only_tensors(trained):
    from safetensors import safe_open

    model_dir, _ = trained
    with safe_open(str(model_dir / WEIGHTS_FILE), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(isinstance(k, str) for k in keys)


def test_calibrate_rewrites_the_bands_of_a_copy(trained, tmp_path, capsys):
    from tui.cli import main

    model_dir, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    data = model_dir.parent.parent / "data"
    assert main(["calibrate", "--model", str(copy), "--data", str(data)]) == 0
    assert "calibrated on" in capsys.readouterr().out
    meta = json.loads((copy / METADATA_FILE).read_text())
    assert meta["recalibrated"]["data"] == [str(data)]
    assert meta["recalibrated"]["split"] == "origins in the second half of the validation days"
    assert load_model_dir(copy).config.calibration["lower"]["cpu_percent"]
    # on the split it was trained with (val_days 0.25, origins every 6 steps), as training did
    assert meta["recalibrated"]["windows"] == meta["calibration_windows"]
    # a model trained before the midpoint split chose its best epoch on the even origins of
    # an alternation: it is recalibrated on the odd ones, never on those
    del meta["validation_split"]
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["calibrate", "--model", str(copy), "--data", str(data)]) == 0
    meta = json.loads((copy / METADATA_FILE).read_text())
    assert meta["recalibrated"]["split"] == "odd origins of the alternation it was trained with"


def _copies(model_dir, tmp_path, data_name):
    """A copy of the model (and its config.json's text) and a copy of its training data, to edit."""
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    data = model_dir.parent.parent / "data"
    shutil.copytree(data, tmp_path / data_name)
    return copy, (copy / CONFIG_FILE).read_text(), data, tmp_path / data_name


def test_calibrate_will_not_replace_a_calibration_with_a_poorer_one_or_guess_the_split(trained, tmp_path, capsys):
    """On a few of its servers, calibrate replaced a fit on every training server (and its
    per-profile tables) without a word; without a record of the training it guessed the
    split and recorded the guess as fact."""
    import pandas as pd

    from tui.cli import main

    model_dir, _ = trained
    copy, before, data, few = _copies(model_dir, tmp_path, "few")
    frame = pd.read_csv(few / "fleet.csv")
    frame[frame["server_name"].isin(["srv-00", "srv-03"])].to_csv(few / "fleet.csv", index=False)
    assert main(["calibrate", "--model", str(copy), "--data", str(few)]) == 2
    err = capsys.readouterr().err
    assert "the new calibration would rest on" in err and "--force replaces it anyway" in err
    assert (copy / CONFIG_FILE).read_text() == before
    assert main(["calibrate", "--model", str(copy), "--data", str(few), "--force"]) == 0
    assert (copy / CONFIG_FILE).read_text() != before
    capsys.readouterr()
    (copy / METADATA_FILE).unlink()
    assert main(["calibrate", "--model", str(copy), "--data", str(data)]) == 2
    assert "does not record the training: cannot tell which split" in capsys.readouterr().err
    assert not (copy / METADATA_FILE).exists()


def test_calibrate_refuses_data_that_would_drop_a_metrics_calibration(trained, tmp_path, capsys):
    """A disk column flat in every calibration window gives nothing to fit: writing the result
    would silently wipe the disk calibration the model has."""
    import pandas as pd

    from tui.cli import main

    model_dir, _ = trained
    copy, before, _, flat = _copies(model_dir, tmp_path, "flat")
    files = [f for f in flat.iterdir() if f.name.endswith((".csv", ".csv.gz")) and f.name not in
             ("servers.csv", "incidents.csv")]
    assert files
    for f in files:
        frame = pd.read_csv(f)
        frame["disk_percent"] = 42.0
        frame.to_csv(f, index=False)
    assert main(["calibrate", "--model", str(copy), "--data", str(flat)]) == 2
    err = capsys.readouterr().err
    assert "no calibration window where disk_percent moves: the model's calibration is left as it was" in err
    assert (copy / CONFIG_FILE).read_text() == before


def _edited(model_dir, tmp_path, name, edit):
    """A copy of model_dir whose config.json went through edit(cfg)."""
    copy = tmp_path / name
    shutil.copytree(model_dir, copy)
    cfg = json.loads((copy / CONFIG_FILE).read_text())
    edit(cfg)
    (copy / CONFIG_FILE).write_text(json.dumps(cfg))
    return copy


def test_a_config_edited_after_training_is_refused_though_the_shapes_agree(trained, tmp_path):
    """Swapped targets, another encoder length or a renamed vocabulary keep every tensor's shape;
    the weights file's fingerprint of the model fields catches them."""
    model_dir, _ = trained
    edits = {
        "targets": lambda c: c.__setitem__("targets", [c["targets"][1], c["targets"][0], *c["targets"][2:]]),
        "encoder": lambda c: c["lengths"].__setitem__("max_encoder_length", c["lengths"]["max_encoder_length"] + 1),
        "vocab": lambda c: c["categorical_vocabularies"].__setitem__(
            "profile", [v + "x" for v in c["categorical_vocabularies"]["profile"]]),
    }
    for name, edit in edits.items():
        with pytest.raises(ModelLoadError, match="differ from those the weights were trained with"):
            load_model_dir(_edited(model_dir, tmp_path, name, edit))
    # the calibration is not in the fingerprint: `tft-top calibrate` rewrites it
    ok = _edited(model_dir, tmp_path, "cal", lambda c: c.__setitem__("calibration", None))
    assert load_model_dir(ok).config.calibration is None
    # nor is the prose that describes the fields (a reworded description must not lock models out)
    from engine.tft_model import config_fingerprint, read_config

    config = read_config(model_dir)
    before = config_fingerprint(config)
    import engine.tft_model as tm
    original = tm.ModelConfig.to_json

    def reworded(self):
        out = original(self)
        out["features"]["level_features"] = "reworded"
        out["normalizer"]["kind"] = "reworded"
        return out

    tm.ModelConfig.to_json = reworded
    try:
        assert config_fingerprint(config) == before
    finally:
        tm.ModelConfig.to_json = original


def test_config_values_that_would_load_and_forecast_garbage_are_refused(trained, tmp_path):
    model_dir, _ = trained
    cases = {
        "quantiles": (lambda c: c.__setitem__("quantiles", [0.9, 0.5, 0.1]), "quantiles"),
        "vocab_str": (lambda c: c["categorical_vocabularies"].__setitem__("profile", "abcdefgh"), "profile must be"),
        "float_size": (lambda c: c["hyperparameters"].__setitem__("hidden_size", 32.9), "hidden_size 32.9"),
        "min_neg": (lambda c: c["lengths"].__setitem__("min_encoder_length", -1), "min_encoder_length -1"),
        "scale_inf": (lambda c: c["normalizer"]["min_scale"].__setitem__("cpu_percent", float("inf")), "min_scale"),
        "lr_nan": (lambda c: c["hyperparameters"].__setitem__("learning_rate", float("nan")), "learning_rate nan"),
        "lr_zero": (lambda c: c["hyperparameters"].__setitem__("learning_rate", 0), "learning_rate 0"),
        "bucket0": (lambda c: c.__setitem__("calibration", {"bucket_steps": 0, "lower": {}, "upper": {}}),
                    "bucket_steps 0"),
        "cal_short": (lambda c: c.__setitem__("calibration", {"bucket_steps": 12, "lower": {"cpu_percent": [0.1]},
                                                              "upper": {"cpu_percent": []}}), "must each list"),
        "cal_huge": (lambda c: c["calibration"]["upper"]["cpu_percent"].__setitem__(0, 1e6),
                     "calibration.cpu_percent: 1000000.0 moves the band by more than 100"),
        "features_list": (lambda c: c.__setitem__("features", []), "invalid field"),
        "version_true": (lambda c: c.__setitem__("format_version", True), "format_version"),
        "huge": (lambda c: c["lengths"].__setitem__("max_encoder_length", 1e400), "invalid field"),
        # sizes that build a network of gigabytes, or forecast for minutes, before any weight is read
        "enc1": (lambda c: c["lengths"].update(max_encoder_length=1, min_encoder_length=1), "max_encoder_length 1"),
        "horizon": (lambda c: c["lengths"].__setitem__("max_prediction_length", 10000), "max_prediction_length 10000"),
        "wide": (lambda c: c["hyperparameters"].__setitem__("hidden_size", 4096), "hidden_size 4096"),
        "layers": (lambda c: c["hyperparameters"].__setitem__("lstm_layers", 4096), "lstm_layers 4096"),
    }
    for name, (edit, why) in cases.items():
        with pytest.raises(ModelLoadError, match=why) as info:
            load_model_dir(_edited(model_dir, tmp_path, name, edit))
        assert "\n" not in str(info.value), name


def test_json_files_too_big_or_nested_too_deeply_are_one_line(trained, tmp_path):
    import engine.tft_model as tm

    model_dir, _ = trained
    nested = tmp_path / "nested"
    shutil.copytree(model_dir, nested)
    (nested / CONFIG_FILE).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelLoadError, match="not valid JSON \\(nested too deeply\\)"):
        load_model_dir(nested)
    big = tmp_path / "big"
    shutil.copytree(model_dir, big)
    with open(big / CONFIG_FILE, "r+b") as f:
        f.truncate(tm.MAX_JSON_BYTES + 1)            # sparse: costs no disk
    with pytest.raises(ModelLoadError, match="is too big for this file"):
        load_model_dir(big)
    # a huge or broken metadata file is a note, not a refusal of the model
    meta = tmp_path / "meta"
    shutil.copytree(model_dir, meta)
    (meta / METADATA_FILE).write_text("{\"a\": [" + "[" * 100_000 + "]" * 100_000 + "]}")
    loaded = load_model_dir(meta)
    assert loaded.metadata == {} and "nested too deeply" in loaded.metadata_problem
    # fields that commands read, of the wrong type: a note (eval) or a refusal (calibrate), not a traceback
    for field, value, why in (("servers", 5, "servers is not a list of server names"),
                              ("servers", "batch-03", "servers is not a list"),
                              ("servers", [{"a": 1}], "servers is not a list"),
                              ("val_days", "two", 'val_days is not a number of days in \\(0, 3650\\]: "two"'),
                              ("val_days", 1e9, "val_days is not a number"),
                              ("calib_every", 0, "calib_every is not a whole number of steps from 1 to 100,000: 0"),
                              ("calib_every", None, "calib_every is not a whole number")):
        (meta / METADATA_FILE).write_text(json.dumps({"servers": ["a"], field: value}))
        loaded = load_model_dir(meta)
        assert loaded.metadata == {}
        assert re.search(why, loaded.metadata_problem), (field, value, loaded.metadata_problem)


def test_weights_with_nan_or_another_dtype_are_refused_and_metadata_may_be_anything(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    model_dir, _ = trained
    for name, change, why in (("nan", lambda t: t.fill_(float("nan")), "NaN or infinite"),
                              ("f64", lambda t: t.double(), "torch.float64 in the file")):
        copy = tmp_path / name
        shutil.copytree(model_dir, copy)
        state = load_file(str(copy / WEIGHTS_FILE))
        key = next(k for k, t in state.items() if t.is_floating_point())
        state[key] = change(state[key].clone())
        save_file(state, str(copy / WEIGHTS_FILE))
        with pytest.raises(ModelLoadError, match="it carries no config fingerprint"):
            load_model_dir(copy)
        stamp_fingerprint(copy)      # stamped as written (a NaN from training itself, say)
        with pytest.raises(ModelLoadError, match=why):
            load_model_dir(copy)
    copy = tmp_path / "meta"
    shutil.copytree(model_dir, copy)
    (copy / METADATA_FILE).write_text("[1, 2]")
    assert load_model_dir(copy).metadata == {}


def test_the_newest_stamped_model_with_its_files_is_the_default(trained, tmp_path):
    from engine.tft_model import find_latest_model

    model_dir, _ = trained
    root = tmp_path / "models"
    root.mkdir()
    good = root / "tft_model_20260101T000000Z"
    shutil.copytree(model_dir, good)
    shutil.copytree(model_dir, root / "tft_model_old_backup")        # sorts after digits: not a stamp
    (root / "tft_model_30000101T000000Z").mkdir()                      # an interrupted run: empty
    assert find_latest_model(root) == good


def test_early_stopping_judges_one_window_per_origin_and_the_metadata_says_how_it_trained(trained):
    """At a series' last origin the library offers one window per encoder length; the
    validation set keeps the longest, as evaluation does (it was 94 % copies)."""
    import numpy as np
    import pandas as pd

    from engine.tft_model import one_window_per_origin

    index = pd.DataFrame({"series": ["a"] * 4 + ["b"] * 2, "time_idx_first_prediction": [10, 20, 20, 20, 10, 10],
                          "time_idx_first": [0, 5, 9, 12, 3, 1]})
    assert list(one_window_per_origin(index)) == [True, True, False, False, False, True]
    assert list(one_window_per_origin(index, {("a", 20)})) == [False, True, False, False, False, False]
    model_dir, _ = trained
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    assert meta["seed"] == 0 and meta["max_epochs"] >= 1 and meta["patience"] >= 1 and meta["val_days"] > 0
    assert meta["validation"].startswith("one window per early-stopping origin") and meta["validation_windows"] > 0
    assert meta["validation_split"].startswith("early stopping: origins whose forecast ends in the first half")
    assert meta["training_draws"].startswith("each origin alike") and 0 < meta["origin_copy_windows_share"] < 1


def test_which_columns_carry_information_is_judged_on_the_training_rows_only(tmp_path):
    """Training and calibration mask a column that never moves (traces without a disk); a
    column that is flat before the held-out period and moves inside it is still masked:
    the held-out rows must not decide what is learned or calibrated."""
    from engine.training import TrainOptions, _prepare_source
    import pandas as pd
    from fleet_fixtures import write_fleet

    grid = make_grid(n_servers=2, days=3.0)
    heldout_from = pd.Timestamp("2026-01-07T00:00:00Z")
    flat = (grid["server_name"] == "srv-00") & (grid["timestamp"] < heldout_from)
    grid.loc[flat, "disk_percent"] = 40.0           # flat while training, moving when held out
    write_fleet(tmp_path / "d", grid, heldout_from.strftime("%Y-%m-%dT%H:%M:%SZ"))
    source = _prepare_source(str(tmp_path / "d"), TrainOptions(data=[str(tmp_path / "d")]))
    assert not source.informative.loc["srv-00", "disk_percent"]
    assert source.informative.loc["srv-01", "disk_percent"] and source.informative.loc["srv-00", "cpu_percent"]


def test_a_second_model_in_the_same_second_gets_the_next_stamp_and_nothing_half_written_stays(trained, tmp_path,
                                                                                               monkeypatch):
    import pandas as pd

    import engine.tft_model as tm

    model_dir, _ = trained
    loaded = load_model_dir(model_dir)
    now = pd.Timestamp.now(tz="UTC")
    taken = {tm.utc_stamp(now + pd.Timedelta(seconds=k)) for k in range(3)}
    for stamp in taken:                       # this second and the next two are taken already
        (tmp_path / f"tft_model_{stamp}").mkdir()
    out = tm.save_model_dir(loaded.model, loaded.config, {}, tmp_path)
    assert out.name.removeprefix("tft_model_") not in taken and out.is_dir()
    load_model_dir(out)
    # Ctrl-C while writing: no hidden half-written directory is left behind, and nothing new
    before = set(tmp_path.iterdir())

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tm, "write_config", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tm.save_model_dir(loaded.model, loaded.config, {}, tmp_path)
    assert set(tmp_path.iterdir()) == before


def test_eval_record_prints_first_and_a_failed_write_is_one_line(trained, tmp_path, capsys, monkeypatch):
    import engine.tft_model as tm
    from tui.cli import main

    model_dir, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    data = model_dir.parent.parent / "data"
    before = (copy / METADATA_FILE).read_text()

    def read_only(path, text):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(tm, "replace_file", read_only)
    assert main(["eval", "--model", str(copy), "--data", str(data), "--no-alerts", "--record"]) == 2
    out, err = capsys.readouterr()
    assert "servers seen in training" in out                        # the evaluation was not lost
    assert err.strip().count("\n") == 0 and "not recorded" in err and "Read-only file system" in err
    assert (copy / METADATA_FILE).read_text() == before
    monkeypatch.undo()
    # a record says how it was made: a record without alerts must not read as "no incidents"
    assert main(["eval", "--model", str(copy), "--data", str(data), "--no-alerts", "--record", "--every", "12"]) == 0
    rec = json.loads((copy / METADATA_FILE).read_text())["evaluation"]
    assert (rec["every"], rec["alerts_skipped"], rec["data"]) == (12, True, [str(data)]) and rec["recorded_utc"]
    capsys.readouterr()
    # a corrupt training_metadata.json: eval says every server counts as never seen, and
    # --record does not overwrite what it cannot read
    (copy / METADATA_FILE).write_text('{"servers": ["srv-00", ')
    assert main(["eval", "--model", str(copy), "--data", str(data), "--no-alerts", "--record"]) == 2
    out, err = capsys.readouterr()
    assert "servers seen in training" not in out and "servers never seen in training" in out
    assert "unreadable" in err and "every server is counted as never seen" in err and "not recorded" in err
    assert (copy / METADATA_FILE).read_text() == '{"servers": ["srv-00", '
    assert main(["calibrate", "--model", str(copy), "--data", str(data)]) == 2
    assert "cannot tell which split" in capsys.readouterr().err
    # no training_metadata.json at all: the same note (there was none: the 'seen' cells
    # vanished and the never-seen vs seen target read as met)
    (copy / METADATA_FILE).unlink()
    assert main(["eval", "--model", str(copy), "--data", str(data), "--no-alerts", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "records no training servers" in err and "never-seen vs seen target is not scored" in err
    js = json.loads(out)
    assert js["training_servers_known"] is False and js["alerts_skipped"] is True


def test_calibrate_keeps_to_the_training_split_and_marks_the_old_evaluation(trained, tmp_path, capsys, monkeypatch):
    import engine.tft_model as tm
    from tui.cli import main

    model_dir, _ = trained
    copy, before, data, moved = _copies(model_dir, tmp_path, "moved")
    meta_before = (copy / METADATA_FILE).read_text()
    # a split.json that holds out no server: calibrating would fit the bands on srv-03, the
    # server held out for the evaluation
    split = json.loads((moved / "split.json").read_text())
    (moved / "split.json").write_text(json.dumps({**split, "heldout_servers": []}))
    assert main(["calibrate", "--model", str(copy), "--data", str(moved), "--force"]) == 2
    err = capsys.readouterr().err
    assert "1 server(s) the model never trained on (srv-03)" in err and err.count("\n") == 1
    assert (copy / CONFIG_FILE).read_text() == before
    # the same data path it was trained with, its split changed: refused too
    meta = json.loads(meta_before)
    meta["data"][0]["path"] = str(moved)
    meta["data"][0]["split"]["heldout_from"] = "2030-01-01T00:00:00+00:00"
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    (moved / "split.json").write_text(json.dumps(split))
    assert main(["calibrate", "--model", str(copy), "--data", str(moved), "--force"]) == 2
    assert "is not the one" in capsys.readouterr().err and (copy / CONFIG_FILE).read_text() == before
    # ... however the path is spelt ("d/" skipped the check)
    assert main(["calibrate", "--model", str(copy), "--data", f"{moved}/", "--force"]) == 2
    assert "is not the one" in capsys.readouterr().err and (copy / CONFIG_FILE).read_text() == before
    # a malformed data entry in the metadata: one line, not a traceback
    for bad in ({**meta, "data": [{**meta["data"][0], "split": "2026-01-16"}]}, {**meta, "data": 48}):
        (copy / METADATA_FILE).write_text(json.dumps(bad))
        assert main(["calibrate", "--model", str(copy), "--data", str(data), "--force"]) == 2
        err = capsys.readouterr().err
        assert "data is not a list of data sets" in err and err.count("\n") == 1
    (copy / METADATA_FILE).write_text(meta_before)
    # a file that cannot be written: neither changes (the metadata, written first, fails
    # alone; a config.json failing after it puts the metadata back)
    real_replace = tm.replace_file
    for read_only in (CONFIG_FILE, METADATA_FILE):
        def refuse(path, text, read_only=read_only):
            if path.name == read_only:
                raise PermissionError(13, "Operation not permitted", str(path))
            real_replace(path, text)

        monkeypatch.setattr(tm, "replace_file", refuse)
        assert main(["calibrate", "--model", str(copy), "--data", str(data), "--force"]) == 2
        capsys.readouterr()
        assert (copy / CONFIG_FILE).read_text() == before and (copy / METADATA_FILE).read_text() == meta_before
        monkeypatch.undo()
    # done: the evaluation measured with the old bands is kept under its own name
    assert main(["calibrate", "--model", str(copy), "--data", str(data), "--force"]) == 0
    meta = json.loads((copy / METADATA_FILE).read_text())
    assert "evaluation" not in meta and meta["evaluation_before_recalibration"]["datasets"]
    assert meta["calibration_windows"] == meta["recalibrated"]["windows"]
    assert load_model_dir(copy).config.calibration["weights_sha256"] == meta["weights_sha256"]
    # a calibration count of the wrong type is refused when the model loads (calibrate crashed)
    cfg = json.loads((copy / CONFIG_FILE).read_text())
    cfg["calibration"]["fitted_on_windows"] = "many"
    (copy / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="calibration.fitted_on_windows 'many' is not a whole number"):
        load_model_dir(copy)


def test_ctrl_c_inside_a_real_lightning_fit_comes_out_as_keyboard_interrupt():
    """Lightning catches a Ctrl-C in fit, tears down and exits 1; the wrapper hands the
    interrupt back (the CLI: exit 130), with the signal handler as it was."""
    import os
    import signal

    import lightning.pytorch as pl
    import torch

    from engine.training import ctrl_c_passes_through

    class Interrupted(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

        def training_step(self, batch, _):
            os.kill(os.getpid(), signal.SIGINT)            # what Ctrl-C sends
            return self.w(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=2)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_passes_through():
            trainer.fit(Interrupted(), data)
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(SystemExit):           # an exit 1 without a Ctrl-C is left alone
        with ctrl_c_passes_through():
            raise SystemExit(1)


def test_a_failed_rewrite_names_the_file_and_keeps_it_and_its_mode(tmp_path):
    import os
    import stat

    from engine.tft_model import write_metadata

    (tmp_path / METADATA_FILE).write_text('{"a": 1}\n')
    os.chmod(tmp_path / METADATA_FILE, 0o640)
    write_metadata(tmp_path, {"a": 2})
    assert json.loads((tmp_path / METADATA_FILE).read_text()) == {"a": 2}
    assert stat.S_IMODE((tmp_path / METADATA_FILE).stat().st_mode) == 0o640
    (tmp_path / f".{METADATA_FILE}.tmp").mkdir()          # the temporary file cannot be written
    with pytest.raises(OSError) as info:
        write_metadata(tmp_path, {"a": 3})
    assert info.value.filename == str(tmp_path / METADATA_FILE)
    assert json.loads((tmp_path / METADATA_FILE).read_text()) == {"a": 2}


def test_names_shapes_and_dtypes_are_checked_from_the_header_before_any_tensor_is_read(trained, tmp_path, monkeypatch):
    """A weights file that cannot be this config's is refused from its header: the tensors
    (which a hostile or broken file may make huge) are never read."""
    import safetensors.torch as st

    model_dir, _ = trained
    cases = (("extra", lambda s: s.update(extra=torch.zeros(3)), "1 unexpected \\(e.g. extra\\)"),
             ("shape", None, r"is \(2, 2\) in the file"),
             ("dtype", None, "is torch.int64 in the file"))
    for name, change, why in cases:
        copy = tmp_path / name
        shutil.copytree(model_dir, copy)
        state = st.load_file(str(copy / WEIGHTS_FILE))
        key = next(k for k, t in state.items() if t.is_floating_point())
        if name == "extra":
            change(state)
        elif name == "shape":
            state[key] = torch.zeros(2, 2)
        else:
            state[key] = state[key].long()
        st.save_file(state, str(copy / WEIGHTS_FILE))
        stamp_fingerprint(copy)
        with monkeypatch.context() as m:
            m.setattr(st, "load_file", lambda *a, **k: pytest.fail("tensors read before the header was checked"))
            with pytest.raises(ModelLoadError, match=why):
                load_model_dir(copy)


def test_a_models_folder_given_for_a_model_says_so_and_weights_follow_the_umask(trained, tmp_path):
    import os
    import stat

    model_dir, _ = trained
    with pytest.raises(ModelLoadError, match=f"holds model directories, it is not one \\(the newest: {model_dir.name}\\)"):
        load_model_dir(model_dir.parent)
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE(os.stat(model_dir / WEIGHTS_FILE).st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(model_dir / CONFIG_FILE).st_mode) & 0o666


def test_stamping_keeps_the_weights_files_mode(trained, tmp_path):
    import os
    import stat

    from engine.tft_model import stamp_fingerprint

    model_dir, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    os.chmod(copy / WEIGHTS_FILE, 0o640)
    stamp_fingerprint(copy)
    assert stat.S_IMODE(os.stat(copy / WEIGHTS_FILE).st_mode) == 0o640 and load_model_dir(copy)


def test_an_ignored_ctrl_c_stays_ignored_inside_the_wrapper():
    """A background job inherits SIGINT ignored: the wrapper must not make it interruptible."""
    import os
    import signal

    from engine.training import ctrl_c_passes_through

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ctrl_c_passes_through():
            os.kill(os.getpid(), signal.SIGINT)     # ignored: nothing happens
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_calibrate_refuses_and_eval_notes_data_that_changed_since_training(trained, tmp_path, capsys):
    """A data file cut short since training moves each server's last days (the default split)
    back into the days the model trained on: calibrate fitted the bands there ("calibrated on
    24 windows") and eval scored those rows as held out, without a word."""
    import pandas as pd

    from tui.cli import main

    model_dir, _ = trained
    copy, before, data, cut = _copies(model_dir, tmp_path, "cut")
    meta = json.loads((copy / METADATA_FILE).read_text())
    ended = pd.Timestamp(meta["data"][0]["training_span"][1])
    meta["data"][0]["path"] = str(cut)
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    frame = pd.read_csv(cut / "fleet.csv")
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    frame[stamps <= ended - pd.Timedelta(hours=3)].to_csv(cut / "fleet.csv", index=False)
    assert main(["calibrate", "--model", str(copy), "--data", str(cut), "--force"]) == 2
    err = capsys.readouterr().err
    assert f"its training part now ends {ended - pd.Timedelta(hours=3):%Y-%m-%d %H:%M}, not {ended:%Y-%m-%d %H:%M}" \
        in err and err.count("\n") == 1
    assert (copy / CONFIG_FILE).read_text() == before
    # cut for one server only: the span's end does not move, that server's does
    assert meta["data"][0]["training_ends"]["srv-01"] == ended.isoformat()
    frame = pd.read_csv(data / "fleet.csv")
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    frame[~((frame["server_name"] == "srv-01") & (stamps > ended - pd.Timedelta(hours=3)))].to_csv(
        cut / "fleet.csv", index=False)
    assert main(["calibrate", "--model", str(copy), "--data", str(cut), "--force"]) == 2
    err = capsys.readouterr().err
    assert "server srv-01's training part now ends" in err and err.count("\n") == 1
    assert (copy / CONFIG_FILE).read_text() == before
    # the training data as it was: calibrated
    meta["data"][0]["path"] = str(data)
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["calibrate", "--model", str(copy), "--data", str(data), "--force"]) == 0
    capsys.readouterr()
    # eval: the default split, and a model that trained up to a day later than this data's
    # held-out start, scores training rows as held out: it says so (stderr and JSON)
    (data_copy := tmp_path / "default").mkdir()
    shutil.copy(data / "fleet.csv", data_copy / "fleet.csv")
    meta["data"][0]["path"] = str(data_copy)
    later = (pd.Timestamp(frame["timestamp"].max()) + pd.Timedelta(days=1)).isoformat()
    meta["data"][0]["training_span"][1] = later
    ends = meta["data"][0].pop("training_ends")       # (a model trained before they were recorded)
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(data_copy), "--no-alerts", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "before the end of the data the model trained on" in err
    assert "rows the model trained on" in json.loads(out)["datasets"][0]["note"]
    # per server where recorded: one server's end past its held-out start is enough (the
    # training data with its split, srv-01 recorded as trained a day further)
    shutil.copytree(data, tmp_path / "split")
    meta["data"][0]["path"] = str(tmp_path / "split")
    meta["data"][0]["training_span"] = [meta["data"][0]["training_span"][0], ended.isoformat()]
    meta["data"][0]["training_ends"] = ends
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(tmp_path / "split"), "--no-alerts", "--json"]) == 0
    assert "trained on" not in capsys.readouterr().err          # as trained: no note
    meta["data"][0]["training_ends"] = {**ends, "srv-01": later}
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(tmp_path / "split"), "--no-alerts", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "the held-out period of 1 server(s) (srv-01: from" in err, err
    # one step later is within the tolerance calibrate allows too: no note
    one_step = (pd.Timestamp(ends["srv-01"]) + pd.Timedelta(minutes=5)).isoformat()
    meta["data"][0]["training_ends"] = {**ends, "srv-01": one_step}
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(tmp_path / "split"), "--no-alerts", "--json"]) == 0
    assert "trained on" not in capsys.readouterr().err
    # values that are no time ("now" read as the time of reading; null or "" as no check) are
    # left out, and with none left the data set's end is compared
    meta["data"][0]["training_ends"] = {"srv-00": "now", "srv-01": None, "srv-02": ""}
    meta["data"][0]["training_span"][1] = later
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(tmp_path / "split"), "--no-alerts", "--json"]) == 0
    assert "its held-out period now starts" in capsys.readouterr().err
    meta["data"][0]["path"] = str(data)                   # recorded for another data set: no overlap note
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(data_copy), "--no-alerts", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "rows the model trained on" not in err and "rows the model" not in json.loads(out)["datasets"][0]["note"]


def test_eval_scores_servers_of_a_data_set_the_model_never_trained_on_as_never_seen(trained, tmp_path, capsys):
    """An operator's own fleet with a web-01 was scored as "seen in training" because the demo
    fleet the model trained on has a web-01: seen went by name alone."""
    from tui.cli import main

    model_dir, _ = trained
    copy, _, data, other = _copies(model_dir, tmp_path, "theirs")     # the same names, another data set
    meta = json.loads((copy / METADATA_FILE).read_text())
    meta["data"][0]["path"] = str(data)
    (copy / METADATA_FILE).write_text(json.dumps(meta))
    assert main(["eval", "--model", str(copy), "--data", str(other), "--no-alerts", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)["datasets"][0]
    assert not report["results"].get("seen") and report["results"]["heldout"], report["results"].keys()
    assert "all its servers are scored as never seen" in report["note"] and "srv-00" in report["note"]
    assert "scored as never seen" in err and err.count("\n") == 1
    # the data set it trained on, by the path training recorded: its trained servers are seen
    assert main(["eval", "--model", str(copy), "--data", str(data), "--no-alerts", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["datasets"][0]
    assert report["results"]["seen"] and report["note"] is None
