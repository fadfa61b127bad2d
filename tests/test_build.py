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


def test_demo_trains_both_models_and_draws(capsys, tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    assert main(["demo", "--epochs", "1", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torch_convpool: held-out accuracy" in out and "torch.nn: held-out accuracy" in out
    assert "receptive field of the last conv layer: 22x22 px" in out
    for png in ("training_curves.png", "receptive_field.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rf_command_plots_a_model(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "rf.png"
    assert main(["rf", "tests.rf_models:resnet_like", "--input-size", "3", "32", "32",
                 "--plot", str(png)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"


def _tool(name):
    """The formatter/linter from this environment (scripts/setup_env.sh installs both)."""
    import os
    import shutil
    import sys

    local = os.path.join(os.path.dirname(sys.executable), name)
    path = local if os.path.exists(local) else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed here (scripts/setup_env.sh installs it)")
    return path


def test_sources_follow_the_formatter_and_linter_settings():
    # .clang-format for csrc/, [tool.ruff] in pyproject.toml for the Python: style is checked here,
    # never in review.
    import pathlib
    import subprocess

    root = pathlib.Path(__file__).resolve().parent.parent
    sources = sorted(str(p) for ext in ("*.cpp", "*.h", "*.cu", "*.cuh")
                     for p in (root / "csrc").rglob(ext))
    formatted = subprocess.run([_tool("clang-format"), "--dry-run", "--Werror", *sources],
                               capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stderr[-3000:]
    linted = subprocess.run([_tool("ruff"), "check", "--no-cache", str(root)], capture_output=True,
                            text=True, cwd=root)
    assert linted.returncode == 0, linted.stdout[-3000:]
