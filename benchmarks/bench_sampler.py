"""Token sampler benchmark: `python benchmarks/bench_sampler.py [--batch 64 --vocab 128000]`.

The same as `gumbelkit bench-sampler`; prints ratios, asserts nothing.
"""

import argparse
import sys

from gumbelkit.experiments import bench_sampler

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=bench_sampler.__doc__)
    bench_sampler.add_arguments(parser)
    sys.exit(bench_sampler.run(parser.parse_args()))
