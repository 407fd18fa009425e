"""FastTFT: numpy windows straight into the network give what TimeSeriesDataSet +
model.predict give, the interpolation swap changes nothing but speed, and the
calibrated output is apply_calibration of the raw one."""
from __future__ import annotations


import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from engine.calibration import apply_calibration, window_scale
from engine.contract import METRICS
from engine.evaluation import stock_predict
from pytorch_forecasting.models.nn.rnn import LSTM as PFLSTM
from engine.fast_blocks import FastGRN, FastLSTM, FusedAttention, fuse_attention, fuse_grns, wrap_lstms
from engine.device_inputs import batch_inputs
from engine.fast_tft import (CPU_BATCH, FastTFT, even_batches, MatmulInterpolation, interpolation_matrix, keep_freed_memory,
                             swap_interpolation)
from engine.fast_vsn import FoldedVariableSelection, fold_variable_selection
from engine.tft_model import LoadedModel, build_dataset, load_model_dir, prepare_frame
from fleet_fixtures import make_grid
from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (GatedResidualNetwork,
                                                                                InterpretableMultiHeadAttention,
                                                                                TimeDistributedInterpolation)

# (server, encoder length, origin position in the server's rows, raw profile text,
#  keep the server's whole history before the window?)
WINDOWS = [
    ("srv-00", 48, 300, "web", True),         # full window, longer history: stock takes the last 48
    ("srv-01", 48, 400, "Database", False),    # full window, series starts at the window
    ("srv-02", 12, 200, "batch", False),       # the shortest allowed encoder
    ("srv-03", 30, 250, "  WEB ", False),      # a short one, profile needing normalisation
    ("srv-00", 21, 500, "gpu-box", False),     # a profile the model never saw -> class 0
    ("srv-01", 47, 150, "", False),            # empty profile -> "unknown"
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from threads, and on a busy machine intra-op thread
    barriers can stall for seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    return load_model_dir(tiny_model_dir), make_grid(n_servers=4, days=2.0)


@pytest.fixture(scope="module")
def windows(trained):
    """The same windows as a prepared frame + origins (stock path) and as numpy arrays."""
    loaded, frame = trained
    L, H = loaded.config.max_encoder_length, loaded.config.max_prediction_length
    parts, origins = [], []
    n = len(WINDOWS)
    values = np.full((n, L, len(METRICS)), np.nan)      # padding is garbage: must be ignored
    lengths = np.empty(n, dtype=np.int64)
    last_epoch = np.empty(n, dtype=np.int64)
    profiles = []
    for i, (server, enc, o, profile, long_history) in enumerate(WINDOWS):
        rows = frame[frame["server_name"] == server].reset_index(drop=True)
        # one step beyond the horizon: the origin is then no series' last possible one,
        # where the library would also index shorter encoders for the same origin
        part = rows.iloc[(0 if long_history else o - enc):o + H + 1].copy()
        name = f"w{i}"
        part["server_name"] = name
        part["profile"] = profile
        parts.append(part)
        origins.append((f"{name}#0", name, int(rows["timestamp"].iloc[o].value // 10**9 // 300)))
        values[i, L - enc:] = rows[list(METRICS)].to_numpy()[o - enc:o]
        lengths[i] = enc
        last_epoch[i] = rows["timestamp"].iloc[o - 1].value // 10**9
        profiles.append(profile)
    prepared = prepare_frame(pd.concat(parts, ignore_index=True))
    origins = pd.DataFrame(origins, columns=["series", "server_name", "origin_idx"])
    # the premise of the parity test: the library has exactly one sample per origin, and
    # its encoder is the window's
    index = build_dataset(loaded.config, prepared).decoded_index
    index = index.assign(enc=index["time_idx_first_prediction"] - index["time_idx_first"])
    for (series, _, o), enc in zip(origins.itertuples(index=False), lengths):
        hits = index[(index["series"] == series) & (index["time_idx_first_prediction"] == o)]
        assert list(hits["enc"]) == [enc], series
    return prepared, origins, values, lengths, last_epoch, profiles


@pytest.fixture(scope="module")
def fast(trained):
    loaded, _ = trained
    return FastTFT(loaded, batch_size=4)     # batches of mixed encoder lengths


def _scrambled(loaded: LoadedModel) -> LoadedModel:
    """The same architecture with large random weights: a model three batches into
    training barely reacts to its inputs, so off-by-one inputs could hide in 1e-4."""
    model = copy.deepcopy(loaded.model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return LoadedModel(model=model.eval(), config=loaded.config, model_dir=loaded.model_dir, metadata={})


@pytest.fixture(params=["trained", "scrambled", "scrambled, the other centre"])
def weighted(trained, request):
    """The tiny model as trained, with scrambled weights, and scrambled with its windows
    normalised around the other centre (config.json's ``normalizer.center``, mean or last
    value: the stock path's FlooredEncoderNormalizer and ours must agree on both)."""
    loaded, _ = trained
    if request.param == "trained":
        return loaded
    out = _scrambled(loaded)
    if "other" in request.param:
        other = "mean" if out.config.normalizer_center == "last" else "last"
        out = dataclasses.replace(out, config=dataclasses.replace(out.config, normalizer_center=other))
    return out


def test_matches_the_library_path(weighted, windows):
    loaded = weighted
    prepared, origins, values, lengths, last_epoch, profiles = windows
    stock = stock_predict(loaded, prepared, origins)
    fast = FastTFT(loaded, batch_size=4)     # batches of mixed encoder lengths
    out = fast.predict(values, lengths, last_epoch, profiles)
    assert list(fast.profile_codes(profiles)) == [4, 2, 1, 4, 0, 3]   # unseen -> nan class 0
    for m in loaded.config.targets:
        assert out.raw[m].shape == (len(WINDOWS), loaded.config.max_prediction_length, 3)
        assert out.raw[m].dtype == np.float64
        np.testing.assert_allclose(out.raw[m], stock[m], rtol=1e-4, atol=1e-5, err_msg=m)
    # batching does not change any window's forecast: all in one batch, and one window per
    # batch (where a full window takes the no-gather path and the time features are shared)
    for size in (1024, 1):
        other = FastTFT(loaded, batch_size=size).predict(values, lengths, last_epoch, profiles)
        for m in loaded.config.targets:
            np.testing.assert_allclose(other.raw[m], out.raw[m], rtol=1e-5, atol=1e-6)


def test_interpolation_swap_changes_nothing_but_the_code(trained, windows):
    loaded, _ = trained
    _, _, values, lengths, last_epoch, profiles = windows
    keys_before = list(loaded.model.state_dict().keys())
    fast = FastTFT(loaded, batch_size=4, fold_vsn=False, fuse_blocks=False)
    plain = FastTFT(loaded, swap_interpolation=False, fold_vsn=False, fuse_blocks=False, batch_size=4)
    assert fast.swapped > 0 and plain.swapped == 0
    a = fast.predict(values, lengths, last_epoch, profiles).raw
    b = plain.predict(values, lengths, last_epoch, profiles).raw
    for m in loaded.config.targets:
        np.testing.assert_allclose(a[m], b[m], rtol=1e-5, atol=1e-6)
    # the loaded model is untouched, and the swapped copy keeps the same state_dict keys
    assert list(loaded.model.state_dict().keys()) == keys_before
    assert list(fast.model.state_dict().keys()) == keys_before
    assert not any(hasattr(mod, "weight_matrix") for mod in loaded.model.modules())
    interp = [mod for mod in fast.model.modules() if isinstance(mod, TimeDistributedInterpolation)]
    assert len(interp) == fast.swapped and all(isinstance(mod, MatmulInterpolation) for mod in interp)
    # the matrix is the interpolation itself
    x = torch.randn(5, 7)
    ref = torch.nn.functional.interpolate(x.unsqueeze(1), 16, mode="linear", align_corners=True).squeeze(1)
    torch.testing.assert_close(x @ interpolation_matrix(7, 16), ref)
    assert swap_interpolation(fast.model) == 0          # already swapped


def test_interpolation_swap_gives_the_same_gradients_in_training(weighted, windows):
    """engine.training swaps the interpolation in the model it trains: the same loss, the
    same gradients for every parameter (dropout masks alike), so training is unchanged."""
    import copy

    loaded = weighted
    _, _, values, lengths, last_epoch, profiles = windows
    fast = FastTFT(loaded, batch_size=len(lengths), fold_vsn=False, fuse_blocks=False)
    x = batch_inputs(fast, torch.from_numpy(values.astype(np.float32)), lengths.astype(np.int64),
                     torch.from_numpy(last_epoch.astype(np.int64)), torch.from_numpy(fast.profile_codes(profiles)))
    grads = []
    for swap in (False, True):
        model = copy.deepcopy(loaded.model).train()
        if swap:
            assert swap_interpolation(model) > 0
        torch.manual_seed(3)
        out = model(x)["prediction"]
        loss = sum(((p - 50.0) ** 2).mean() for p in out)
        loss.backward()
        grads.append((float(loss), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    assert grads[0][1].keys() == grads[1][1].keys() and len(grads[0][1]) > 50
    # float rounding: relative to the largest gradient (a gradient that is a near-cancellation
    # of large terms keeps an absolute, not a relative, rounding error)
    largest = max(float(g.abs().max()) for g in grads[0][1].values())
    for k, g in grads[0][1].items():
        diff = float((grads[1][1][k] - g).abs().max())
        assert diff <= 1e-5 * largest, (k, diff, largest)


def test_folded_variable_selection_changes_nothing_but_the_code(weighted, windows):
    """The folded VSN (engine.fast_vsn) gives the library's VSN output and weights."""
    loaded = weighted
    _, _, values, lengths, last_epoch, profiles = windows
    folded = FastTFT(loaded, batch_size=4)
    plain = FastTFT(loaded, batch_size=4, fold_vsn=False)
    assert folded.folded == 2 and plain.folded == 0
    assert isinstance(folded.model.encoder_variable_selection, FoldedVariableSelection)
    assert isinstance(folded.model.decoder_variable_selection, FoldedVariableSelection)
    assert not isinstance(folded.model.static_variable_selection, FoldedVariableSelection)  # categorical
    a = folded.predict(values, lengths, last_epoch, profiles, with_importance=True)
    b = plain.predict(values, lengths, last_epoch, profiles, with_importance=True)
    for m in loaded.config.targets:
        np.testing.assert_allclose(a.raw[m], b.raw[m], rtol=1e-5, atol=1e-5, err_msg=m)
    for wa, wb in zip(a.importance, b.importance):
        assert wa.keys() == wb.keys()
        np.testing.assert_allclose(list(wa.values()), list(wb.values()), rtol=1e-5, atol=1e-7)
    # module level, on inputs unlike any window: random reals, a context that differs per series
    # (constant over time, as the TFT gives it), row blocks smaller than the batch
    lib = plain.model.encoder_variable_selection
    mod = FoldedVariableSelection(lib)
    mod.block_rows = 7
    gen = torch.Generator().manual_seed(1)
    x = {name: torch.randn(3, 11, 1, generator=gen) * 3 for name in lib.input_sizes}
    ctx = torch.randn(3, 1, lib.context_size, generator=gen).expand(3, 11, -1)
    with torch.inference_mode():
        out_lib, w_lib = lib(x, ctx)
        out_mod, w_mod = mod(x, ctx)
    torch.testing.assert_close(out_mod, out_lib, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_mod, w_lib, rtol=1e-5, atol=1e-6)
    # time-derived inputs computed once per distinct value: aligned series (every row the
    # same values), series that are not aligned, and a single series
    names = list(lib.input_sizes)
    shared = names[:2]
    mod = FoldedVariableSelection(lib, shared=shared)
    mod.block_rows = 5
    assert [mod.names[v] for v in mod.shared] == shared
    steps = torch.randn(1, 11, 1, generator=gen)
    for aligned in (True, False):
        x = {name: torch.randn(3, 11, 1, generator=gen) for name in names}
        for name in shared:
            x[name] = steps.expand(3, 11, 1).clone()
            if not aligned:
                x[name][1, 4:] = torch.randn(7, 1, generator=gen)
        for b in (slice(0, 3), slice(1, 2)):
            xb = {k: v[b] for k, v in x.items()}
            with torch.inference_mode():
                out_lib, w_lib = lib(xb, ctx[b])
                out_mod, w_mod = mod(xb, ctx[b])
            torch.testing.assert_close(out_mod, out_lib, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(w_mod, w_lib, rtol=1e-5, atol=1e-6)
    assert fold_variable_selection(folded.model) == 0        # nothing left to fold


def test_fused_blocks_change_nothing_but_the_code(weighted, windows):
    """FusedAttention, FastGRN and FastLSTM (engine.fast_blocks) give the library's outputs."""
    loaded = weighted
    _, _, values, lengths, last_epoch, profiles = windows
    fused = FastTFT(loaded, batch_size=4)
    plain = FastTFT(loaded, batch_size=4, fuse_blocks=False)
    # attention, static_enrichment, pos_wise_ff, the encoder's and the decoder's LSTM
    assert fused.fused == 5 and plain.fused == 0
    assert isinstance(fused.model.multihead_attn, FusedAttention)
    assert isinstance(fused.model.static_enrichment, FastGRN) and isinstance(fused.model.pos_wise_ff, FastGRN)
    assert isinstance(fused.model.lstm_encoder, FastLSTM) and isinstance(fused.model.lstm_decoder, FastLSTM)
    a = fused.predict(values, lengths, last_epoch, profiles, with_importance=True)
    b = plain.predict(values, lengths, last_epoch, profiles, with_importance=True)
    for m in loaded.config.targets:
        np.testing.assert_allclose(a.raw[m], b.raw[m], rtol=1e-5, atol=1e-5, err_msg=m)
    for wa, wb in zip(a.importance, b.importance):
        np.testing.assert_allclose(list(wa.values()), list(wb.values()), rtol=1e-5, atol=1e-7)
    assert fuse_attention(fused.model) == 0 and fuse_grns(fused.model) == 0      # nothing left
    assert wrap_lstms(fused.model) == 0
    assert isinstance(loaded.model.multihead_attn, InterpretableMultiHeadAttention)   # original untouched

    # module level: the TFT's own masks (equal encoder lengths -> one shared mask; mixed ->
    # per-window padding; one window), 1, 2 and 4 heads, random weights and inputs
    tft = plain.model
    gen = torch.Generator().manual_seed(3)
    H, enc, dec = 16, 10, 4
    for n_head in (1, 2, 4):
        lib = InterpretableMultiHeadAttention(n_head=n_head, d_model=H).eval()
        mod = FusedAttention(lib)
        for enc_lengths in ([enc, enc, enc], [enc, 3, 7], [6]):
            B = len(enc_lengths)
            el = torch.tensor(enc_lengths)
            T = max(enc_lengths)
            mask = tft.get_attention_mask(encoder_lengths=el, decoder_lengths=torch.full((B,), dec))
            assert mask.shape == (B, dec, T + dec)
            x = torch.randn(B, T + dec, H, generator=gen) * 2
            with torch.inference_mode():
                out_lib, w_lib = lib(x[:, T:], x, x, mask)
                out_mod, w_mod = mod(x[:, T:], x, x, mask)
            torch.testing.assert_close(out_mod, out_lib, rtol=1e-5, atol=1e-5)
            assert w_mod.shape == (B, dec, n_head, 0)
            assert w_lib[..., :T].shape[:3] == w_mod[..., :T].shape[:3]          # the TFT's slicing works

    # GRNs: a context expanded over time (projected once per series), a context that varies
    # over time, none
    for name in ("static_enrichment", "pos_wise_ff"):
        lib = getattr(tft, name)
        assert type(lib) is GatedResidualNetwork
        mod = FastGRN(lib)
        x = torch.randn(3, 7, lib.input_size, generator=gen)
        contexts = [None]
        if lib.context_size is not None:
            c = torch.randn(3, lib.context_size, generator=gen)
            contexts += [c[:, None].expand(3, 7, -1), torch.randn(3, 7, lib.context_size, generator=gen)]
        for ctx in contexts:
            with torch.inference_mode():
                torch.testing.assert_close(mod(x, ctx), lib(x, ctx), rtol=1e-5, atol=1e-5)

    # LSTMs: every sequence full (run unpacked: bit for bit the library's), mixed lengths and
    # a zero length (handed to the library), with the initial state the TFT gives them
    for name in ("lstm_encoder", "lstm_decoder"):
        lib = getattr(tft, name)
        mod = FastLSTM(lib)
        B, T = 3, 7
        x = torch.randn(B, T, lib.input_size, generator=gen)
        hx = tuple(torch.randn(lib.num_layers, B, lib.hidden_size, generator=gen) for _ in range(2))
        for lens in ([T, T, T], [T, 3, 5], [T, 0, 2]):
            lens = torch.tensor(lens)
            with torch.inference_mode():
                out_mod, (h_mod, c_mod) = mod(x, hx, lengths=lens, enforce_sorted=False)
                out_lib, (h_lib, c_lib) = lib(x, hx, lengths=lens, enforce_sorted=False)
            for a, b in ((out_mod, out_lib), (h_mod, h_lib), (c_mod, c_lib)):
                assert torch.equal(a, b), (name, lens.tolist())


def test_fast_lstm_unpacks_only_on_the_cpu(monkeypatch):
    """An unpacked float32 batch on CUDA may take cuDNN's persistent LSTM kernel, measured
    2.4e-4 relative away from the CPU's forecasts on an H200 (benchmarks/results/h200-2026-11-28/);
    off the CPU FastLSTM hands every batch to the library's packed path."""
    lstm = PFLSTM(input_size=4, hidden_size=4, batch_first=True)
    mod = FastLSTM(lstm)
    monkeypatch.setattr(torch.nn.LSTM, "forward", lambda *a, **k: "unpacked")
    monkeypatch.setattr(lstm, "forward", lambda *a, **k: "library")
    full = torch.full((2,), 5)
    assert mod(torch.zeros(2, 5, 4), None, lengths=full) == "unpacked"
    # a tensor off the CPU (the meta device stands in for CUDA here): the library's path,
    # decided before any length is read
    meta = torch.zeros(2, 5, 4, device="meta")
    assert mod(meta, None, lengths=full.to("meta")) == "library"
    assert mod(torch.zeros(2, 5, 4), None, lengths=torch.tensor([5, 3])) == "library"


def test_keep_freed_memory():
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True
        assert keep_freed_memory() is True      # idempotent
    else:
        assert keep_freed_memory() in (True, False)


def test_batches_on_worker_threads_give_the_same_forecasts(trained, windows):
    loaded, _ = trained
    _, _, values, lengths, last_epoch, profiles = windows
    one = FastTFT(loaded, batch_size=2).predict(values, lengths, last_epoch, profiles, with_importance=True)
    par = FastTFT(loaded, batch_size=2, workers=3)
    for _ in range(2):                                   # the pool is made once and reused
        out = par.predict(values, lengths, last_epoch, profiles, with_importance=True)
        for m in loaded.config.targets:
            np.testing.assert_array_equal(out.raw[m], one.raw[m])
            np.testing.assert_array_equal(out.quantiles[m], one.quantiles[m])
        assert out.importance == one.importance
    with pytest.raises(ValueError):
        FastTFT(loaded, workers=0)


def _with_profile_groups(loaded: LoadedModel) -> LoadedModel:
    """The model with per-profile calibration adjustments for two profiles (one of them for
    some metrics only), so both calibration paths must pick the right rows."""
    config = copy.deepcopy(loaded.config)
    cal = config.calibration
    buckets = len(cal["lower"]["cpu_percent"])
    cal["groups"] = {
        "web": {"lower": {m: [0.5 + 0.1 * b for b in range(buckets)] for m in METRICS},
                "upper": {m: [1.5 - 0.1 * b for b in range(buckets)] for m in METRICS}},
        "batch": {"lower": {"cpu_percent": [2.0] * buckets}, "upper": {"cpu_percent": [3.0] * buckets}},
    }
    return LoadedModel(model=loaded.model, config=config, model_dir=loaded.model_dir, metadata={})


@pytest.mark.parametrize("groups", [False, True])
def test_on_device_path_matches_the_numpy_path(weighted, windows, groups):
    """engine.device_inputs (inputs and calibration in torch, the path CUDA takes), run
    here on the CPU, gives what the numpy path gives: same raw output, same calibrated
    quantiles, same importance, a NaN inside one window kept to that window."""
    loaded = _with_profile_groups(weighted) if groups else weighted
    _, _, values, lengths, last_epoch, profiles = windows
    values = values.copy()
    values[3, -5, 1] = np.nan                      # inside window 3's valid part
    ref = FastTFT(loaded, batch_size=4).predict(values, lengths, last_epoch, profiles, with_importance=True)
    for size in (4, 1024):
        dev = FastTFT(loaded, batch_size=size, on_device=True)
        assert dev.on_device and not FastTFT(loaded).on_device
        out = dev.predict(values, lengths, last_epoch, profiles, with_importance=True)
        for m in loaded.config.targets:
            assert out.quantiles[m].dtype == np.float64
            np.testing.assert_allclose(out.raw[m], ref.raw[m], rtol=1e-5, atol=1e-5, err_msg=m)
            np.testing.assert_allclose(out.quantiles[m], ref.quantiles[m], rtol=1e-5, atol=1e-5, err_msg=m)
            assert np.isnan(out.quantiles[m][3]).all() == np.isnan(ref.quantiles[m][3]).all()
            assert np.isfinite(out.quantiles[m][[0, 1, 2, 4, 5]]).all()
        for a, b in zip(out.importance, ref.importance):
            assert list(a) == list(b)
            np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5, atol=1e-6)
    empty = FastTFT(loaded, on_device=True).predict(values[:0], lengths[:0], last_epoch[:0], [])
    assert empty.quantiles["cpu_percent"].shape == (0, loaded.config.max_prediction_length, 3)
    if groups:   # the group adjustments moved the bands: the comparison above saw them
        plain = FastTFT(weighted, batch_size=4).predict(values, lengths, last_epoch, profiles)
        assert not np.allclose(plain.quantiles["cpu_percent"][0], ref.quantiles["cpu_percent"][0])


def test_cpu_batches_are_small_by_default(trained):
    loaded, _ = trained
    assert FastTFT(loaded).batch_size == CPU_BATCH
    assert FastTFT(loaded, batch_size=5).batch_size == 5
    with pytest.raises(ValueError):
        FastTFT(loaded, batch_size=0)


def test_calibrated_output(trained, windows, fast):
    loaded, _ = trained
    config = loaded.config
    _, _, values, lengths, last_epoch, profiles = windows
    out = fast.predict(values, lengths, last_epoch, profiles)
    assert config.calibration                       # the fixture model is calibrated
    for j, m in enumerate(METRICS):
        history = [values[i, config.max_encoder_length - n:, j].astype(np.float32).astype(np.float64)
                   for i, n in enumerate(lengths)]
        scale = window_scale(history, config.min_scale[m], config.max_encoder_length)
        expected = apply_calibration(config.calibration, m, out.raw[m], scale, tuple(config.quantiles))
        np.testing.assert_allclose(out.quantiles[m], expected, rtol=1e-9, atol=1e-9)
        q = out.quantiles[m]
        assert (q >= 0).all()
        if m != "load_average":
            assert (q <= 100).all()
        assert (q[..., 0] <= q[..., 1]).all() and (q[..., 1] <= q[..., 2]).all()


def test_importance(trained, windows, fast):
    loaded, _ = trained
    _, _, values, lengths, last_epoch, profiles = windows
    out = fast.predict(values, lengths, last_epoch, profiles, with_importance=True)
    assert fast.predict(values, lengths, last_epoch, profiles).importance is None
    assert len(out.importance) == len(WINDOWS)
    for imp in out.importance:
        assert list(imp) == list(loaded.model.encoder_variables)
        assert sum(imp.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(v >= 0 for v in imp.values())


def test_bad_lengths_are_refused(windows, fast):
    _, _, values, lengths, last_epoch, profiles = windows
    short = lengths.copy()
    short[2] = fast.config.min_encoder_length - 1
    with pytest.raises(ValueError, match="min_encoder_length"):
        fast.predict(values, short, last_epoch, profiles)
    long = lengths.copy()
    long[0] = fast.config.max_encoder_length + 1
    with pytest.raises(ValueError, match=f"history of {fast.config.max_encoder_length} steps"):
        fast.predict(values, long, last_epoch, profiles)
    empty = fast.predict(values[:0], lengths[:0], last_epoch[:0], [])
    assert empty.quantiles["cpu_percent"].shape == (0, fast.config.max_prediction_length, 3)


@pytest.mark.slow
@pytest.mark.parametrize("short", [True, False])
def test_shipped_model_matches_the_library_path(short):
    """The shipped model on simulated servers (full and short windows, the full ones batched
    apart through the traced network; all full): the library path and ours agree to 1e-5 relative + 1e-4 absolute
    (percent / load units).  The trained network amplifies one-ulp input differences
    ~300-fold: with the window centre computed in float64 instead of as the library's
    float32 torch.mean, the two were 2.2e-3 apart."""
    from engine.sources import SimulatorSource
    from engine.store import WindowStore
    from engine.tft_model import find_latest_model
    from pathlib import Path

    model_dir = find_latest_model(Path(__file__).resolve().parents[1] / "models")
    loaded = load_model_dir(model_dir)
    # the whole history the model reads (the encoder, and a day more for a day_ago model)
    L, H = loaded.config.history_length, loaded.config.max_prediction_length
    store = WindowStore(capacity=L)
    store.extend_frame(SimulatorSource(16, seed=5, backfill=pd.Timedelta(minutes=5 * L)).backfill())
    w = store.windows()
    lengths = np.minimum(w.lengths, L).astype(np.int64)
    if short:
        lengths[::3] = [40, 100, 200, 287, 150, L - 1][: len(lengths[::3])]
    parts, origins = [], []
    for i, name in enumerate(w.names):
        n = int(lengths[i])
        ts = pd.to_datetime(w.last_epoch[i] - 300 * (n - 1) + 300 * np.arange(n + H), unit="s", utc=True)
        part = pd.DataFrame(np.concatenate([w.values[i, -n:], np.repeat(w.values[i, -1:], H, axis=0)]),
                            columns=list(METRICS))
        part["timestamp"], part["server_name"], part["profile"], part["segment"] = ts, name, w.profiles[i], 0
        parts.append(part)
        origins.append((f"{name}#0", name, int(w.last_epoch[i] // 300) + 1))
    origins = pd.DataFrame(origins, columns=["series", "server_name", "origin_idx"])
    stock = stock_predict(loaded, prepare_frame(pd.concat(parts, ignore_index=True)), origins)
    fast = FastTFT(loaded, trace_after=0)
    ours = fast.predict(w.values[:, -L:], lengths, w.last_epoch, w.profiles)
    for m in loaded.config.targets:
        np.testing.assert_allclose(ours.raw[m], stock[m], rtol=1e-5, atol=1e-4, err_msg=m)
    assert bool(fast._traced) == (not loaded.config.day_ago)     # the full windows' batches


@pytest.mark.parametrize("n, size, expected", [(10000, 8192, [5000, 5000]), (1000, 64, [63] * 15 + [55]),
                                               (64, 64, [64]), (65, 64, [33, 32]), (0, 64, [])])
def test_even_batches_cover_every_row_once_in_the_fewest_equal_batches(n, size, expected):
    batches = even_batches(n, size)
    assert [b.stop - b.start for b in batches] == expected
    assert [b.start for b in batches] == list(np.cumsum([0, *expected[:-1]]))[:len(batches)]


def _aligned_fleet(config, n: int, seed: int, end: int = 1_768_000_200):
    """n full windows of random values, all ending at ``end``: the batches FastTFT traces."""
    rng = np.random.default_rng(seed)
    L = config.max_encoder_length
    values = np.stack([rng.uniform(0, 100, (n, L)), rng.uniform(0, 100, (n, L)), rng.uniform(0, 100, (n, L)),
                       rng.uniform(0, 8, (n, L))], axis=-1)
    profiles = list(rng.choice(["web", "database", "batch", "gpu-box", ""], n))
    return values, np.full(n, L, dtype=np.int64), np.full(n, end, dtype=np.int64), profiles


def _same_forecasts(a, b, targets):
    for m in targets:
        np.testing.assert_array_equal(a.raw[m], b.raw[m], err_msg=m)
        np.testing.assert_array_equal(a.quantiles[m], b.quantiles[m], err_msg=m)
    assert a.importance == b.importance


@pytest.mark.parametrize("workers", [1, 2])
def test_traced_network_gives_the_network_s_forecasts_bit_for_bit(weighted, workers):
    """Full windows that end together run through a torch.jit trace of the network (no GIL
    per op); traced on one fleet, it gives the untraced network's numbers on others of the
    same shapes, whatever their values, profiles and end time."""
    targets = weighted.config.targets
    traced = FastTFT(weighted, batch_size=3, workers=workers, trace_after=0)
    plain = FastTFT(weighted, batch_size=3, workers=workers, trace=False)
    for seed, end in ((0, 1_768_000_200), (1, 1_768_000_200), (2, 1_790_123_400)):
        fleet = _aligned_fleet(weighted.config, 7, seed, end)            # 3 batches of 3, one window twice
        _same_forecasts(traced.predict(*fleet, with_importance=True), plain.predict(*fleet, with_importance=True),
                        targets)
    assert len(traced._traced) == 1 and all(net is not None for net in traced._traced.values())
    assert traced.trace_error is None and not plain._traced


def test_windows_a_trace_cannot_stand_for_run_untraced(trained):
    """A trace freezes what Python decided from its batch.  The full windows that end at the
    fleet's most common time are batched apart; a batch of the others has the same tensor
    shapes here (a short window among full ones, or two end times) but must run the
    untraced network, or its forecasts would be wrong (a third to a half of them, measured
    with the checks taken out)."""
    loaded, _ = trained
    fast, plain = FastTFT(loaded, batch_size=4, trace_after=0), FastTFT(loaded, batch_size=4, trace=False)
    values, lengths, ends, profiles = _aligned_fleet(loaded.config, 8, 3)
    short = lengths.copy()
    short[4] = loaded.config.min_encoder_length
    late = ends.copy()
    late[4:] -= 300                           # rows 4-7 a step behind, row 4 short too
    mixed = ends.copy()
    mixed[4:] -= [300, 300, 600, 600]         # rows 4-7: full windows, two end times
    for case in ((values, short, late, profiles), (values, lengths, mixed, profiles)):
        order, batches = fast._plan(case[1], case[2], True)
        assert [(b.start, b.stop, t) for b, t in batches] == [(0, 4, True), (4, 8, False)]
        _same_forecasts(fast.predict(*case, with_importance=True), plain.predict(*case, with_importance=True),
                        loaded.config.targets)
    assert [key[1][0][0] for key, net in fast._traced.items() if net is not None] == [4]
    _same_forecasts(fast.predict(values, short, ends, profiles), plain.predict(values, short, ends, profiles),
                    loaded.config.targets)
    order, batches = fast._plan(short, ends, True)                   # rows 0-3, 5-7 full, aligned
    assert list(order) == [0, 1, 2, 3, 5, 6, 7, 7, 4] and [(b.start, b.stop, t) for b, t in batches] == \
        [(0, 4, True), (4, 8, True), (8, 9, False)]
    assert fast._plan(lengths, ends, True)[0].tolist() == list(range(8))


def test_a_trace_that_differs_or_fails_is_not_used(trained, monkeypatch):
    loaded, _ = trained
    fleet = _aligned_fleet(loaded.config, 4, 4)
    want = FastTFT(loaded, trace=False).predict(*fleet)
    real_trace = torch.jit.trace

    def off_by_a_little(module, example, **kw):
        net = real_trace(module, example, **kw)
        return lambda *a: tuple(t + 1e-6 for t in net(*a))

    monkeypatch.setattr(torch.jit, "trace", off_by_a_little)
    fast = FastTFT(loaded, trace_after=0)
    _same_forecasts(fast.predict(*fleet), want, loaded.config.targets)
    assert list(fast._traced.values()) == [None] and fast.trace and fast.trace_error is None

    def broken(*a, **kw):
        raise RuntimeError("tracing is not supported\nin this build")

    monkeypatch.setattr(torch.jit, "trace", broken)
    fast = FastTFT(loaded, trace_after=0)
    _same_forecasts(fast.predict(*fleet), want, loaded.config.targets)
    assert not fast.trace and fast.trace_error == "RuntimeError: tracing is not supported in this build"
    assert not loaded.model.__dict__.get("_jit_is_scripting") and not fast.model.__dict__.get("_jit_is_scripting")


def test_traced_batches_come_in_a_few_sizes_whatever_the_fleet_s(trained, monkeypatch):
    """The full, aligned windows go in batches of exactly batch_size, the last filled up to a
    multiple of 16 with its last window again: fleets of 61 to 65 servers trace batches of 64
    and 16 only, and each window's forecast is its own (checked against each window alone)."""
    import engine.fast_tft as fast_tft

    loaded, _ = trained
    fast = FastTFT(loaded, batch_size=64, workers=2, trace_after=0)
    targets = loaded.config.targets
    for n in (61, 62, 63, 64, 65):
        fleet = _aligned_fleet(loaded.config, n, n)
        out = fast.predict(*fleet, with_importance=True)
        _same_forecasts(out, FastTFT(loaded, batch_size=64, trace=False).predict(*fleet, with_importance=True),
                        targets)
    assert sorted(key[1][0][0] for key in fast._traced) == [16, 64]
    values, lengths, ends, profiles = fleet
    for i in (0, 17, 63, 64):
        alone = fast.predict(values[i:i + 1], lengths[i:i + 1], ends[i:i + 1], profiles[i:i + 1], with_importance=True)
        for m in targets:
            np.testing.assert_allclose(out.raw[m][i], alone.raw[m][0], rtol=1e-5, atol=1e-5, err_msg=m)
        assert out.importance[i] == pytest.approx(alone.importance[0], rel=1e-5, abs=1e-6)
    order, batches = fast._plan(lengths, ends, True)
    assert list(order) == [*range(65), *[64] * 15] and [(b.start, b.stop, t) for b, t in batches] == \
        [(0, 64, True), (64, 80, True)]
    # torch never frees what a trace compiles: a FastTFT makes at most MAX_TRACES of them
    assert fast_tft.MAX_TRACES == 4
    monkeypatch.setattr(fast_tft, "MAX_TRACES", 2)
    small, plain = FastTFT(loaded, batch_size=64, trace_after=0), FastTFT(loaded, batch_size=64, trace=False)
    for n in (10, 20, 40, 10):
        fleet = _aligned_fleet(loaded.config, n, n)
        _same_forecasts(small.predict(*fleet), plain.predict(*fleet), targets)
    assert [key[1][0][0] for key in small._traced] == [16, 32]          # 48 runs untraced


def test_a_nan_in_the_batch_traced_leaves_its_window_nan_and_the_trace_kept(trained):
    loaded, _ = trained
    values, lengths, ends, profiles = _aligned_fleet(loaded.config, 4, 5)
    values[2, -3, 1] = np.nan
    fast = FastTFT(loaded, trace_after=2)
    want = FastTFT(loaded, trace=False).predict(values, lengths, ends, profiles)
    for calls in (1, 2, 3, 4):   # traced once 2 batches ran untraced
        out = fast.predict(values, lengths, ends, profiles)
        _same_forecasts(out, want, loaded.config.targets)
        assert len(fast._traced) == (calls >= 3)
    assert np.isnan(out.raw["cpu_percent"][2]).all() and np.isfinite(out.raw["cpu_percent"][[0, 1, 3]]).all()
    assert list(fast._traced.values()) != [None]


def test_a_shape_is_traced_once_enough_batches_ran_untraced(trained):
    """Tracing costs about 8 forwards: a short-lived FastTFT (tft-top predict) traces nothing;
    after TRACE_AFTER batches, a shape is traced the second time it comes."""
    from engine.fast_tft import TRACE_AFTER

    loaded, _ = trained
    fast = FastTFT(loaded, batch_size=32)                          # traced shapes: 16 and 32 windows
    assert fast.trace_after == TRACE_AFTER == 16
    for _ in range(16):
        fast.predict(*_aligned_fleet(loaded.config, 16, 6))          # one batch of 16
    assert not fast._traced
    fast.predict(*_aligned_fleet(loaded.config, 48, 7))              # 32 (first time) and 16
    assert [key[1][0][0] for key in fast._traced] == [16]
    fast.predict(*_aligned_fleet(loaded.config, 48, 8))
    assert sorted(key[1][0][0] for key in fast._traced) == [16, 32]
