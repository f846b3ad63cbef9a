"""`python -m pipeline.worker`: the same as `wordpipe worker`."""

import sys

from pipeline.cli import main

sys.exit(main(["worker", *sys.argv[1:]]))
