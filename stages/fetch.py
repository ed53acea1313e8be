"""Stage 1, fetch: ``python -m stages fetch``.

The four IDX files of ``fetch.dataset`` (MNIST or Fashion-MNIST) into ``data/raw/``, checksummed,
and ``data/raw/dataset.json`` (the dataset's name and class names). Where from: ``MNIST_MIRROR``,
``DATA_MIRROR`` or the public mirrors (``pipeline.download``), or ``keras.datasets`` with
``fetch.source: keras``.
"""

from __future__ import annotations

import sys

from pipeline.datasets import DATASETS, mirrors_for
from pipeline.download import fetch_file, fetch_keras, mirror_hint, write_dataset_info
from pipeline.params import FetchParams, load_params
from pipeline.paths import RAW


def main(argv=()) -> None:
    params = load_params("fetch", FetchParams)
    dataset = DATASETS[params.dataset]
    if params.source == "keras":
        fetch_keras(dataset, RAW)
    else:
        mirrors = mirrors_for(dataset)
        for name, sha256 in dataset.sha256.items():
            fetch_file(
                name,
                mirrors,
                RAW,
                sha256=sha256,
                hint=mirror_hint(dataset),
                retries=params.retries,
                timeout=params.timeout,
                progress=sys.stderr.isatty(),
            )
    write_dataset_info(dataset, RAW)
