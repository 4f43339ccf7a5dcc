"""`--precision auto`'s measurement, remembered per checkpoint and machine.

auto runs every precision the device has on real people before choosing (app/backends.py):
~0.3 s at each start on a CPU with bfloat16, ~8 s on a GPU, where cuDNN autotunes every
candidate. Its answer changes only with the checkpoint, the device, the libraries or the rule,
so it is kept in the user's cache (`$XDG_CACHE_HOME/convnextpose-live/precision.json`, by
default under ~/.cache) under a key made of all of them, and measured again when any changes.
Deleting the file makes the next start measure again. The cache is a convenience: one that
cannot be read or written is ignored.
"""
from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import asdict
from pathlib import Path

from models.cores import cpu_name

log = logging.getLogger(__name__)


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convnextpose-live" / "precision.json"


def _file_identity(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def key_for(checkpoint: Path, device, calibration_photo: Path) -> str:
    """What auto's answer depends on: the checkpoint file, the calibration photo, the device
    and what it runs natively, torch's version and the rule's limits."""
    import torch

    from models.optimize import MAX_CHANGE_MM, MEAN_CHANGE_MM, available_precisions
    device = torch.device(device)
    if device.type == "cuda":
        hardware = [torch.cuda.get_device_name(device), list(torch.cuda.get_device_capability(device)),
                    torch.version.cuda]
    else:
        hardware = [cpu_name(), platform.machine()]
    return json.dumps({"checkpoint": _file_identity(checkpoint), "photo": _file_identity(calibration_photo),
                       "device": device.type, "hardware": hardware,
                       "precisions": available_precisions(device), "torch": torch.__version__,
                       "limits_mm": [MEAN_CHANGE_MM, MAX_CHANGE_MM]}, sort_keys=True)


def _read() -> dict:
    try:
        with open(cache_file()) as file:
            entries = json.load(file)
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def recall(key: str):
    """(precision, trials) measured earlier under this key, or None."""
    from models.optimize import PrecisionTrial
    entry = _read().get(key)
    try:
        trials = [PrecisionTrial(t["precision"], float(t["mean_mm"]), float(t["max_mm"]), float(t["ms"]))
                  for t in entry["trials"]]
        return str(entry["precision"]), trials
    except (TypeError, KeyError, ValueError):   # absent, or written by something else
        return None


def remember(key: str, precision: str, trials) -> None:
    """Keep auto's answer; written whole or not at all (app/outputs/atomic.py)."""
    from .outputs.atomic import write_bytes_atomically
    path = cache_file()
    entries = _read()
    entries[key] = {"precision": precision, "trials": [asdict(t) for t in trials]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, json.dumps(entries, indent=1).encode())
    except OSError as error:
        log.debug("cannot remember --precision auto's measurement in %s: %s", path, error)
