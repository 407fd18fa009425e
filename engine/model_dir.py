"""The model directory's names, without torch: ``models/tft_model_<UTC stamp>/`` holding
``model.safetensors``, ``config.json`` and ``training_metadata.json``.

engine.tft_model reads and writes the files (and re-exports these names); this module only
finds the newest directory, so that the command line can choose its default before
anything heavy is imported (the first frame of the TUI does not wait for torch).
"""
from __future__ import annotations

import re
from pathlib import Path

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METADATA_FILE = "training_metadata.json"
MODEL_DIR_PREFIX = "tft_model_"

_STAMPED = re.compile(rf"^{MODEL_DIR_PREFIX}\d{{8}}T\d{{6}}Z$")


def find_latest_model(models_root: Path | str) -> Path | None:
    """The newest ``tft_model_<UTC stamp>`` directory under ``models_root`` that holds a
    config and weights (stamps sort by time; "tft_model_old_backup" or an empty directory
    from an interrupted run is not a candidate).  None when there is none."""
    root = Path(models_root)
    if not root.is_dir():
        return None
    dirs = sorted(p for p in root.iterdir() if _STAMPED.match(p.name) and p.is_dir()
                  and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file())
    return dirs[-1] if dirs else None


def uncalibrated_words(md: dict) -> str:
    """The badge's words for a model whose bands lack a calibration, from a snapshot's
    metadata: ", bands uncalibrated", or ", disk bands uncalibrated" for some metrics; "" when
    they are calibrated or there is no model.  (Here, torch-free, for the app's badge and
    engine.summary's alike.)"""
    if md.get("bands_calibrated") is not False:
        return ""
    some = [str(m).split("_")[0] for m in md.get("bands_uncalibrated") or []]
    return f", {'/'.join(some)} bands uncalibrated" if 0 < len(some) < 4 else ", bands uncalibrated"
