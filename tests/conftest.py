import sys
from pathlib import Path

from pipeline import numerics

# The suite is an entry point: it pins the numerics before NumPy loads, as `python -m stages` does.
numerics.pin()

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# The same examples on every run and machine: a test suite that passes once passes again.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.load_profile("deterministic")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from pipeline.idx import FILES, local_mnist_folder  # noqa: E402


@pytest.fixture(scope="session")
def mnist_folder():
    """A local folder with the real MNIST files (CI: MNIST_MIRROR=../shared/data/mnist)."""
    folder = local_mnist_folder(ROOT)
    name = FILES["train"][0]
    if not ((folder / name).exists() or (folder / f"{name}.gz").exists()):
        pytest.fail(
            f"real MNIST not found in {folder}: set MNIST_MIRROR to a folder with the "
            "MNIST .gz files"
        )
    return folder
