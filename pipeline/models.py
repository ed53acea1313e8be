"""The model and optimizer that a ``train_<kind>`` section of ``params.yaml`` describes.

Every range is checked once, by the library, which raises ``nn.checks.ArgumentError`` naming its
argument; :func:`params_errors` turns that into one line naming the params key that fed it
(``train_dense.dropout: Dropout: p must be in [0.0, 1.0), got 1.5``).
"""

from __future__ import annotations

import contextlib

import nn
from pipeline.data import dataset_name, load_dataset
from pipeline.errors import PipelineError
from pipeline.params import TrainParams
from pipeline.paths import MODELS, PROCESSED

__all__ = [
    "params_errors",
    "build_model",
    "make_optimizer",
    "load_trained",
    "ACTIVATION_LAYERS",
    "OUTPUT_LAYERS",
]

ACTIVATION_LAYERS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
OUTPUT_LAYERS = {"none": None, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softmax": nn.Softmax}

# Which params key feeds each library argument (by argument name; by owner where names clash).
ARGUMENT_KEYS = {
    "lr": "lr",
    "base_lr": "lr",
    "max_lr": "lr",
    "gamma": "lr_decay",
    "pct_start": "warmup",
    "momentum": "momentum",
    "betas": "betas",
    "nesterov": "nesterov",
    "weight_decay": "weight_decay",
    "loss": "loss",
    "label_smoothing": "label_smoothing",
    "clip_norm": "clip_norm",
    "p": "dropout",
    "init": "init",
    "out_features": "hidden",
    "out_channels": "channels",
    "padding": "padding",
    "max_shift": "augment_shift",
    "patience": "patience",
    "epochs": "epochs",
    "total_steps": "epochs",
    "batch_size": "batch_size",
    "shards": "shards",
}
OWNER_ARGUMENT_KEYS = {
    ("RandomWarp", "rotate"): "augment_rotate",
    ("RandomWarp", "scale"): "augment_scale",
    ("RandomWarp", "shear"): "augment_shear",
    ("RandomWarp", "elastic"): "augment_elastic",
    ("RandomWarp", "sigma"): "augment_elastic_sigma",
    ("RandomStroke", "p"): "augment_stroke",
    ("RandomBlur", "max_sigma"): "augment_blur",
    ("Conv2D", "kernel_size"): "kernel_size",
    ("MaxPool2D", "kernel_size"): "pool",
}


@contextlib.contextmanager
def params_errors(section: str):
    """Report the library's refusal of an argument inside as one line naming the params key."""
    try:
        yield
    except nn.checks.ArgumentError as e:
        key = OWNER_ARGUMENT_KEYS.get((e.owner, e.argument)) or ARGUMENT_KEYS.get(e.argument)
        raise PipelineError(f"{section}.{key}: {e}" if key else f"{section}: {e}") from None


def make_optimizer(p: TrainParams, steps_per_epoch: int) -> nn.optim.Optimizer:
    """The optimizer with its learning-rate schedule, stepped per batch."""
    total = p.epochs * steps_per_epoch
    schedule = {
        "constant": lambda: nn.schedules.Constant(p.lr),
        "step": lambda: nn.schedules.Step(p.lr, steps_per_epoch, p.lr_decay),
        "exponential": lambda: nn.schedules.Exponential(p.lr, p.lr_decay, steps_per_epoch),
        "cosine": lambda: nn.schedules.Cosine(p.lr, total),
        "onecycle": lambda: nn.schedules.OneCycle(p.lr, total, pct_start=p.warmup),
    }[p.schedule]()
    if p.optimizer == "adam":
        return nn.Adam(p.lr, tuple(p.betas), weight_decay=p.weight_decay, schedule=schedule)
    return nn.SGD(
        p.lr,
        momentum=p.momentum,
        nesterov=p.nesterov,
        weight_decay=p.weight_decay,
        schedule=schedule,
    )


def _head(p: TrainParams, n_in: int, n_out: int, rng) -> list[nn.Layer]:
    layers = []
    for width in p.hidden:
        layers.append(nn.Dense(n_in, width, rng=rng, init=p.init))
        if p.batch_norm:
            layers.append(nn.BatchNorm(width))
        layers.append(ACTIVATION_LAYERS[p.activation]())
        if p.dropout:
            layers.append(nn.Dropout(p.dropout, rng=rng.spawn(1)[0]))
        n_in = width
    layers.append(nn.Dense(n_in, n_out, rng=rng, init=p.init))
    if OUTPUT_LAYERS[p.output_activation] is not None:
        layers.append(OUTPUT_LAYERS[p.output_activation]())
    return layers


def build_model(kind: str, p: TrainParams, n_classes: int, rng, image_shape=(1, 28, 28)):
    """The ``nn.Sequential`` described by the params (docs/pipeline.md: the two models). Call it
    inside :func:`params_errors` to have a refused value named by its key."""
    c, h, w = image_shape
    layers: list[nn.Layer] = []
    if kind == "conv":
        for out in p.channels:
            layers.append(nn.Conv2D(c, out, p.kernel_size, padding=p.padding, rng=rng, init=p.init))
            if p.batch_norm:
                layers.append(nn.BatchNorm(out))
            h = nn.conv_output_size(h, p.kernel_size, 1, p.padding)
            w = nn.conv_output_size(w, p.kernel_size, 1, p.padding)
            if h < 1 or w < 1:
                raise PipelineError(
                    f"train_conv.channels: {len(p.channels)} conv layers of kernel "
                    f"{p.kernel_size} shrink the 28x28 image to nothing"
                )
            layers.append(ACTIVATION_LAYERS[p.activation]())
            if p.pool != 1:  # 1: no pooling; MaxPool2D refuses anything below
                h, w = h // p.pool, w // p.pool
                if h < 1 or w < 1:
                    raise PipelineError(
                        f"train_conv.pool: pooling by {p.pool} shrinks the image to "
                        "nothing; use fewer layers or a smaller pool"
                    )
                # nn.Sequential runs a ReLU followed by a MaxPool2D as the pool first, to the bit
                layers.append(nn.MaxPool2D(p.pool))
            c = out
    layers.append(nn.Flatten())
    return nn.Sequential(layers + _head(p, c * h * w, n_classes, rng))


def load_trained(kind: str) -> tuple[nn.Sequential, dict, dict]:
    """``(model, metadata, processed data)`` of ``kind``, refused in one line if the model was
    trained on another dataset or other classes than the processed file holds."""
    path, processed = MODELS / f"{kind}.npz", PROCESSED / f"{kind}.npz"
    try:
        model, meta = nn.load(path, with_metadata=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (run the train_{kind} stage first)") from None
    except nn.ModelFileError as e:
        raise PipelineError(str(e)) from None
    data = load_dataset(processed)
    dataset, trained_on = dataset_name(data), meta.get("dataset", "mnist")
    if trained_on != dataset:
        raise PipelineError(
            f"{path}: trained on {trained_on}, but {processed} holds {dataset}: rerun the pipeline"
        )
    if meta.get("classes") != data["classes"].tolist():
        raise PipelineError(
            f"{path}: trained on classes {meta.get('classes')}, but "
            f"{processed} holds {data['classes'].tolist()}: rerun the pipeline"
        )
    return model, meta, data
