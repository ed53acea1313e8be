"""``params.yaml``: one typed dataclass per section, and the parser that builds them.

:func:`parse_section` checks keys and types and names the dotted key of any mistake
(``train_conv.lr: expected float, got 'fast'``). Values are checked where they are used: the
library raises ``ValueError`` naming its argument, and :func:`params_key` turns that into the
same one line naming the params key. A dataclass's ``validate`` holds only what the library
cannot check: choices among the pipeline's own tables, and rules that span several keys
(``pipeline.models.params_errors`` maps the library's argument errors to keys).
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path

import yaml

from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError, first_line
from pipeline.paths import ROOT

__all__ = [
    "parse_section",
    "load_yaml",
    "load_params",
    "has_key",
    "lookup",
    "check_keys",
    "format_value",
    "set_args",
    "FetchParams",
    "SubsetParams",
    "PreprocessParams",
    "TrainParams",
    "ConvParams",
    "TRAIN_PARAMS",
    "PlotParams",
    "RobustnessParams",
    "ACTIVATIONS",
    "OUTPUTS",
    "OPTIMIZERS",
]

# The names params.yaml may give; the classes behind them are picked in ``pipeline.models``.
ACTIVATIONS = ("relu", "tanh", "sigmoid")
OUTPUTS = ("none", "sigmoid", "tanh", "softmax")
OPTIMIZERS = ("adam", "sgd")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(key: str, tp, value):
    """Check ``value`` against the annotation ``tp``; return it (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        if len(options) == 1:  # ``X | None``: X's own message (a nested section names its key)
            return _coerce(key, options[0], value)
        for option in options:
            try:
                return _coerce(key, option, value)
            except PipelineError:
                pass
        raise PipelineError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise PipelineError(f"{key}: expected a list, got {value!r}")
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
    raise PipelineError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _dotted(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def parse_section(cls, data, section: str):
    """Build dataclass ``cls`` from a params mapping; unknown, missing or mistyped keys raise
    PipelineError naming the dotted key (under ``section``; ``""``: a file's top level).
    ``cls.validate(section)``, if defined, checks values."""
    if not isinstance(data, dict):
        raise PipelineError(f"{section or 'top level'}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise PipelineError(
                f"{_dotted(section, key)}: unknown key (known: {', '.join(fields)})"
            )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _coerce(_dotted(section, name), hints[name], data[name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PipelineError(f"{_dotted(section, name)}: missing key")
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


def read_yaml_file(path: Path | str) -> dict:
    """A YAML file of keys (``params.yaml``, a sweep file) as a mapping; one line naming the file
    if it is missing, not YAML, or not a mapping."""
    path = Path(path)
    try:
        params = load_yaml(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(params, dict):
        raise PipelineError(f"{path}: expected a mapping of keys")
    return params


def load_params(section: str, cls, path: Path | str = ROOT / "params.yaml"):
    """Parse the ``section`` of ``params.yaml`` into ``cls``."""
    params = read_yaml_file(path)
    if section not in params:
        raise PipelineError(f"{path}: missing section {section!r}")
    return parse_section(cls, params[section], section)


# Dotted keys (``train_conv.lr``): how sweep files, recipes and ``dvc exp run -S`` name a value.


def has_key(params: dict, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def check_keys(section: str, mapping: dict, params: dict) -> None:
    """Each key of ``mapping`` names a value of ``params.yaml`` (not a section)."""
    for key in mapping:
        if not isinstance(key, str) or not has_key(params, key):
            raise PipelineError(f"{section}.{key}: not a key of params.yaml")
        if isinstance(lookup(params, key), dict):
            raise PipelineError(f"{section}.{key}: a section, not a value (name one of its keys)")


def format_value(value) -> str:
    """A value as ``dvc exp run -S`` parses it (YAML): plain strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def set_args(values: dict) -> list[str]:
    """The ``-S key=value`` arguments of ``dvc exp run`` that set ``values`` (dotted keys)."""
    args = []
    for key, value in values.items():
        args += ["-S", f"{key}={format_value(value)}"]
    return args


def _one_of(section: str, key: str, value, allowed) -> None:
    if value not in allowed:
        raise PipelineError(f"{section}.{key}: must be one of {', '.join(allowed)}, got {value!r}")


@dataclasses.dataclass
class FetchParams:
    dataset: str = "mnist"  # "mnist" or "fashion_mnist"
    source: str = "mirror"  # "mirror" (HTTP mirrors, MNIST_MIRROR, DATA_MIRROR) or "keras"
    retries: int = 3
    timeout: float = 60.0

    def validate(self, section):
        _one_of(section, "dataset", self.dataset, tuple(DATASETS))
        _one_of(section, "source", self.source, ("mirror", "keras"))
        if self.retries < 1:
            raise PipelineError(f"{section}.retries: must be at least 1, got {self.retries}")
        if self.timeout <= 0:
            raise PipelineError(f"{section}.timeout: must be positive, got {self.timeout}")


@dataclasses.dataclass
class SubsetParams:
    classes: list[int] = dataclasses.field(default_factory=lambda: list(range(10)))
    train_size: int | None = None  # training images after the validation split; None: all left
    val_size: int = 5000  # validation images, drawn from the training set

    def validate(self, section):
        if len(set(self.classes)) != len(self.classes) or not all(
            0 <= c <= 9 for c in self.classes
        ):
            raise PipelineError(
                f"{section}.classes: must be distinct digits 0-9, got {self.classes}"
            )
        if len(self.classes) < 2:
            raise PipelineError(
                f"{section}.classes: a classifier needs at least two digits, got {self.classes}"
            )
        if self.train_size is not None and self.train_size < 1:
            raise PipelineError(f"{section}.train_size: must be positive, got {self.train_size}")
        if self.val_size < 0:
            raise PipelineError(f"{section}.val_size: must not be negative, got {self.val_size}")


@dataclasses.dataclass
class PreprocessParams:
    seed: int
    dense: SubsetParams
    conv: SubsetParams


@dataclasses.dataclass
class TrainParams:
    """What both models share. ``hidden``: widths of the dense layers before the output layer.

    Ranges are the library's: ``pipeline.models.params_errors`` names the key of any it refuses."""

    seed: int = 0
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 1.0  # step, exponential: the learning rate's factor per epoch
    optimizer: str = "adam"  # "adam" or "sgd"
    momentum: float = 0.0  # sgd only
    loss: str = "cross_entropy"  # "cross_entropy" (on logits), "mse", "binary_cross_entropy"
    activation: str = "relu"  # hidden layers: "relu", "tanh", "sigmoid"
    output_activation: str = "none"  # "none" (logits), "sigmoid", "tanh", "softmax"
    hidden: list[int] = dataclasses.field(default_factory=list)
    shards: int = 1  # each batch is split into this many parts, trained on parallel threads
    schedule: str = "step"  # per batch: constant | step | exponential | cosine | onecycle
    warmup: float = 0.25  # onecycle: the fraction of all steps spent warming up to lr
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])  # adam only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0  # adam: decoupled (AdamW); sgd: L2; weights only
    init: str = "default"  # default | he_uniform | he_normal | glorot_uniform | glorot_normal
    batch_norm: bool = False  # BatchNorm after every conv and hidden dense layer
    dropout: float = 0.0  # Dropout after every hidden dense layer's activation
    label_smoothing: float = 0.0  # cross_entropy only
    clip_norm: float | None = None  # clip the gradients' global L2 norm to this
    augment_shift: int = 0  # shift each training image by up to this many pixels (0: off)
    augment_flip: bool = False  # mirror half the training images left-right (not for digits)
    augment_rotate: float = 0.0  # rotate each training image by up to this many degrees
    augment_scale: float = 0.0  # zoom each in or out by up to this fraction
    augment_shear: float = 0.0  # slant each by up to this many degrees
    augment_elastic: float = 0.0  # elastic distortion's strength alpha, pixels (Simard: 34)
    augment_elastic_sigma: float = 4.0  # its smoothness, pixels
    augment_stroke: float = 0.0  # the fraction of images whose strokes get thicker or thinner
    augment_blur: float = 0.0  # blur each with a Gaussian of up to this sigma, pixels
    keep_best: bool = False  # restore the weights of the epoch with the best val_accuracy
    patience: int | None = None  # stop after this many epochs without a better val_accuracy

    def validate(self, section):
        from nn.losses import LOSSES
        from nn.schedules import SCHEDULES

        for key, allowed in (
            ("optimizer", OPTIMIZERS),
            ("loss", tuple(LOSSES)),
            ("activation", ACTIVATIONS),
            ("output_activation", OUTPUTS),
            ("schedule", tuple(SCHEDULES)),
        ):
            _one_of(section, key, getattr(self, key), allowed)
        if self.loss == "cross_entropy" and self.output_activation != "none":
            raise PipelineError(
                f"{section}.output_activation: cross_entropy takes logits, so it "
                f"must be 'none', got {self.output_activation!r}"
            )
        if self.loss == "binary_cross_entropy" and self.output_activation != "sigmoid":
            raise PipelineError(
                f"{section}.output_activation: binary_cross_entropy needs "
                f"probabilities, so it must be 'sigmoid'"
            )
        if self.nesterov and self.optimizer != "sgd":
            raise PipelineError(f"{section}.nesterov: needs optimizer sgd, got {self.optimizer!r}")


@dataclasses.dataclass
class ConvParams(TrainParams):
    """``channels``: one Conv2D (+ activation, + MaxPool2D if ``pool > 1``; with ReLU the pooling
    comes first, the same function) per entry."""

    channels: list[int] = dataclasses.field(default_factory=lambda: [8])
    kernel_size: int = 3
    padding: int = 0
    pool: int = 2

    def validate(self, section):
        super().validate(section)
        if not self.channels:
            raise PipelineError(f"{section}.channels: need at least one conv layer, got []")


TRAIN_PARAMS = {"dense": TrainParams, "conv": ConvParams}


@dataclasses.dataclass
class RobustnessParams:
    seed: int = 0  # draws every stroke, pen and page of the set
    per_class: int = 500  # digits of each class

    def validate(self, section):
        if not 1 <= self.per_class <= 10_000:
            raise PipelineError(f"{section}.per_class: must be in [1, 10000], got {self.per_class}")


@dataclasses.dataclass
class PlotParams:
    misclassified: int = 36  # digits shown per grid
    mistakes: int = 12  # the most confident mistakes shown with their saliency
    dpi: int = 100

    def validate(self, section):
        if self.misclassified < 1:
            raise PipelineError(f"{section}.misclassified: must be at least 1")
        if self.mistakes < 1:
            raise PipelineError(f"{section}.mistakes: must be at least 1")
        if not 20 <= self.dpi <= 600:
            raise PipelineError(f"{section}.dpi: must be in [20, 600], got {self.dpi}")
