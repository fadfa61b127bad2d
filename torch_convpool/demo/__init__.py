"""``python -m torch_convpool demo``: a CNN of our layers learns scikit-learn's handwritten digits
beside the same CNN built from ``torch.nn``; training curves and receptive-field pictures as PNGs.

data.py loads the digits, model.py builds the CNN from either set of layers, training.py trains
and evaluates it, figures.py draws the curves, run.py puts it together.
"""
from .run import run_demo

__all__ = ["run_demo"]
