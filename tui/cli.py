"""The `tft-top` command: the TUI by default, and the train / eval / predict subcommands.

Engine work is imported lazily so that `tft-top --help` and the first frame of the
TUI do not wait for torch.  Errors the user can fix (bad data, a bad model directory)
are printed as one line and exit non-zero; no tracebacks.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path


def _here_or_in_checkout(name: str, holds=Path.exists) -> Path:
    """``name`` in the working directory, else in the checkout this tft-top runs from (the
    README's editable install), whichever ``holds`` what is looked for: run from another
    directory, the app put every server on the heuristic ("no model directory found under
    models/") and had no demo fleet."""
    here = Path(name)
    if holds(here):
        return here
    there = Path(__file__).resolve().parents[1] / name
    return there if holds(there) else here


def _holds_a_model(path: Path) -> bool:
    # (an unrelated ./models of other weights, common on ML hosts, hid the shipped model)
    from engine.model_dir import find_latest_model

    try:
        return path.is_dir() and find_latest_model(path) is not None
    except OSError:         # (an unreadable ./models: every command died importing this module)
        return False


DEFAULT_MODELS = _here_or_in_checkout("models", _holds_a_model)
DEFAULT_DATA = _here_or_in_checkout("demo_data")


def _fail(message: str, code: int = 2) -> int:
    from engine.contract import printable

    print(f"tft-top: {printable(message)}", file=sys.stderr)
    return code


def _counted(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number in [minimum, maximum] (argparse prints one line otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(
                f"{value}: give {minimum} or more" if maximum is None else f"{value}: give {minimum}..{maximum}")
        return value
    return parse


def _speed(text: str) -> float:
    """An argparse type: ticks per second, a finite number from 0.001 to 1000 (1/0.001 s: a
    tick every 17 minutes; NaN would never tick, and the app could not change it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.001 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text}: give a number of ticks per second from 0.001 to 1000")
    return value


def _positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text}: give a number > 0")
    return value


MAX_TRAIN_MINUTES = 10 ** 7      # 19 years: Lightning's timer overflows Python's timedelta from ~1.4e12


def _minutes(text: str) -> float:
    """An argparse type: --max-time, a finite number of minutes > 0 and at most MAX_TRAIN_MINUTES."""
    value = _positive(text)
    if value > MAX_TRAIN_MINUTES:
        raise argparse.ArgumentTypeError(f"{text}: give at most {MAX_TRAIN_MINUTES:,} minutes (19 years)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from engine.thresholds import THRESHOLDS_HELP      # (numbers only: no pandas, no torch)

    parser = argparse.ArgumentParser(
        prog="tft-top",
        description="htop for the next eight hours: TFT forecasts of a server fleet's CPU, memory, disk and load.",
    )
    parser.add_argument("--model", type=Path, help="model directory (default: newest under models/)")
    parser.add_argument("--replay", type=Path, help="replay a recorded fleet (default: demo_data/)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where the model runs (default auto: CUDA when present)")
    parser.add_argument("--simulate", type=int, default=None, metavar="N",
                        help="watch a live synthetic fleet of N servers instead of a replay")
    parser.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                        help="ticks (5-minute steps) per second (default 1; +/- change it in the app)")
    parser.add_argument("--local", action="store_true",
                        help="watch this host (CPU, memory, disk of /, 1-minute load), sampled every 5 min")
    parser.add_argument("--local-interval", type=float, default=None, metavar="SECONDS",
                        help="with --local: sample every SECONDS instead (a demo; samples in one 5-minute step are averaged)")
    parser.add_argument("--prometheus", default=None, metavar="URL",
                        help="watch the node_exporter fleet in a Prometheus server, e.g. http://localhost:9090")
    parser.add_argument("--selector", default=None, metavar="MATCHERS",
                        help='with --prometheus: PromQL label matchers for the node_exporter series (default: {job="node"})')
    parser.add_argument("--connect", metavar="URL", default=None,
                        help="watch a running `tft-top serve` daemon (e.g. http://127.0.0.1:8000) instead of "
                             "running the model here")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="the daemon's API key, for --connect (default: $TFT_TOP_API_KEY)")
    parser.add_argument("--thresholds", default=None, metavar="SPEC", help=THRESHOLDS_HELP)
    sub = parser.add_subparsers(dest="command")

    tr = sub.add_parser("train", help="train a TFT and write a new model directory")
    tr.add_argument("--data", action="append", required=True, help="data file or directory (repeatable)")
    tr.add_argument("--out", default="models", help="where the model directory is written (default: models/)")
    tr.add_argument("--epochs", type=_counted(1), default=20, help="at most this many epochs (default 20)")
    tr.add_argument("--max-time", type=_minutes, default=None, metavar="MIN", help="stop training after MIN minutes")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where to train (default auto: CUDA when present; several GPUs: Lightning's DDP)")
    tr.add_argument("--batches-per-epoch", type=_counted(1), default=200,
                    help="training batches per epoch (default 200)")
    tr.add_argument("--batch-size", type=_counted(1, 4096), default=64, help="windows per batch (default 64, at most 4096)")
    tr.add_argument("--hidden-size", type=_counted(1), default=None,
                    help="the TFT's hidden size for a new model (default 32)")
    tr.add_argument("--seed", type=_counted(0, 2**32 - 1), default=0, help="random seed of the run (default 0)")
    tr.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    tr.add_argument("--init-from", default=None, metavar="DIR",
                    help="warm start: continue from this model directory's weights (same architecture; "
                         "with --day-ago on a model without it, every weight the new inputs leave unchanged)")
    tr.add_argument("--loss-weights", default=None, metavar="W,W,W,W",
                    help="per-target loss weights: cpu, memory, disk, load (default 1,1,1,5 for a new model; "
                         "--init-from keeps its model's)")
    tr.add_argument("--ramp-share", type=float, default=None, metavar="S",
                    help="draw a share S of training windows from labelled incident ramps (incidents.csv)")
    tr.add_argument("--ramp-kinds", default=None, metavar="KIND=W,...",
                    help="with --ramp-share: relative draw weight of each incident kind's ramp windows "
                         "(default 1 each), e.g. cpu_runaway=4")
    tr.add_argument("--center", choices=("mean", "last"), default=None,
                    help="centre each window's normalisation on the encoder's mean or its last value "
                         "(default: last for a new model, the --init-from model's otherwise)")
    tr.add_argument("--day-ago", action=argparse.BooleanOptionalAction, default=None,
                    help="give the model each metric's value at the same time the day before as a known input "
                         "(servers then need a day of history for it to be known; default: off for a new model, "
                         "the --init-from model's otherwise)")
    tr.add_argument("--workers", type=_counted(0, 64), default=0, metavar="N",
                    help="data-loader worker processes (default 0: batches are made in the training "
                         "process; on a GPU machine a few workers keep the GPU fed)")
    tr.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                    help="Adam learning rate (default 0.003, or the --init-from model's)")

    ca = sub.add_parser("calibrate", help="fit a model's p10-p90 band calibration again (rewrites its config.json)")
    ca.add_argument("--model", type=Path, required=True, help="model directory")
    ca.add_argument("--data", action="append", required=True, help="data file or directory (repeatable), as for train")
    ca.add_argument("--force", action="store_true",
                    help="replace the calibration even when the new one rests on under half its windows or "
                         "lacks some of its per-profile tables")

    ev = sub.add_parser("eval", help="rolling-origin evaluation against seasonal-naive and linear-trend baselines")
    ev.add_argument("--model", type=Path, default=None, help="model directory (default: newest under models/)")
    ev.add_argument("--data", action="append", required=True, help="data file or directory (repeatable)")
    ev.add_argument("--every", type=_counted(1), default=24, help="steps between forecast origins (default 24 = 2 h)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ev.add_argument("--no-alerts", action="store_true", help="skip the alert replay over labelled incidents")
    ev.add_argument("--record", action="store_true",
                    help="also store this evaluation in the model's training_metadata.json")

    pr = sub.add_parser("predict", help="forecast the fleet as of the end of the data (or --at)")
    pr.add_argument("--model", type=Path, default=None, help="model directory (default: newest under models/)")
    pr.add_argument("--data", type=Path, action="append", default=None,
                    help="data file or directory (default: demo_data/; one)")
    pr.add_argument("--at", default=None, metavar="TIMESTAMP", help="forecast as of this time (ISO 8601 or epoch seconds)")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where the model runs (default auto: CUDA when present)")
    pr.add_argument("--json", action="store_true", help="print the snapshot JSON")
    pr.add_argument("--thresholds", default=argparse.SUPPRESS, metavar="SPEC", help=THRESHOLDS_HELP)

    sv = sub.add_parser("serve", help="run the forecasting daemon: REST + WebSocket API (docs at /docs)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; any other address needs an API key)")
    sv.add_argument("--port", type=_counted(0, 65535), default=8000, help="port to listen on (default 8000)")
    sv.add_argument("--model", type=Path, default=None, help="model directory (default: newest under models/)")
    feed = sv.add_mutually_exclusive_group()
    feed.add_argument("--replay", type=Path, default=None, metavar="DIR", help="replay a recorded fleet")
    feed.add_argument("--simulate", type=int, default=None, metavar="N",
                      help="a live synthetic fleet of N servers (none of these three: a fleet fed only by "
                           "POST /metrics)")
    feed.add_argument("--prometheus", default=None, metavar="URL",
                      help="the node_exporter fleet in a Prometheus server, e.g. http://localhost:9090")
    sv.add_argument("--selector", default=None, metavar="MATCHERS",
                    help='with --prometheus: PromQL label matchers for the node_exporter series (default: {job="node"})')
    sv.add_argument("--speed", type=_speed, default=None, metavar="X",
                    help="--replay/--simulate: ticks (5-minute steps) per second (default 1)")
    sv.add_argument("--interval", type=float, default=None, metavar="S",
                    help="seconds between ticks (default 1/speed; 5 for --prometheus, which forecasts when "
                         "a new 5-minute step has come, and for a fleet fed only by POST /metrics)")
    sv.add_argument("--api-key", default=None, metavar="KEY",
                    help="require this key on every route but /health, as 'Authorization: Bearer KEY' or "
                         "'X-API-Key: KEY' (default: $TFT_TOP_API_KEY, which keeps it out of `ps`)")
    sv.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="where the model runs (default auto: CUDA when present)")
    sv.add_argument("--seed", type=_counted(0, 2**32 - 1), default=None, help="--simulate: the synthetic fleet's seed (default 0)")
    sv.add_argument("--max-body", type=_counted(1), default=1_000_000, metavar="BYTES",
                    help="largest request body accepted (default 1000000; larger: 413)")
    sv.add_argument("--quiet", action="store_true", help="no access log, and no line per WebSocket connection")
    sv.add_argument("--thresholds", default=argparse.SUPPRESS, metavar="SPEC", help=THRESHOLDS_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    # pytorch-forecasting wraps read-only numpy arrays in tensors it only reads: torch's
    # warning about it is noise in every train / eval / calibrate run
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
    if args.command in ("train", "eval", "calibrate") and args.thresholds:
        # (eval scores alerts against incidents labelled at the default critical levels)
        return _fail(f"--thresholds does not apply to `tft-top {args.command}`: it is for the app, predict and serve")
    if args.command == "predict":
        if args.data and len(args.data) > 1:     # (it used to keep the last one, silently)
            return _fail("predict reads one --data (a file or a directory of files)")
        args.data = args.data[0] if args.data else DEFAULT_DATA
    data = getattr(args, "data", None)
    if isinstance(data, list):
        seen = set()
        for d in data:
            key = Path(d).resolve()
            if key in seen:      # eval would score it twice, train weigh it twice
                return _fail(f"--data {d} is given twice")
            seen.add(key)
    if args.command is not None and args.command != "serve":
        try:
            return _command(args)
        finally:
            _print_notes()
    try:
        if args.command == "serve":
            return _serve(args)
        if args.connect is not None:        # ("" ran the demo replay)
            return _connect(args)
        return _tui(args)
    except KeyboardInterrupt:
        return 130


_INTERRUPTED = {
    "train": "no model was written unless 'model written to' was printed above (a model directory is renamed "
             "into place only when complete)",
    "eval": "nothing was recorded",
    "calibrate": "the calibration in config.json is the old one or the new one, never part of each (the file is "
                 "replaced whole)",
    "predict": "",
}


def _say_interrupted(command: str) -> None:
    what = _INTERRUPTED.get(command, "")
    try:
        print(f"tft-top {command}: interrupted" + (f": {what}" if what else ""), file=sys.stderr)
    except (OSError, ValueError):
        pass


def _print_notes() -> None:
    """What loading the data noted (ignored columns, skipped sidecar files), once each, on stderr."""
    from engine.contract import drain_notes, printable

    for note in drain_notes():
        try:
            print(f"tft-top: note: {printable(note)}", file=sys.stderr)
        except (OSError, ValueError):   # stderr closed (a broken pipe)
            return


def _command(args) -> int:
    try:
        if args.command == "train":
            return _train(args)
        if args.command in ("eval", "calibrate"):
            from engine.training import ctrl_c_passes_through

            # the library's predict runs Lightning, which turns a Ctrl-C into a silent exit 1
            with ctrl_c_passes_through():
                return _eval(args) if args.command == "eval" else _calibrate(args)
        if args.command == "predict":
            return _predict(args)
        raise AssertionError(f"unknown command {args.command}")
    except KeyboardInterrupt:
        _say_interrupted(args.command)
        return 130
    except BrokenPipeError:  # e.g. `tft-top predict --json | head`
        sys.stderr.close()
        return 0


def _no_device(device: str) -> str | None:
    """Why an explicit ``--device cuda`` cannot run here, or None: the app, a one-shot command
    and a daemon refuse it (predict put every server on the heuristic and exited 0), as train
    does."""
    if device != "cuda":
        return None
    from engine.forecaster import resolve_device
    from engine.tft_model import DeviceError

    try:
        resolve_device(device)
    except DeviceError as exc:
        return str(exc)
    return None


def _known_errors():
    from engine.contract import DataError
    from engine.tft_model import DeviceError, ModelLoadError

    return (DataError, ModelLoadError, DeviceError)


def _no_model_there(path) -> str | None:
    """Why an explicit --model cannot be used before anything starts: a path that does not
    exist is a typo, not a model that failed (that one runs on the heuristic, labelled), and a
    script must not read exit 0 for a run that quietly left the model out."""
    if path is None or Path(path).exists():
        return None
    return f"--model {path}: no such file or directory (without --model the newest model under models/ is used)"


def _resolve_model(path: Path | None) -> Path:
    from engine.tft_model import ModelLoadError, find_latest_model

    if path is not None:
        return path
    latest = find_latest_model(DEFAULT_MODELS)
    if latest is None:
        raise ModelLoadError(f"no model directory under {DEFAULT_MODELS}/ (train one with `tft-top train`)")
    return latest


def _train(args) -> int:
    from engine.tft_model import MAX_HIDDEN_SIZE, ModelConfig
    from engine.training import MAX_LOSS_WEIGHT, TrainOptions, train

    if args.hidden_size and args.init_from is not None:
        return _fail("--hidden-size sizes a new model; --init-from continues one of its own size (leave one out)")
    if args.hidden_size and args.hidden_size > MAX_HIDDEN_SIZE:
        # (a larger model would be written and then refused by every loader)
        return _fail(f"--hidden-size {args.hidden_size}: give 1..{MAX_HIDDEN_SIZE}")
    config = ModelConfig(hidden_size=args.hidden_size) if args.hidden_size else None
    weights = None
    if args.loss_weights is not None:
        try:
            weights = tuple(float(w) for w in args.loss_weights.split(","))
        except ValueError:
            weights = ()
        # (NaN or inf made the loss NaN at the first step; all zeros trained nothing and shipped it)
        if len(weights) != 4 or not all(0 <= w <= MAX_LOSS_WEIGHT for w in weights) or not any(weights):
            return _fail(f"--loss-weights {args.loss_weights!r}: give four numbers from 0 to {MAX_LOSS_WEIGHT:g}, "
                         "not all 0 (cpu,memory,disk,load)")
    if args.ramp_share is not None and not 0 < args.ramp_share < 1:
        return _fail(f"--ramp-share {args.ramp_share}: give a number between 0 and 1")
    kinds = None
    if args.ramp_kinds is not None:
        try:
            kinds = {k.strip(): float(w) for k, w in (part.split("=") for part in args.ramp_kinds.split(","))}
        except ValueError:
            kinds = {}
        if not kinds or any(not k or not 0 < w <= MAX_LOSS_WEIGHT for k, w in kinds.items()):
            return _fail(f"--ramp-kinds {args.ramp_kinds!r}: give KIND=WEIGHT pairs with weights above 0 and at "
                         f"most {MAX_LOSS_WEIGHT:g}, e.g. cpu_runaway=4")
        if not args.ramp_share:
            return _fail(f"--ramp-kinds {args.ramp_kinds!r} weights the ramps that --ramp-share draws: "
                         "give --ramp-share too, e.g. --ramp-share 0.25")
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        return _fail(f"--learning-rate {args.learning_rate}: give a number between 0 and 1")
    opts = TrainOptions(data=args.data, out=args.out, epochs=args.epochs, max_time_min=args.max_time,
                        device=args.device, batch_size=args.batch_size,
                        batches_per_epoch=args.batches_per_epoch, seed=args.seed, config=config,
                        evaluate=not args.no_eval, init_from=args.init_from,
                        loss_weights=weights, learning_rate=args.learning_rate, workers=args.workers,
                        ramp_share=args.ramp_share, ramp_kinds=kinds, center=args.center,
                        day_ago=args.day_ago)
    import tempfile

    if Path(args.out).exists() and not Path(args.out).is_dir():
        return _fail(f"--out {args.out}: not a directory")
    # the directories this run creates for --out (the topmost first missing one and below it):
    # a run that writes nothing leaves none of them behind
    made = [d for d in (Path(args.out), *Path(args.out).parents) if not d.exists()]
    try:       # before the training, not after it: a run's work must not be lost to a bad --out
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"--out {args.out}: cannot create the directory ({exc.strerror or exc})")
    try:
        Path(tempfile.mkdtemp(prefix=".tft-top-write-test-", dir=args.out)).rmdir()   # really try
    except OSError as exc:
        for d in made:       # (created here, deepest first)
            with contextlib.suppress(OSError):
                d.rmdir()
        return _fail(f"--out {args.out}: cannot write there ({exc.strerror or exc})")
    code = 1
    try:
        code = _run_training(train, opts, args.out)
        return code
    finally:
        if code != 0:     # failed or interrupted: deepest first; rmdir leaves any that holds something
            for d in made:
                with contextlib.suppress(OSError):
                    d.rmdir()


def _run_training(train, opts, out_arg: str) -> int:
    try:
        train(opts)
    except _known_errors() as exc:
        return _fail(str(exc))
    except OSError as exc:
        name = getattr(exc, "filename", None)
        out_dir = Path(out_arg).resolve()
        if name and out_dir not in (Path(name).resolve(), *Path(name).resolve().parents):
            return _fail(f"{name}: {exc.strerror or exc}")       # not --out's fault: name the file
        return _fail(f"--out {out_arg}: writing the model failed ({exc.strerror or exc})")
    return 0


def _calibrate(args) -> int:
    from engine.training import TrainOptions, recalibrate

    try:
        cal = recalibrate(args.model, TrainOptions(data=args.data), force=args.force)
    except _known_errors() as exc:
        return _fail(str(exc))
    except OSError as exc:            # a read-only model directory: nothing was changed
        return _fail(f"{exc.filename or args.model}: cannot rewrite the model ({exc.strerror or exc})")
    groups = ", ".join(sorted(cal.get("groups") or {})) or "none"
    print(f"{args.model}: calibrated on {cal['fitted_on_windows']} windows (per-profile groups: {groups})")
    return 0


def _eval(args) -> int:
    from engine.alert_eval import evaluate_alerts, format_alert_evaluation
    import json

    from engine.evaluation import evaluate_paths, format_reports, reports_record
    from engine.tft_model import load_model_dir

    try:
        model_dir = _resolve_model(args.model)
        loaded = load_model_dir(model_dir)
        if not args.no_alerts:
            from engine.alert_eval import read_incidents

            for path in args.data:      # a bad incidents row is refused before minutes of evaluation
                read_incidents(path)
        reports = evaluate_paths(loaded, args.data, every=args.every)
        alerts = {} if args.no_alerts else {
            path: ev for path in args.data
            if (ev := evaluate_alerts(path, model_dir, device="cpu")) is not None
        }
    except _known_errors() as exc:
        return _fail(str(exc))
    if not alerts and not any(r.results for r in reports):
        from engine.evaluation import nothing_to_score

        return _fail(f"{', '.join(map(str, args.data))}: {nothing_to_score(args.every)}")
    record = reports_record(reports, {"model_dir": str(model_dir),
                                      "alerts": {p: ev.to_json() for p, ev in alerts.items()},
                                      "alerts_skipped": bool(args.no_alerts),     # (not "no incidents.csv")
                                      "training_servers_known": "servers" in loaded.metadata})
    if loaded.metadata_problem or "servers" not in loaded.metadata:
        # its list of training servers is lost: every server counts as never seen, and the
        # never-seen vs seen target has nothing to compare (its cells are left out, not met)
        why = loaded.metadata_problem or f"{model_dir}/training_metadata.json records no training servers"
        print(f"tft-top: note: {why}: every server is counted as never seen, and the never-seen vs seen target "
              "is not scored", file=sys.stderr)
    for report in reports:
        if report.note:
            print(f"tft-top: note: {report.note}", file=sys.stderr)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"model: {model_dir}")
        print(format_reports(reports))
        for path, ev in alerts.items():
            print(format_alert_evaluation(path, ev))
    if args.record:       # after printing: a failed write must not lose the evaluation
        from engine.tft_model import write_metadata

        if loaded.metadata_problem:
            return _fail(f"not recorded: {loaded.metadata_problem} (it is left as it is)")
        meta = dict(loaded.metadata)
        import pandas as pd

        recorded = dict(record)
        # how it was made: a record without alerts must not read as "no incidents.csv"
        recorded.update({"recorded_utc": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "every": args.every, "data": [str(p) for p in args.data]})
        meta["evaluation"] = recorded
        try:
            write_metadata(model_dir, meta)
        except OSError as exc:
            return _fail(f"not recorded: {exc.filename or model_dir}: {exc.strerror or exc}")
    return 0


def _predict(args) -> int:
    import json

    import pandas as pd

    from engine.runtime import predict_at
    from engine.summary import format_summary

    at = None
    if args.at is not None:
        try:
            text = args.at.strip()
            # epoch seconds, as the data files accept them
            # (9+ digits: epoch seconds; 20261127 is an ISO 8601 basic date)
            if re.fullmatch(r"\d{9,}(\.\d*)?", text):
                at = pd.Timestamp(float(text), unit="s")
            elif re.fullmatch(r"\d{4}-?\d{2}-?\d{2}([T ]\S.*)?", text):
                at = pd.Timestamp(text)
            else:       # 01/06/2026 is the 6th of January to pandas and the 1st of June to many
                at = pd.NaT
        except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
            at = pd.NaT
        if pd.isna(at):
            return _fail(f"--at {args.at!r} is not an ISO 8601 time or epoch seconds")
        if not (1970 <= at.year <= 2200):
            hint = " (epoch milliseconds? give seconds)" if re.fullmatch(r"\d{12,}(\.\d*)?", text) else ""
            return _fail(f"--at {args.at!r} is the year {at.year}: not a time of any data{hint}")
        at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    thresholds = _thresholds(args)
    if thresholds is None:
        return 2
    problem = _no_device(args.device) or _no_model_there(args.model)
    if problem:
        return _fail(problem)
    model_dir = args.model
    if model_dir is None:
        from engine.tft_model import find_latest_model

        model_dir = find_latest_model(DEFAULT_MODELS)
    try:
        snap = predict_at(args.data, model_dir, at=at, device=args.device, thresholds=thresholds)
    except _known_errors() as exc:
        return _fail(str(exc))
    print(json.dumps(snap.to_json(), indent=2) if args.json else format_summary(snap))
    return 0


def _thresholds(args):
    """The --thresholds of ``args`` over the defaults; None (after one line on stderr) when bad."""
    from engine.thresholds import parse_thresholds

    try:
        return parse_thresholds(getattr(args, "thresholds", None))
    except ValueError as exc:
        _fail(str(exc))
        return None


def _serve(args) -> int:
    from engine.daemon import DaemonError, api_key_from_env, build_daemon, check_bind, serve
    from engine.live import DEFAULT_SELECTOR
    from engine.tft_model import find_latest_model

    if args.seed is not None and args.simulate is None:     # (it was ignored without a word)
        return _fail("--seed is the --simulate fleet's seed: give --simulate N too")
    if args.speed is not None and args.replay is None and args.simulate is None:
        return _fail("--speed sets a replay's or a simulation's pace; a live fleet (--prometheus, POST /metrics) "
                     "keeps the wall clock's: see --interval")
    if args.selector is not None and args.prometheus is None:
        return _fail("--selector goes with --prometheus (it picks the node_exporter series)")
    thresholds = _thresholds(args)
    if thresholds is None:
        return 2
    problem = _no_device(args.device) or _no_model_there(args.model)
    if problem:
        return _fail(problem)
    api_key = api_key_from_env(args.api_key)
    model = args.model if args.model is not None else find_latest_model(DEFAULT_MODELS)
    try:
        check_bind(args.host, api_key)          # before loading any data
        daemon = build_daemon(model=model, replay=args.replay, simulate=args.simulate, seed=args.seed or 0,
                              speed=args.speed or 1.0, interval=args.interval, api_key=api_key, device=args.device,
                              max_body=args.max_body, thresholds=thresholds, prometheus=args.prometheus,
                              selector=args.selector if args.selector is not None else DEFAULT_SELECTOR)
        _print_notes()
        # (--quiet: uvicorn's own INFO lines too, two per WebSocket connection, without end)
        serve(daemon, host=args.host, port=args.port, access_log=not args.quiet,
              log_level="warning" if args.quiet else "info")
    except (DaemonError, *_known_errors()) as exc:
        return _fail(str(exc))
    return 0


def _connect(args) -> int:
    import os

    from engine.remote import RemoteEngine, normalise_url
    from tui.app import run_app

    try:
        url = normalise_url(args.connect)
    except ValueError as exc:
        return _fail(str(exc))
    if args.thresholds:
        return _fail("--thresholds with --connect: the daemon's thresholds apply (give them to `tft-top serve`)")
    # the daemon runs the model and its fleet: these were ignored without a word
    ignored = [flag for flag, given in (("--model", args.model is not None), ("--replay", args.replay is not None),
                                        ("--simulate", args.simulate is not None), ("--local", args.local),
                                        ("--local-interval", args.local_interval is not None),
                                        ("--prometheus", args.prometheus is not None),
                                        ("--selector", args.selector is not None),
                                        ("--device", args.device != "auto")) if given]
    if ignored:
        return _fail(f"{', '.join(ignored)} with --connect: the daemon's model and fleet apply "
                     f"(give {'them' if len(ignored) > 1 else 'it'} to `tft-top serve`)")
    api_key = args.api_key or os.environ.get("TFT_TOP_API_KEY") or None
    return run_app(engine_factory=lambda: RemoteEngine(url, api_key), speed=args.speed, live=True)


def _tui(args) -> int:
    from tui.app import run_app

    chosen = [name for name, on in (("--replay", args.replay is not None), ("--simulate", args.simulate is not None),
                                    ("--local", args.local), ("--prometheus", args.prometheus is not None)) if on]
    if len(chosen) > 1:
        return _fail(f"{' and '.join(chosen)} exclude each other: pick one fleet")
    if args.local_interval is not None and not args.local:
        return _fail("--local-interval goes with --local (it sets how often this host is sampled)")
    if args.local_interval is not None and not 1 <= args.local_interval <= 86_400:
        # (inf sampled the host once, and never again)
        return _fail(f"--local-interval must be from 1 to 86400 seconds (a day), not {args.local_interval:g}")
    if args.selector is not None and not args.prometheus:
        return _fail("--selector goes with --prometheus (it picks the Prometheus series to read)")
    from engine.sources import simulated_count_problem

    problem = ((None if args.simulate is None else simulated_count_problem(args.simulate))
               or _no_device(args.device) or _no_model_there(args.model))
    if problem:
        return _fail(problem)
    if args.api_key is not None:
        return _fail("--api-key goes with --connect (the daemon's key)")
    thresholds = _thresholds(args)
    if thresholds is None:
        return 2
    source_factory = None
    if args.local:
        from engine.live import LocalSource

        source_factory = lambda: LocalSource(interval_seconds=300, demo_interval=args.local_interval)  # noqa: E731
    elif args.prometheus:
        from engine.live import PrometheusSource

        from engine.live import DEFAULT_SELECTOR

        selector = args.selector if args.selector is not None else DEFAULT_SELECTOR
        try:
            PrometheusSource(args.prometheus, selector=selector)   # bad URL or selector: one line, now
        except ValueError as exc:
            return _fail(str(exc))
        source_factory = lambda: PrometheusSource(args.prometheus, selector=selector)  # noqa: E731
    return run_app(model=args.model, replay=args.replay or DEFAULT_DATA, device=args.device,
                   models_root=DEFAULT_MODELS, simulate=args.simulate, speed=args.speed, source_factory=source_factory,
                   live=True if source_factory else None, thresholds=thresholds)


if __name__ == "__main__":
    sys.exit(main())
