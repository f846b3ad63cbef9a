"""`python -m pipeline.aggregator`: the same as `wordpipe aggregator`."""

import sys

from pipeline.cli import main

sys.exit(main(["aggregator", *sys.argv[1:]]))
