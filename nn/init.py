"""Weight initializers: ``weight = init(rng, shape, fan_in, fan_out, dtype)``.

``"default"`` is PyTorch's layer default, ``U(-k, k)`` with ``k = 1 / sqrt(fan_in)`` (for the bias
too). The others draw the weight as named and set the bias to zero:

- He (Kaiming; He et al. 2015), for ReLU nets: normal ``N(0, 2 / fan_in)``, uniform
  ``U(-sqrt(6 / fan_in), sqrt(6 / fan_in))``.
- Glorot (Xavier; Glorot & Bengio 2010), for tanh/sigmoid nets: normal
  ``N(0, 2 / (fan_in + fan_out))``, uniform ``U(-sqrt(6 / (fan_in + fan_out)), ...)``.

``fan_in`` is the inputs of one output unit (``in_features``, or ``in_channels * kh * kw``) and
``fan_out`` the outputs of one input unit (``out_features``, or ``out_channels * kh * kw``).
"""

from __future__ import annotations

import math

import numpy as np

from nn.checks import ArgumentError

__all__ = ["INITIALIZERS", "init_params", "check_init"]

INITIALIZERS = ("default", "he_uniform", "he_normal", "glorot_uniform", "glorot_normal")


def check_init(owner: str, init: str) -> str:
    if init not in INITIALIZERS:
        raise ArgumentError(
            owner, "init", f"must be one of {', '.join(INITIALIZERS)}, got {init!r}"
        )
    return init


def init_params(init, rng, shape, n_bias, fan_in, fan_out, dtype) -> dict[str, np.ndarray]:
    """``{"weight": (shape), "bias": (n_bias,)}`` drawn from ``rng`` by the named initializer."""
    if init == "default":
        k = 1.0 / math.sqrt(fan_in)
        return {
            "weight": rng.uniform(-k, k, size=shape).astype(dtype),
            "bias": rng.uniform(-k, k, size=n_bias).astype(dtype),
        }
    fan = fan_in if init.startswith("he") else (fan_in + fan_out) / 2
    if init.endswith("uniform"):
        limit = math.sqrt(3.0 / fan) * (math.sqrt(2.0) if init.startswith("he") else 1.0)
        weight = rng.uniform(-limit, limit, size=shape)
    else:
        std = math.sqrt((2.0 if init.startswith("he") else 1.0) / fan)
        weight = rng.normal(0.0, std, size=shape)
    return {"weight": weight.astype(dtype), "bias": np.zeros(n_bias, dtype)}
