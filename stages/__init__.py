"""The pipeline's stages, each run as ``python -m stages.<name>``.

Importing this package first pins what decides the float results (one OpenBLAS kernel, one BLAS
thread, one set of NumPy SIMD loops; see ``stages.numerics``), because that must happen before
NumPy loads, and a stage module's own imports load NumPy. It also keeps freed memory in the
process (``stages.allocator``: speed only).
"""

from stages import allocator, numerics

numerics.pin()
allocator.keep_freed_memory()
