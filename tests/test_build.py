"""The build's self-description, the torch-mismatch message and the command line."""
import pytest
import torch

import torch_convpool
from torch_convpool import _build_check, _build_meta
from torch_convpool.__main__ import main


def test_build_info_says_what_the_build_holds():
    info = torch_convpool.build_info()
    assert set(info) >= {"cuda", "cuda_version", "torch_version", "openmp", "parallel_backend"}
    assert info["torch_version"] == torch.__version__
    assert info["cuda"] in ("yes", "no")


def test_torch_mismatch_asks_for_a_rebuild(monkeypatch):
    monkeypatch.setattr(_build_meta, "TORCH_VERSION", "1.0.0+elsewhere")
    with pytest.raises(ImportError, match="built against torch 1.0.0.*Rebuild"):
        _build_check.load_compiled_module()


def test_check_command_self_tests_every_op(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "all ops OK" in out
    for op in ("conv2d", "conv_transpose3d", "max_pool1d", "avg_pool3d", "adaptive_max_pool2d",
               "max_unpool2d"):
        assert op in out


def test_demo_trains(capsys):
    assert main(["demo", "--steps", "20"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
