"""The `tft-top` command: the TUI by default, and the train / eval / predict subcommands.

Engine work is imported lazily so that `tft-top --help` and the first frame of the
TUI do not wait for torch.  Errors the user can fix (bad data, a bad model directory)
are printed as one line and exit non-zero; no tracebacks.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_MODELS = Path("models")
DEFAULT_DATA = Path("demo_data")


def _fail(message: str, code: int = 2) -> int:
    print(f"tft-top: {message}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tft-top",
        description="htop for the next eight hours: TFT forecasts of a server fleet's CPU, memory, disk and load.",
    )
    parser.add_argument("--model", type=Path, help="model directory (default: newest under models/)")
    parser.add_argument("--replay", type=Path, help="replay a recorded fleet (default: demo_data/)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    sub = parser.add_subparsers(dest="command")

    tr = sub.add_parser("train", help="train a TFT and write a new model directory")
    tr.add_argument("--data", action="append", required=True, help="data file or directory (repeatable)")
    tr.add_argument("--out", default="models", help="where the model directory is written (default: models/)")
    tr.add_argument("--epochs", type=int, default=20)
    tr.add_argument("--max-time", type=float, default=None, metavar="MIN", help="stop training after MIN minutes")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--batches-per-epoch", type=int, default=200)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--hidden-size", type=int, default=None)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")

    ev = sub.add_parser("eval", help="rolling-origin evaluation against seasonal-naive and linear-trend baselines")
    ev.add_argument("--model", type=Path, default=None, help="model directory (default: newest under models/)")
    ev.add_argument("--data", action="append", required=True, help="data file or directory (repeatable)")
    ev.add_argument("--every", type=int, default=24, help="steps between forecast origins (default 24 = 2 h)")
    ev.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        return _tui(args)
    except KeyboardInterrupt:
        return 130


def _known_errors():
    from engine.contract import DataError
    from engine.tft_model import ModelLoadError

    return (DataError, ModelLoadError)


def _resolve_model(path: Path | None) -> Path:
    from engine.tft_model import ModelLoadError, find_latest_model

    if path is not None:
        return path
    latest = find_latest_model(DEFAULT_MODELS)
    if latest is None:
        raise ModelLoadError(f"no model directory under {DEFAULT_MODELS}/ (train one with `tft-top train`)")
    return latest


def _train(args) -> int:
    from engine.tft_model import ModelConfig
    from engine.training import TrainOptions, train

    config = ModelConfig(hidden_size=args.hidden_size) if args.hidden_size else None
    opts = TrainOptions(data=args.data, out=args.out, epochs=args.epochs, max_time_min=args.max_time,
                        device=args.device, batch_size=args.batch_size,
                        batches_per_epoch=args.batches_per_epoch, seed=args.seed, config=config,
                        evaluate=not args.no_eval)
    try:
        out = train(opts)
    except _known_errors() as exc:
        return _fail(str(exc))
    print(f"model written to {out}")
    return 0


def _eval(args) -> int:
    from engine.evaluation import evaluate_paths, format_reports, reports_json
    from engine.tft_model import load_model_dir

    try:
        model_dir = _resolve_model(args.model)
        loaded = load_model_dir(model_dir)
        reports = evaluate_paths(loaded, args.data, every=args.every)
    except _known_errors() as exc:
        return _fail(str(exc))
    if args.json:
        print(reports_json(reports, {"model_dir": str(model_dir)}))
    else:
        print(f"model: {model_dir}")
        print(format_reports(reports))
    return 0


def _tui(args) -> int:
    from tui.app import run_app

    return run_app(model=args.model, replay=args.replay or DEFAULT_DATA, device=args.device)


if __name__ == "__main__":
    sys.exit(main())
