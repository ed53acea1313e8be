"""Stage 6, export: ``python -m stages export``: each trained model as ONNX, proven in ONNX Runtime.

For each model it writes ``models/<kind>.onnx`` (``pipeline.export``: pinned opset and IR version,
the contract in ``metadata_props``, the same bytes for the same model) and runs the file in ONNX
Runtime over the model's full test set against ``nn``. ``reports/export.json`` records per model the
largest absolute logit difference (rounded up to one significant digit: its last digits depend on
the CPU kernels ONNX Runtime picks), how many test predictions agree, and the file's SHA-256.
The stage fails, writing nothing, if any prediction disagrees or a logit differs by more than
:data:`TOLERANCE`.
"""

from __future__ import annotations

import hashlib
import logging
import math

import numpy as np

import nn
from pipeline import export, numerics
from pipeline.data import class_names
from pipeline.errors import PipelineError
from pipeline.files import write_bytes, write_json
from pipeline.models import load_trained
from pipeline.paths import MODEL_KINDS, MODELS, REPORTS

log = logging.getLogger("stages.export")

TOLERANCE = 1e-4


def round_up(x: float) -> float:
    """``x`` rounded up to one significant digit (0 stays 0)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x))
    return float(f"{math.ceil(x / 10**e)}e{e}")


def export_kind(kind: str) -> tuple[bytes, dict]:
    model, meta, data = load_trained(kind)
    names = class_names(data)
    try:
        onnx_model = export.to_onnx(model, len(names), export.metadata_of(meta, names))
    except export.UnexportableLayer as e:
        raise PipelineError(f"{MODELS / f'{kind}.npz'}: {e}") from None
    blob = export.onnx_bytes(onnx_model)
    x = data["x_test"]
    theirs = export.run_onnx(export.session(blob), x)
    ours = nn.predict(model, x, threads=nn.parallel.available_cores())
    diff = float(np.abs(theirs - ours).max())
    agree = int(np.sum(theirs.argmax(axis=1) == ours.argmax(axis=1)))
    log.info(
        "%s: %d of %d predictions agree, largest logit difference %.2e", kind, agree, len(x), diff
    )
    if agree != len(x) or not diff <= TOLERANCE:
        raise PipelineError(
            f"{kind}: ONNX Runtime disagrees with nn on {len(x) - agree} of {len(x)} test images, "
            f"largest logit difference {diff:.2e} (tolerance {TOLERANCE:g})"
        )
    return blob, {
        "max_abs_logit_diff": round_up(diff),
        "predictions_agree": agree,
        "test_images": len(x),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "opset": export.OPSET,
        "ir_version": export.IR_VERSION,
    }


def main(argv=()) -> None:
    files, report = {}, {}
    with numerics.deterministic_blas():
        for kind in MODEL_KINDS:
            files[kind], report[kind] = export_kind(kind)
    for kind, blob in files.items():  # every model checked before anything is written
        write_bytes(MODELS / f"{kind}.onnx", blob)
    write_json(REPORTS / "export.json", report)
