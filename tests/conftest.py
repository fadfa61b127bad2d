import os
import zlib

import pytest
import torch
from hypothesis import HealthCheck, settings

import torch_convpool  # noqa: F401  (loads the ops)
from torch_convpool.testing import cuda_emulation, poison_outputs

# Property-based tests (test_fuzz_*.py). "ci", the default: a fixed set of examples (derandomized,
# so a red run reproduces), 200 per test, a few hundred per op family, quick enough for
# every run. "long" (pytest --hypothesis-profile=long): thousands per family, fresh random draws.
_FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
             print_blob=True)
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_FUZZ)
settings.register_profile("long", max_examples=2500, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# torch's CUDA convolutions default to TF32 (10-bit mantissas) on Ampere and later: as a float32
# reference they would be off by ~1e-3. Ours compute in float32.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Every numerical test runs on each device: the CPU's own kernels ("cpu"), the CUDA kernels'
# bodies run on the CPU ("emulated": cuda_emulation(), so the GPU's index math and float16/bfloat16
# arithmetic are checked without a GPU), and the GPU ("cuda", skipped without one).
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("emulated", id="emulated"),
           pytest.param("cuda", id="cuda", marks=CUDA)]


@pytest.fixture(params=DEVICES)
def device(request):
    """The device to put tensors on: "cpu" for the "emulated" parameter too, with emulation on."""
    if request.param == "emulated":
        with cuda_emulation():
            yield "cpu"
    else:
        yield request.param


@pytest.fixture(params=["cpu", "emulated"])
def cpu_kernels(request):
    """For CPU-only tests: runs them with the CPU's own kernels and with the CUDA kernels' bodies
    (CUDA emulation)."""
    with cuda_emulation(request.param == "emulated"):
        yield request.param


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _poisoned_outputs():
    """Every CPU output starts as NaN: a kernel that skips part of its output fails."""
    with poison_outputs():
        yield


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (huge tensors: about a minute, ~16 GB)")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "emulated_sample(n): run about 1 in n of this test's 'emulated' cases (a fixed "
        "spread over its grid: the CRC of each case's id), to keep the suite's time in bounds")


def _in_emulated_sample(item) -> bool:
    marker = item.get_closest_marker("emulated_sample")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or callspec.params.get("device") != "emulated":
        return True
    return zlib.crc32(item.name.encode()) % marker.args[0] == 0


def pytest_collection_modifyitems(config, items):
    sampled_out = [item for item in items if not _in_emulated_sample(item)]
    if sampled_out:
        config.hook.pytest_deselected(items=sampled_out)
        items[:] = [item for item in items if _in_emulated_sample(item)]
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
