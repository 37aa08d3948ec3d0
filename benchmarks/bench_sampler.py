"""Token sampler benchmark: `python benchmarks/bench_sampler.py [--batch 64 --vocab 128000]`.

The same as `gumbelkit bench --sampler`; prints ratios, asserts nothing.
"""

import sys

from gumbelkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "--sampler", *sys.argv[1:]]))
