"""torch_convpool: convolution and pooling for PyTorch as C++/CUDA custom operators.

``torch_convpool.functional`` mirrors ``torch.nn.functional`` and ``torch_convpool.nn`` mirrors
``torch.nn`` for the convolution and pooling families; the ops themselves are
``torch.ops.convpool.*``.
"""
from . import functional, memory, nn
from ._library import _C  # noqa: F401  (loads the compiled ops and their fakes)
from .algorithms import get_conv_algorithm, set_conv_algorithm
from .conversion_report import ConversionReport
from .convert import conversion_report, convert
from .nn import *  # noqa: F401,F403
from .nn import __all__ as _nn_all
from .receptive_field import ReceptiveFieldReport, receptive_field
from .reroute import enabled

__version__ = "0.1.0"

__all__ = [
    "functional", "memory", "nn", "build_info", "receptive_field", "ReceptiveFieldReport", "convert",
    "conversion_report", "ConversionReport", "enabled",
    "set_conv_algorithm", "get_conv_algorithm",
    *_nn_all,
]


def build_info() -> dict:
    """What the compiled library holds: CUDA or not, the torch/CUDA versions it was built
    against, OpenMP and the parallel backend."""
    return dict(_C.build_info())
