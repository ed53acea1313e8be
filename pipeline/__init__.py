"""The pipeline's own logic, between the ``nn`` library and the entry points.

Floors: ``nn`` (NumPy only) <- ``pipeline`` (this package) <- entry points (``stages``, ``sweep``,
``tools``, ``bench``, ``nn_mnist``). Nothing here imports an entry point, and importing any module
of this package changes no process state: pinning the numerics (``pipeline.numerics.pin``) and
keeping freed memory (``pipeline.allocator``) are calls that an entry point makes, first thing.

- ``errors``: :class:`PipelineError`, a user mistake reported as one line.
- ``paths``: where every stage reads and writes.
- ``params``: the ``params.yaml`` sections as typed dataclasses, and their parser (dotted-key
  errors).
- ``numerics``, ``allocator``: what decides the float results; how memory is kept.
- ``files``: atomic, deterministic writers.
- ``datasets``, ``idx``, ``download``, ``data``: the datasets, IDX files, mirrors, and the
  processed splits.
- ``models``, ``training``: the model and optimizer a params section describes, and the recipe that
  trains it.
- ``metrics``, ``figures``: scores and plots of a trained model.
"""
