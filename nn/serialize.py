"""Save and load models without pickle: one ``.npz`` with the arrays and the architecture as JSON.

The file is a zip of ``.npy`` members (readable with ``np.load(path, allow_pickle=False)``):
every parameter and buffer under its dotted name (``"0.weight"``, ``"1.running_mean"``) plus
``__model__``, a string array holding ``{"format": 1, "architecture": {...}, "metadata": {...}}``.
Members are written in sorted order with a fixed timestamp, so the same model gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from nn.layers import Layer, layer_from_config

__all__ = ["save", "load", "ModelFileError", "atomic_write_bytes"]

_HEADER = "__model__"
_FORMAT = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp; fixed so bytes do not depend on time


class ModelFileError(ValueError):
    """A file that is not an ``nn`` model, or whose arrays do not match its architecture."""


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A deterministic ``.npz`` (stored, sorted members, fixed timestamps) of ``arrays``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def save(model: Layer, path, *, metadata: dict | None = None) -> None:
    """Write ``model`` (any layer, usually a Sequential) and JSON-able ``metadata`` to ``path``."""
    header = {
        "format": _FORMAT,
        "architecture": {"type": type(model).__name__, "config": model.config()},
        "metadata": metadata or {},
    }
    state = model.params | model.buffers
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    if _HEADER in arrays:
        raise ValueError(f"parameter name {_HEADER!r} is reserved")
    arrays[_HEADER] = np.array(json.dumps(header, sort_keys=True))
    atomic_write_bytes(path, npz_bytes(arrays))


def load(path, *, with_metadata: bool = False, data: bytes | None = None):
    """Rebuild the model saved at ``path`` (and its metadata dict if ``with_metadata``). With
    ``data``, the file's bytes already read (from a DVC cache, say): ``path`` then only names it
    in errors.

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: not a model file, or an array missing, unexpected, or of the wrong shape or
            dtype (the message names the key and both shapes).
    """
    path = Path(path)
    try:
        with np.load(path if data is None else io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ModelFileError(f"{path}: not an nn model file ({e})") from None
    if _HEADER not in arrays:
        raise ModelFileError(f"{path}: not an nn model file (no {_HEADER!r} entry)")
    try:
        header = json.loads(str(arrays.pop(_HEADER)))
        model = layer_from_config(header["architecture"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable architecture ({e})") from None
    expected = model.params | model.buffers
    for key in sorted(arrays.keys() - expected.keys()):
        raise ModelFileError(f"{path}: unexpected array {key!r}, not in the architecture")
    for key, p in expected.items():
        if key not in arrays:
            raise ModelFileError(f"{path}: missing array {key!r} of shape {p.shape}")
        a = arrays[key]
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ModelFileError(
                f"{path}: array {key!r} has shape {a.shape} and dtype {a.dtype}, "
                f"the architecture expects {p.shape} and {p.dtype}"
            )
        p[...] = a
    return (model, header.get("metadata", {})) if with_metadata else model
