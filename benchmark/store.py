"""The artifact and result store: atomic files, content keys, locks, safe checkpoints.

Every file is written to a temporary name in its folder and renamed into place, so a run
killed at any moment leaves either the old file or the new one, never half of one. Trained
models are safetensors files (no pickled code can run on load) with a JSON sidecar.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)


def content_key(description: Any) -> str:
    """A short stable hash of a JSON-serialisable description."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None if absent or unreadable (then it is redone)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable %s (%s); it will be recomputed", path, error)
        return None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two runs on one workdir do not train the same model twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_model(path: Path, model: nn.Module, sidecar: dict) -> None:
    """Write the weights (safetensors) then the sidecar; the sidecar marks the artifact complete."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    atomic_write_json(path.with_suffix(".json"), sidecar)


def load_model(path: Path, model: nn.Module) -> dict | None:
    """Load weights into ``model`` if the artifact is complete; return its sidecar, else None."""
    sidecar = read_json(path.with_suffix(".json"))
    if sidecar is None or not path.is_file():
        return None
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as error:  # a damaged artifact is retrained, not trusted
        log.warning("ignoring damaged artifact %s (%s); it will be retrained", path, error)
        return None
    return sidecar

