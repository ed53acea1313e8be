"""Outputs written atomically and deterministically: a failure never leaves a half-written file,
and the same contents give the same bytes (sorted JSON keys, fixed ``.npz`` timestamps).

The one atomic writer is ``nn.serialize.atomic_write_bytes`` (the library saves models with it).
"""

from __future__ import annotations

import json

from nn.serialize import atomic_write_bytes, npz_bytes

__all__ = ["write_bytes", "write_text", "write_json", "write_npz"]

write_bytes = atomic_write_bytes


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path, arrays: dict) -> None:
    """A deterministic ``.npz`` (fixed timestamps, sorted members), written atomically."""
    write_bytes(path, npz_bytes(arrays))
