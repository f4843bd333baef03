"""pytest setup for the Python package's tests (tests/python/).

They test the installed package (`pip install .`), never python/longattn from
the source tree: the native module exists only in the installed one.
"""

import numpy as np
import pytest

import support


def pytest_report_header(config):
    import longattn

    torch = support.torch
    cuda = torch is not None and torch.cuda.is_available()
    try:
        import mlx.core as mx

        mlx = f"mlx {mx.__version__}"
    except ImportError:
        mlx = "mlx not installed (test_mlx.py skips)"
    return [
        f"longattn {longattn.__version__} from {longattn.__file__}",
        f"CUDA backend built: {longattn.cuda_built()}; torch: "
        f"{torch.__version__ if torch is not None else 'not installed'}"
        f"{' with a GPU' if cuda else ', no GPU'}; {mlx}",
    ]


@pytest.fixture
def rng():
    return np.random.default_rng(20261130)
