"""The datasets the pipeline knows: MNIST and Fashion-MNIST, both 28x28 grey images in 10 classes
with 60,000 training and 10,000 test images in the same four IDX files.

Each entry names the public mirrors (folders of the four ``.gz`` files), the SHA-256 of each
*decompressed* file, and the class names that reports print for the labels 0-9.

Where the checksums come from: MNIST's are those of the files torchvision and TensorFlow Datasets
serve. Fashion-MNIST publishes MD5s of its ``.gz`` files only (Zalando's README, torchvision);
the SHA-256s below were computed from Debian's ``dataset-fashion-mnist`` (0.0~git20200523), whose
``.gz`` files hold the same deflate streams as the published ones with the original file name
dropped from the gzip header: each is exactly ``len(name) + 1`` bytes shorter than the published
size (26,421,880 / 29,515 / 4,422,102 / 5,148 bytes), and they decompress to 60,000 and 10,000
images with 6,000 and 1,000 of each label.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["Dataset", "DATASETS", "MIRROR_VARIABLES", "mirrors_for", "absolute_mirrors"]


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str  # the value of fetch.dataset, and the DATA_MIRROR subfolder
    title: str
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # of the decompressed IDX files
    class_names: tuple[str, ...]  # for the labels 0-9
    # How the dataset framed its images, so people's images are prepared the same way
    # (pipeline.images): the longer side of the ink's bounding box in pixels, and whether the
    # ink is centred by its centre of mass (MNIST) or by its bounding box (Fashion-MNIST).
    box: int = 20
    centre_of_mass: bool = True
    # Contrast below this fraction of the strongest ink is paper (noise, JPEG ringing): higher
    # for pen strokes, lower for photographed products whose faint greys are part of the item.
    ink_floor: float = 0.15


DATASETS = {
    "mnist": Dataset(
        name="mnist",
        title="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision
            "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets
            "http://yann.lecun.com/exdb/mnist/",  # the original
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
        class_names=tuple(str(d) for d in range(10)),
        # LeCun: each digit's box scaled to 20x20, pasted so its centre of mass is the centre.
        box=20,
        centre_of_mass=True,
    ),
    "fashion_mnist": Dataset(
        name="fashion_mnist",
        title="Fashion-MNIST",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # torchvision
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # Keras
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        sha256={
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        # Zalando: trimmed to the item, the longest edge resized to 28, centred.
        box=28,
        centre_of_mass=False,
        ink_floor=0.05,
    ),
}


MIRROR_VARIABLES = ("MNIST_MIRROR", "DATA_MIRROR")


def _split(value: str) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()]


def absolute_mirrors(environ=os.environ) -> dict[str, str]:
    """The mirror variables that are set, each folder made absolute (URLs kept as they are), for
    a pipeline that runs in another directory (``make verify``'s clone, a sweep's workers)."""
    return {
        name: ",".join(m if "://" in m else str(Path(m).resolve()) for m in _split(value))
        for name in MIRROR_VARIABLES
        if (value := environ.get(name, "")).strip()
    }


def mirrors_for(dataset: Dataset, environ=os.environ) -> list[str]:
    """Where to fetch ``dataset`` from, in order. ``MNIST_MIRROR`` (MNIST only: folders or base URLs
    holding the four ``.gz`` files), then ``DATA_MIRROR`` (folders or base URLs with one subfolder
    per dataset, ``mnist/`` and ``fashion_mnist/``); where neither applies, the public mirrors."""
    found = []
    if dataset.name == "mnist":
        found += _split(environ.get("MNIST_MIRROR", ""))
    found += [m.rstrip("/") + "/" + dataset.name for m in _split(environ.get("DATA_MIRROR", ""))]
    return found or list(dataset.mirrors)
