"""Every backward on CUDA gathers instead of scattering with atomics: two runs are bitwise equal."""
import pytest
import torch
from conftest import CUDA

import torch_convpool.functional as CF

CASES = {
    "conv2d": lambda x: CF.conv2d(x, torch.ones(8, 4, 3, 3, device=x.device) / 9, stride=2, padding=1),
    "conv3d": lambda x: CF.conv3d(x.unsqueeze(2).expand(-1, -1, 4, -1, -1).contiguous(),
                                  torch.ones(8, 4, 3, 3, 3, device=x.device), padding=1),
    "depthwise_conv2d": lambda x: CF.conv2d(x, torch.ones(8, 1, 3, 3, device=x.device), padding=1,
                                            groups=4),
    "conv_transpose2d": lambda x: CF.conv_transpose2d(x, torch.ones(4, 3, 4, 4, device=x.device),
                                                      stride=2, padding=1),
    "max_pool2d": lambda x: CF.max_pool2d(x, 3, 1, 1),
    "max_pool3d": lambda x: CF.max_pool3d(x.unsqueeze(2).expand(-1, -1, 5, -1, -1), 3, 1, 1),
    "avg_pool2d": lambda x: CF.avg_pool2d(x, 3, 1, 1),
    "adaptive_avg_pool2d": lambda x: CF.adaptive_avg_pool2d(x, 7),
    "adaptive_max_pool2d": lambda x: CF.adaptive_max_pool2d(x, 7),
}


@CUDA
@pytest.mark.parametrize("name", CASES)
def test_backward_is_bitwise_deterministic(name):
    x = torch.randn(4, 4, 33, 31, device="cuda", requires_grad=True)
    out = CASES[name](x)
    g = torch.randn_like(out)
    grads = [torch.autograd.grad(CASES[name](x), x, g)[0] for _ in range(3)]
    assert all(torch.equal(grads[0], other) for other in grads[1:])
