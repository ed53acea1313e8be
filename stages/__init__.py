"""The pipeline's stages, each run as ``python -m stages.<name>``.

Importing this package first pins what decides the float results (one OpenBLAS kernel, one BLAS
thread, one set of NumPy SIMD loops; see ``stages.numerics``), because that must happen before
NumPy loads, and a stage module's own imports load NumPy.
"""

from stages import numerics

numerics.pin()
