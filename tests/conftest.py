import os

import pytest
import torch
from hypothesis import HealthCheck, settings

import torch_convpool  # noqa: F401  (loads the ops)

# Property-based tests (test_fuzz_*.py). "ci", the default: a fixed set of examples (derandomized,
# so a red run reproduces), 200 per test, a few hundred per op family, quick enough for
# every run. "long" (pytest --hypothesis-profile=long): thousands per family, fresh random draws.
_FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
             print_blob=True)
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_FUZZ)
settings.register_profile("long", max_examples=2500, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (huge tensors: about a minute, ~16 GB)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
