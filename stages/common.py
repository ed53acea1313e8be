"""What every stage shares: paths, params parsing, atomic writes, and clean failures."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import tempfile
import types
import typing
from pathlib import Path

import numpy as np
import yaml

from stages import numerics

__all__ = [
    "ROOT",
    "RAW",
    "PROCESSED",
    "MODELS",
    "REPORTS",
    "FIGURES",
    "LIVE",
    "HISTORY_METRICS",
    "MODELS_KINDS",
    "StageError",
    "parse_section",
    "load_params",
    "load_yaml",
    "load_dataset",
    "dataset_name",
    "class_names",
    "write_bytes",
    "write_json",
    "write_npz",
    "write_text",
    "run_stage",
    "deterministic_blas",
]

# Every path from one root: the working directory DVC runs stages in.
ROOT = Path(".")
RAW = ROOT / "data" / "raw"
PROCESSED = ROOT / "data" / "processed"
MODELS = ROOT / "models"
REPORTS = ROOT / "reports"
FIGURES = REPORTS / "figures"
LIVE = REPORTS / "live"  # DVCLive's folders of training curves, one per model
MODELS_KINDS = ("dense", "conv")
HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")

log = logging.getLogger("stages")


class StageError(Exception):
    """A user mistake (bad params, bad data file, no mirror): reported as one line, no traceback."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(key: str, tp, value):
    """Check ``value`` against the annotation ``tp``; return it (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(key, option, value)
            except StageError:
                pass
        raise StageError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise StageError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        return parse_section(tp, value, key)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise StageError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def parse_section(cls, data, section: str):
    """Build dataclass ``cls`` from a params mapping; unknown, missing or mistyped keys raise
    StageError naming the dotted key. ``cls.validate()``, if defined, checks values."""
    if not isinstance(data, dict):
        raise StageError(f"{section}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise StageError(f"{section}.{key}: unknown key (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _coerce(f"{section}.{name}", hints[name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise StageError(f"{section}.{name}: missing key")
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(section)
    return obj


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads ``1e-3`` as a string; DVC (YAML 1.2) writes floats
    that way (``dvc exp run -S train_dense.lr=1e-3``). Resolve them as floats, as YAML 1.2 does."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*(?:[eE][-+]?[0-9]+)|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str):
    """YAML as DVC writes it (floats such as ``1e-05`` included)."""
    return yaml.load(text, Loader=_ParamsLoader)  # a SafeLoader subclass


def load_params(section: str, cls, path: Path | str = ROOT / "params.yaml"):
    """Parse the ``section`` of ``params.yaml`` into ``cls``."""
    path = Path(path)
    try:
        params = load_yaml(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise StageError(f"{path}: not valid YAML ({e})".replace("\n", " ")) from None
    if not isinstance(params, dict) or section not in params:
        raise StageError(f"{path}: missing section {section!r}")
    return parse_section(cls, params[section], section)


def load_dataset(path) -> dict[str, np.ndarray]:
    """The arrays of a ``data/processed/<model>.npz`` written by the preprocess stage."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise StageError(f"{path}: not found (run the preprocess stage first)") from None


def dataset_name(data: dict) -> str:
    """The dataset a processed ``.npz`` came from (files written before it was recorded: MNIST)."""
    return str(data["dataset"]) if "dataset" in data else "mnist"


def class_names(data: dict) -> list[str]:
    """The names of a processed ``.npz``'s classes, in one-hot column order."""
    if "class_names" in data:
        return [str(n) for n in data["class_names"]]
    return [str(c) for c in data["classes"]]


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place: a failure
    never leaves a half-written output. (Stages do not import ``nn`` for this, so that the fetch
    stage does not depend on the library's code.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path, arrays: dict) -> None:
    """A deterministic ``.npz`` (fixed timestamps, sorted members), written atomically."""
    from nn.serialize import npz_bytes

    write_bytes(path, npz_bytes(arrays))


def deterministic_blas():
    """Hold BLAS to one thread (the thread count changes float rounding) and say, in one warning
    line, why this process may not reproduce the committed results, if it may not (see
    ``stages.numerics``: the kernel itself was pinned when ``stages`` was imported). Returns the
    threadpoolctl context (keep it alive)."""
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(limits=numerics.BLAS_THREADS)
    found = numerics.problems(numerics.loaded(), ROOT / "requirements.lock")
    if found:
        log.warning("warning: results may differ from the committed ones: %s", "; ".join(found))
    return limits


def run_stage(main) -> None:
    """Run a stage's ``main()``; a StageError becomes one ``error:`` line and exit status 2."""
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"), format="%(name)s: %(message)s", stream=sys.stderr
    )
    try:
        main()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
