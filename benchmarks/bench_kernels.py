"""Fused CPU kernels vs torch.nn.functional.gumbel_softmax vs a plain copy.

Same as ``gumbelkit bench`` (see gumbelkit/experiments/bench.py for what each
column means); run from the repository root:

    PYTHONPATH=src python benchmarks/bench_kernels.py [--quick] [--repeats N] [--shapes 65536x8]
"""

import sys

from gumbelkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
