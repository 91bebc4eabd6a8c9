"""``python -m flows``: the command line (:mod:`flows.cli`)."""

import sys

from flows.cli import main

sys.exit(main())
