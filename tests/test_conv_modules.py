"""torch_convpool.nn convolution modules against their torch.nn namesakes."""
import pytest
import torch
from torch.testing import assert_close

import torch_convpool.nn as cnn

PAIRS = [
    (cnn.Conv1d, torch.nn.Conv1d, 1),
    (cnn.Conv2d, torch.nn.Conv2d, 2),
    (cnn.Conv3d, torch.nn.Conv3d, 3),
]
TRANSPOSED = [
    (cnn.ConvTranspose1d, torch.nn.ConvTranspose1d, 1),
    (cnn.ConvTranspose2d, torch.nn.ConvTranspose2d, 2),
    (cnn.ConvTranspose3d, torch.nn.ConvTranspose3d, 3),
]
SIZES = {1: (12,), 2: (9, 8), 3: (6, 5, 7)}


def twins(ours_cls, torch_cls, *args, **kwargs):
    torch.manual_seed(1)
    ours = ours_cls(*args, **kwargs)
    torch.manual_seed(1)
    theirs = torch_cls(*args, **kwargs)
    return ours, theirs


@pytest.mark.parametrize("ours_cls,torch_cls,dims", PAIRS)
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(stride=2, padding=1, bias=False),
    dict(padding="same", dilation=2, groups=2),
    dict(padding="valid", groups=4),
    dict(padding=2, padding_mode="reflect"),
    dict(padding=1, padding_mode="replicate", stride=2),
    dict(padding=1, padding_mode="circular"),
    dict(padding="same", padding_mode="reflect"),
])
def test_module_matches_torch(device, ours_cls, torch_cls, dims, kwargs):
    ours, theirs = twins(ours_cls, torch_cls, 4, 8, 3, device=device, **kwargs)
    assert repr(ours).split("(", 1)[1] == repr(theirs).split("(", 1)[1]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for (_, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(p, q)  # same initialisation, same random stream
    x = torch.randn(2, 4, *SIZES[dims], device=device, requires_grad=True)
    out, expected = ours(x), theirs(x)
    assert_close(out, expected, rtol=1e-4, atol=1e-4)
    out.square().sum().backward()
    expected.square().sum().backward()
    assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ours_cls,torch_cls,dims", PAIRS + TRANSPOSED)
def test_state_dict_from_torch_loads_and_gives_same_outputs(ours_cls, torch_cls, dims):
    theirs = torch_cls(4, 6, 3, stride=2, padding=1)
    ours = ours_cls(4, 6, 3, stride=2, padding=1)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, *SIZES[dims])
    assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_is_a_torch_module_subclass():
    assert isinstance(cnn.Conv2d(1, 1, 1), torch.nn.Conv2d)


@pytest.mark.parametrize("ours_cls,torch_cls,dims", TRANSPOSED)
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(stride=2, padding=1, output_padding=1, bias=False),
    dict(stride=3, dilation=2, groups=2, output_padding=2),
])
def test_transposed_module_matches_torch(device, ours_cls, torch_cls, dims, kwargs):
    ours, theirs = twins(ours_cls, torch_cls, 4, 6, 3, device=device, **kwargs)
    assert repr(ours).split("(", 1)[1] == repr(theirs).split("(", 1)[1]
    x = torch.randn(2, 4, *SIZES[dims], device=device)
    assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
    assert_close(ours(x[0]), theirs(x[0]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ours_cls,torch_cls,dims", TRANSPOSED)
def test_output_size_picks_output_padding_like_torch(ours_cls, torch_cls, dims):
    ours, theirs = twins(ours_cls, torch_cls, 4, 6, 3, stride=3, padding=1)
    x = torch.randn(1, 4, *SIZES[dims])
    base = [(n - 1) * 3 - 2 + 3 for n in SIZES[dims]]
    for extra in range(3):
        size = [b + extra for b in base]
        assert_close(ours(x, output_size=size), theirs(x, output_size=size), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="requested an output size"):
        ours(x, output_size=[b + 3 for b in base])
    with pytest.raises(ValueError, match="requested an output size"):
        ours(x, output_size=[b - 1 for b in base])


def test_strided_same_module():
    m = cnn.Conv2d(3, 5, 3, stride=2, padding="same")
    assert m(torch.randn(1, 3, 11, 8)).shape == (1, 5, 6, 4)
    m = cnn.Conv2d(3, 5, 4, stride=2, padding="same", padding_mode="replicate")
    assert m(torch.randn(1, 3, 11, 8)).shape == (1, 5, 6, 4)


def test_constructor_errors_match_torch():
    with pytest.raises(ValueError, match="divisible by groups"):
        cnn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        cnn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="zeros"):
        cnn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")(torch.randn(1, 3, 5, 5))
