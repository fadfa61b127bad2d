"""Command line: ``python -m torch_convpool {check,demo,bench,rf}``."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _check(args) -> int:
    import torch

    import torch_convpool

    from ._selftest import run_selftests

    print(f"torch_convpool {torch_convpool.__version__} with torch {torch.__version__}")
    for key, value in sorted(torch_convpool.build_info().items()):
        print(f"  {key:17s} {value}")
    print(f"  cuda available    {torch.cuda.is_available()}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    failures = 0
    for line, ok in run_selftests(devices):
        print(line)
        failures += not ok
    print("all ops OK" if failures == 0 else f"{failures} op(s) FAILED")
    return 1 if failures else 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(epochs=args.epochs, out_dir=args.out_dir)


def _bench(args) -> int:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
    if not script.exists():
        print("benchmarks/run.py is not in this installation (run from a source checkout)")
        return 1
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _rf(args) -> int:
    import functools
    import importlib

    from .receptive_field import receptive_field

    module_name, _, attr = args.model.partition(":")
    if not module_name or not attr:
        print("rf: expected MODULE:CALLABLE (e.g. torchvision.models:resnet18), "
              f"got {args.model!r}", file=sys.stderr)
        return 2
    try:
        build = functools.reduce(getattr, attr.split("."), importlib.import_module(module_name))
    except (ImportError, AttributeError) as error:
        print(f"rf: cannot load {args.model}: {error}", file=sys.stderr)
        return 2
    model = build().to(args.device)
    print(receptive_field(model, args.input_size, device=args.device, verify=not args.no_verify))
    if args.plot:
        from .rf_plot import plot_model_receptive_field

        try:
            layer = plot_model_receptive_field(args.plot, model, args.input_size, args.device)
        except ValueError as error:
            print(f"rf: cannot plot: {error}", file=sys.stderr)
            return 2
        print(f"wrote {args.plot} (the centre unit of {layer})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torch_convpool")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="show what the build holds and self-test every op").set_defaults(fn=_check)
    demo = sub.add_parser("demo", help="train a CNN of our layers and one of torch.nn's on "
                          "scikit-learn's digits; write training-curve and receptive-field PNGs")
    demo.add_argument("--epochs", type=int, default=12)
    demo.add_argument("--out-dir", default="demo_output", help="where the PNGs go")
    demo.set_defaults(fn=_demo)
    bench = sub.add_parser("bench", help="run the benchmarks (arguments go to benchmarks/run.py)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(fn=_bench)
    rf = sub.add_parser("rf", help="print a model's receptive field, layer by layer")
    rf.add_argument("model", metavar="MODULE:CALLABLE",
                    help="a callable returning the model, e.g. torchvision.models:resnet18")
    rf.add_argument("--input-size", type=int, nargs="+", required=True, metavar="N",
                    help="one input's size without the batch dim, e.g. 3 224 224")
    rf.add_argument("--device", default="cpu")
    rf.add_argument("--no-verify", action="store_true", help="skip the gradient check")
    rf.add_argument("--plot", metavar="PNG", help="draw the analytic and the effective receptive "
                    "field of the last spatial layer's centre unit into this PNG")
    rf.set_defaults(fn=_rf)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
