"""Fix what decides the float results, before NumPy loads: one BLAS kernel, one BLAS thread, one
set of NumPy SIMD loops.

The same float32 program gives different bits under different OpenBLAS kernels (``SkylakeX`` and
``Haswell`` split the matmul sums differently), thread counts (each thread sums a slice) and NumPy
SIMD paths (its AVX2 and baseline ``exp``/``tanh`` round differently). OpenBLAS picks its kernel
and threads from the CPU and the environment *when the library loads*, and NumPy picks its SIMD
paths at import, so :func:`pin` only touches environment variables and must run before the first
``import numpy``. Importing this module changes nothing: each entry point that trains or evaluates
calls :func:`pin` first thing (``python -m stages <name>``, which DVC runs; the benchmarks; the
determinism tests' subprocesses), and nothing here imports NumPy at module level.

The pinned set is the widest one every x86-64 CPU with AVX2 and FMA (x86-64-v3: Intel since
Haswell, AMD since Zen) can run: OpenBLAS ``Haswell`` and NumPy's ``X86_V3`` loops. On any other
CPU nothing is forced (a kernel the CPU cannot run would crash) and :func:`problems` says why the
results may differ from the committed ones.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import sys
from pathlib import Path

__all__ = [
    "KERNEL",
    "BLAS_THREADS",
    "pinned_environment",
    "pin",
    "pin_failure",
    "cpu_flags",
    "loaded",
    "problems",
    "deterministic_blas",
]

KERNEL = "Haswell"  # OpenBLAS's AVX2 + FMA kernel
BLAS_THREADS = 1
# x86-64-v3, as Linux names the flags (lzcnt is part of "abm").
V3_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "movbe", "abm")
# NumPy's dispatch targets above x86-64-v3 (the 2.x names and the older per-feature ones; a name
# NumPy does not know is ignored).
NUMPY_ABOVE_V3 = (
    "X86_V4 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR"
)
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_failure: str | None = None  # why the last pin() could not pin, or None


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from Linux's ``/proc/cpuinfo``, or None where there is none (the
    kernel is then left to OpenBLAS: better unpinned than forced onto a CPU that lacks it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def pinned_environment(flags: set[str] | None, machine: str) -> tuple[dict[str, str], str | None]:
    """``(variables, failure)``: the variables to set so every AVX2 + FMA CPU computes alike, and
    None; or the thread variables only and a one-line reason where the kernel cannot be pinned."""
    variables = {name: str(BLAS_THREADS) for name in THREAD_VARIABLES}
    if machine.lower() not in ("x86_64", "amd64"):
        return variables, f"{machine} CPU: the pinned kernels are x86-64 (AVX2 + FMA) only"
    if flags is None:
        return variables, "the CPU's feature flags could not be read (/proc/cpuinfo)"
    missing = [f for f in V3_FLAGS if f not in flags]
    if missing:
        return variables, f"the CPU lacks {', '.join(missing)} (x86-64-v3: AVX2 + FMA)"
    variables.update(OPENBLAS_CORETYPE=KERNEL, NPY_DISABLE_CPU_FEATURES=NUMPY_ABOVE_V3)
    return variables, None


def pin(environ=os.environ) -> str | None:
    """Set the variables of :func:`pinned_environment` in ``environ``, overriding the user's, if
    NumPy has not been imported yet. Returns why the kernel is not pinned, or None."""
    global _failure
    if "numpy" in sys.modules:
        _failure = "NumPy was imported before pipeline.numerics.pin(), so its kernel was not pinned"
        return _failure
    variables, _failure = pinned_environment(cpu_flags(), platform.machine())
    environ.update(variables)
    return _failure


def pin_failure() -> str | None:
    """Why the last :func:`pin` did not pin the kernel (None: it did)."""
    return _failure


def loaded() -> dict:
    """What decides the numbers in this process, read from the libraries as loaded: Python,
    NumPy, its BLAS (threadpoolctl), the BLAS kernel and threads, NumPy's SIMD targets in use."""
    import numpy as np
    from threadpoolctl import threadpool_info

    blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    first = blas[0] if blas else {}
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # NumPy 1.x
        from numpy.core import _multiarray_umath as umath
    simd = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": first.get("internal_api"),
        "blas_version": first.get("version"),
        "blas_kernel": first.get("architecture"),
        "blas_threads": first.get("num_threads"),
        "numpy_simd": simd,
    }


def lock_pin(package: str, lock: Path, python: tuple[int, int]) -> str | None:
    """The version ``requirements.lock`` pins for ``package`` on this Python, or None."""
    try:
        text = lock.read_text()
    except OSError:
        return None
    for m in re.finditer(rf"^{re.escape(package)}==(\S+)(?: ; (.*?))? \\$", text, re.M):
        marker = m.group(2)
        if marker is None or _python_marker_holds(marker, python):
            return m.group(1)
    return None


def _python_marker_holds(marker: str, python: tuple[int, int]) -> bool:
    """Evaluate the ``python_full_version`` clauses uv writes (``>= '3.11'``, ``== '3.11.*'``)."""
    version = "{}.{}".format(*python)
    for op, value in re.findall(r"python_full_version\s*(<=|>=|==|<|>)\s*'([^']+)'", marker):
        if op == "==":
            if not (version == value.removesuffix(".*") or f"{version}.0" == value):
                return False
            continue
        want = tuple(int(x) for x in value.split(".")[:2])
        if not {"<": python < want, "<=": python <= want, ">": python > want, ">=": python >= want}[
            op
        ]:
            return False
    return True


def problems(info: dict, lock: Path | None = None) -> list[str]:
    """Why this process may not reproduce the committed results; empty when it should."""
    found = []
    if _failure is not None:
        found.append(_failure)
    elif info["blas"] != "openblas":
        found.append(f"NumPy's BLAS is {info['blas']}, not OpenBLAS")
    elif info["blas_kernel"] != KERNEL:
        found.append(f"OpenBLAS loaded its {info['blas_kernel']} kernel, not {KERNEL}")
    if info["blas_threads"] not in (None, BLAS_THREADS):
        found.append(f"BLAS runs {info['blas_threads']} threads, not {BLAS_THREADS}")
    if lock is not None:
        want = lock_pin("numpy", lock, sys.version_info[:2])
        if want is not None and want != info["numpy"]:
            found.append(f"NumPy is {info['numpy']}, not the {want} that {lock.name} pins")
    return found


def deterministic_blas(lock: Path | None = Path("requirements.lock")):
    """Hold BLAS to one thread (the thread count changes float rounding) and say, in one warning
    line, why this process may not reproduce the committed results, if it may not (the kernel
    itself is fixed by :func:`pin`, before NumPy loads). Returns the threadpoolctl context (use it
    in a ``with``)."""
    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(limits=BLAS_THREADS)
    found = problems(loaded(), lock)
    if found:
        logging.getLogger("pipeline").warning(
            "warning: results may differ from the committed ones: %s", "; ".join(found)
        )
    return limits
