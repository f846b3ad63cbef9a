"""`python -m pipeline.cli`: the same as `wordpipe`."""

import sys

from pipeline.cli import main

sys.exit(main())
