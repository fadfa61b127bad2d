import pytest
import torch

import torch_convpool  # noqa: F401  (loads the ops)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Every numerical test runs on each device; the CUDA ones skip without a GPU.
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=CUDA)]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["scatter", "gather"])
def cpu_gather_mode(request):
    """Runs a test with the CPU kernels' own scatter loops and with the CUDA kernels' gather
    element functions (col2im, pooling backward), so the GPU's index math is checked here too."""
    from torch_convpool import _C

    _C._set_cpu_gather_mode(request.param == "gather")
    yield request.param
    _C._set_cpu_gather_mode(False)
