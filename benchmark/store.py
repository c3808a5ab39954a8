"""The artifact and result store: atomic files, content keys, locks, safe checkpoints.

Every file is written to a temporary name in its folder and renamed into place, so a run
killed at any moment leaves either the old file or the new one, never half of one. Trained
models are safetensors files (no pickled code can run on load) with a JSON sidecar recording
their sha256, so a truncated or corrupted file is detected and rebuilt. Leftover ``.*.tmp``
files of a killed run are never read.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import safetensors.torch
from torch import nn

log = logging.getLogger(__name__)


def content_key(description: Any) -> str:
    """A short stable hash of a JSON-serialisable description."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:  # name the file the user gave, not the temporary one beside it
        raise type(error)(error.errno, error.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly it (so re-rendering the same
    figures changes nothing on disk); True when written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, unreadable: str = "it will be recomputed") -> dict | None:
    """The JSON object at ``path``, or None if absent or unreadable (a warning says what then
    happens: ``unreadable``, once per file and process however often it is read)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        _warn_unreadable(str(path), str(error), unreadable)
        return None


@functools.lru_cache(maxsize=None)
def _warn_unreadable(path: str, error: str, consequence: str) -> None:
    log.warning("ignoring unreadable %s (%s); %s", path, error, consequence)


@contextlib.contextmanager
def file_lock(path: Path, what: str = "") -> Iterator[None]:
    """An exclusive advisory lock, so two runs on one workdir do not train the same model twice.
    Waiting for another process's lock is logged (with ``what`` it guards), not silent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s, held by another run (%s)", what or path.stem, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def json_safe(value: Any) -> Any:
    """NaN (an undefined metric, e.g. ASR with an empty attack region) becomes null in JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save_model(path: Path, model: nn.Module, sidecar: dict) -> None:
    """Write the weights (safetensors) then the sidecar, which marks the artifact complete and
    records the weights' size and sha256 so that a damaged file is detected on load."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = safetensors.torch.save(state)
    atomic_write_bytes(path, data)
    atomic_write_json(path.with_suffix(".json"),
                      {**sidecar, "weights_bytes": len(data), "weights_sha256": hashlib.sha256(data).hexdigest()})


def load_model(path: Path, model: nn.Module) -> dict | None:
    """Load weights into ``model`` if the artifact is complete and intact; return its sidecar,
    else None (then it is retrained and overwritten)."""
    sidecar = read_json(path.with_suffix(".json"))
    if sidecar is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    damage = artifact_damage(data, sidecar)
    if damage is None:
        try:
            model.load_state_dict(safetensors.torch.load(data))
        except Exception as error:  # a damaged artifact is retrained, not trusted
            damage = str(error).splitlines()[0]
    if damage is not None:
        log.warning("ignoring damaged artifact %s (%s); it will be retrained", path, damage)
        return None
    return sidecar


def artifact_damage(data: bytes, sidecar: dict) -> str | None:
    """How ``data`` differs from what its sidecar recorded, or None if it matches (sidecars
    written before hashes were recorded have only the safetensors format check)."""
    expected_size = sidecar.get("weights_bytes")
    if expected_size is not None and len(data) != expected_size:
        return f"{len(data)} bytes, {expected_size} recorded"
    expected_hash = sidecar.get("weights_sha256")
    if expected_hash is not None and hashlib.sha256(data).hexdigest() != expected_hash:
        return "sha256 differs from the recorded one"
    return None
