"""Sweeps of DVC experiments on a Dask cluster: ``python -m sweep sweeps/lr.yaml``.

A tool beside the pipeline (not a stage): ``spec`` reads sweep files, ``point`` runs one point in a
scratch clone and pushes it, ``runner`` drives the points on Dask, ``report`` tabulates them.
"""
