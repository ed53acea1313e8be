"""``nn`` models as ONNX graphs, built with the ``onnx`` package's helpers, and checked in ONNX
Runtime against the library.

Each layer becomes the ONNX operators that compute the same function at inference:

======================  =====================================================================
nn layer                ONNX
======================  =====================================================================
Dense                   ``Gemm`` (``x @ weight + bias``; ``weight`` is ``(in, out)``)
Conv2D                  ``Conv`` (stride, symmetric padding; cross-correlation, as PyTorch)
BatchNorm               ``Mul`` + ``Add`` of the folded ``scale = gamma / sqrt(var + eps)`` and
                        ``shift = beta - mean * scale`` (what ``nn`` computes in eval mode)
MaxPool2D               ``MaxPool`` (window = stride = k, floor)
ReLU, Tanh, Sigmoid     ``Relu``, ``Tanh``, ``Sigmoid``
Softmax                 ``Softmax`` over the last axis
Flatten                 ``Flatten`` (axis 1)
Reshape                 ``Reshape`` to ``(N, *shape)``
Dropout                 nothing (the identity at inference)
======================  =====================================================================

The opset and IR version are pinned (:data:`OPSET`, :data:`IR_VERSION`: the ``onnx`` package's
newest defaults are refused by current ONNX Runtime), the file carries no timestamp, and its
``metadata_props`` are sorted, so the same model gives the same bytes.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nn

__all__ = ["OPSET", "IR_VERSION", "UnexportableLayer", "to_onnx", "onnx_bytes", "run_onnx"]

OPSET = 17
IR_VERSION = 8
INPUT = "image"  # (N, 1, 28, 28) float32 in [0, 1], white ink on black


class UnexportableLayer(ValueError):
    """A layer with no ONNX form here; the message names it and its position."""


class _Graph:
    """The nodes and initializers of a graph under construction, with fresh tensor names."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], prefix: str, **attrs) -> str:
        out = f"{prefix}.{op.lower()}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _layer(g: _Graph, layer: nn.Layer, x: str, i: int, ndim: int) -> tuple[str, int]:
    """Append ``layer``'s nodes to ``g``; returns the output name and its rank."""
    p, name = layer.params, f"{i}"
    if isinstance(layer, nn.Dense):
        w, b = g.const(f"{i}.weight", p["weight"]), g.const(f"{i}.bias", p["bias"])
        return g.node("Gemm", [x, w, b], name), 2
    if isinstance(layer, nn.Conv2D):
        w, b = g.const(f"{i}.weight", p["weight"]), g.const(f"{i}.bias", p["bias"])
        pad = layer.padding
        attrs = dict(
            kernel_shape=list(layer.kernel_size), strides=[layer.stride] * 2, pads=[pad] * 4
        )
        return g.node("Conv", [x, w, b], name, **attrs), 4
    if isinstance(layer, nn.BatchNorm):
        buf = layer.buffers
        scale = p["gamma"] / np.sqrt(buf["running_var"] + layer.eps)
        shift = p["beta"] - buf["running_mean"] * scale
        shape = (-1,) + (1,) * (ndim - 2)  # (C,) for (N, C); (C, 1, 1) for (N, C, H, W)
        s = g.const(f"{i}.scale", scale.reshape(shape))
        t = g.const(f"{i}.shift", shift.reshape(shape))
        return g.node("Add", [g.node("Mul", [x, s], name), t], name), ndim
    if isinstance(layer, nn.MaxPool2D):
        k = layer.kernel_size
        return g.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[k, k]), ndim
    simple = {nn.ReLU: "Relu", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid"}
    if type(layer) in simple:
        return g.node(simple[type(layer)], [x], name), ndim
    if isinstance(layer, nn.Softmax):
        return g.node("Softmax", [x], name, axis=-1), ndim
    if isinstance(layer, nn.Flatten):
        return g.node("Flatten", [x], name, axis=1), 2
    if isinstance(layer, nn.Reshape):
        shape = g.const(f"{i}.shape", np.array([0, *layer.shape], np.int64))
        return g.node("Reshape", [x, shape], name), 1 + len(layer.shape)
    if isinstance(layer, nn.Dropout):
        return x, ndim
    raise UnexportableLayer(f"layer {i} ({type(layer).__name__}) has no ONNX export")


def to_onnx(model: nn.Layer, n_outputs: int, metadata: dict[str, str]) -> onnx.ModelProto:
    """The ONNX model of ``model`` (a Sequential or a single layer) for ``(N, 1, 28, 28)`` float32
    input, with ``metadata`` (string values) as sorted ``metadata_props``.

    Raises:
        UnexportableLayer: a layer that has no ONNX form (names its index and type).
    """
    layers = model.layers if isinstance(model, nn.Sequential) else [model]
    g, x, ndim = _Graph(), INPUT, 4
    for i, layer in enumerate(layers):
        x, ndim = _layer(g, layer, x, i, ndim)
    g.nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    graph = helper.make_graph(
        g.nodes,
        "nn",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", n_outputs])],
        initializer=g.initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="nn-mnist",
        producer_version="1",
    )
    helper.set_model_props(onnx_model, dict(sorted(metadata.items())))
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def onnx_bytes(onnx_model: onnx.ModelProto) -> bytes:
    return onnx_model.SerializeToString(deterministic=True)


def session(data: bytes):
    """An ONNX Runtime session over a model's bytes, on one thread (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_onnx(sess, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's outputs for ``x`` ``(N, 1, 28, 28)`` float32, in batches."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def metadata_of(model_meta: dict, class_names: list[str]) -> dict[str, str]:
    """The contract an exported file carries: what goes in, what comes out, and how it was made."""
    return {
        "dataset": model_meta.get("dataset", "mnist"),
        "class_names": json.dumps(class_names),
        "classes": json.dumps(model_meta.get("classes")),
        "input": "image: float32 (N, 1, 28, 28) in [0, 1], white ink on black, as MNIST",
        "output": "output: float32 (N, classes), "
        + (
            "logits (softmax gives probabilities)"
            if model_meta.get("loss") == "cross_entropy"
            else f"the {model_meta.get('loss')} model's outputs"
        ),
        "kind": str(model_meta.get("kind")),
        "params": json.dumps(model_meta.get("params", {}), sort_keys=True),
    }
