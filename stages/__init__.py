"""The pipeline's stages: thin entry points that DVC runs as ``python -m stages <name> [args]``.

Each ``stages/<name>.py`` reads its ``params.yaml`` section, calls the ``pipeline`` layer and writes
its outputs. Importing this package or a stage module changes no process state; the runner
(``stages/__main__.py``) pins the numerics before NumPy loads, then runs the stage's ``main``.
"""
