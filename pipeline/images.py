"""People's own images as the dataset's images: one function, :func:`prepare_image`, used by
``nn-mnist predict`` and the web app alike.

MNIST's digits were made from scanned handwriting: grey, ink white on black, the ink's bounding
box scaled so that its longer side is 20 pixels (with antialiasing), then pasted into a 28x28 field
so that the ink's centre of mass sits at the centre. Fashion-MNIST's products were trimmed to the
item, the longest edge resized to 28 pixels and the item centred (Zalando's README): each
dataset's framing is in ``pipeline.datasets``. :func:`prepare_image` does the same to a PNG or
JPEG of any size, colour or grey, with dark ink on light paper or the reverse.

Only Pillow's PNG and JPEG decoders ever see the bytes, whatever the file's name or claims, and
the pixel count is checked from the header before anything is decoded (a small file can declare
an enormous image).
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from pipeline.datasets import DATASETS
from pipeline.errors import PipelineError, first_line

__all__ = ["MAX_PIXELS", "decode_image", "prepare_image", "prepare_pixels", "FIELD"]

MAX_PIXELS = 40_000_000  # a 40-megapixel photo; beyond that, a decompression bomb or a mistake
FIELD = 28  # the side of an MNIST image
MIN_CONTRAST = 0.1  # an image whose darkest and lightest differ by less has no ink


def decode_image(data: bytes):
    """The Pillow image in ``data`` (PNG or JPEG only), oriented by its EXIF tag, fully decoded;
    PipelineError naming the problem for anything else."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
    except UnidentifiedImageError:
        raise PipelineError("not a PNG or JPEG image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PipelineError(f"more than {MAX_PIXELS:,} pixels (a decompression bomb?)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PipelineError(f"unreadable {first_line(e)}") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise PipelineError(
            f"{w}x{h} is {w * h:,} pixels, more than the {MAX_PIXELS:,} accepted "
            "(a decompression bomb?)"
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PipelineError(f"corrupt or truncated {img.format} image ({first_line(e)})") from None
    return img


def _grey(img) -> np.ndarray:
    """Luminance in [0, 1], float32; transparent pixels count as white paper."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    return np.asarray(img.convert("L"), np.float32) / np.float32(255)


def prepare_pixels(grey: np.ndarray, dataset: str = "mnist") -> np.ndarray:
    """A grey image (H, W) in [0, 1], ink either way round, as a 28x28 image of ``dataset``
    (float32 in [0, 1], white ink on black, framed as that dataset framed its images: see the
    module docstring). PipelineError if there is no ink."""
    from PIL import Image

    framing = DATASETS.get(dataset, DATASETS["mnist"])  # MNIST's for a dataset we do not know
    grey = np.asarray(grey, np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(border))
    ink = (paper - grey) if paper > 0.5 else (grey - paper)  # dark ink on light paper, or not
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise PipelineError("no ink found (an empty page?)")
    floor = framing.ink_floor
    ink = np.clip((ink / strongest - floor) / (1 - floor), 0, 1)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the ink's bounding box
    h, w = ink.shape
    scale = framing.box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    box = Image.fromarray(ink, mode="F").resize(size, Image.Resampling.LANCZOS)
    box = np.clip(np.asarray(box, np.float32), 0, 1)
    if not box.any():
        raise PipelineError("no ink found (an empty page?)")
    if framing.centre_of_mass:
        total = box.sum()
        cy = float((box.sum(axis=1) * np.arange(box.shape[0])).sum() / total)
        cx = float((box.sum(axis=0) * np.arange(box.shape[1])).sum() / total)
        centre = FIELD / 2  # MNIST's centres of mass sit at (14, 14) (test set: 13.98, 14.01)
        top = min(max(int(np.floor(centre - cy + 0.5)), 0), FIELD - box.shape[0])
        left = min(max(int(np.floor(centre - cx + 0.5)), 0), FIELD - box.shape[1])
    else:  # the box's own centre at the field's
        top, left = (FIELD - box.shape[0]) // 2, (FIELD - box.shape[1]) // 2
    out = np.zeros((FIELD, FIELD), np.float32)
    out[top : top + box.shape[0], left : left + box.shape[1]] = box
    return out


def prepare_image(data: bytes, dataset: str = "mnist") -> np.ndarray:
    """The PNG or JPEG in ``data`` as a 28x28 image of ``dataset``: float32 ``(28, 28)`` in
    [0, 1], white ink on black; for MNIST the ink's longer side 20 pixels, centred by its centre
    of mass; for Fashion-MNIST the item's longer side 28 pixels, centred by its bounding box.

    Raises:
        PipelineError: not a PNG or JPEG, corrupt or truncated, too many pixels, or no ink.
    """
    return prepare_pixels(_grey(decode_image(data)), dataset)
