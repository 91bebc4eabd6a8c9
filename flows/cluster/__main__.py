"""``python -m flows.cluster``: see :mod:`flows.cluster.demo`."""

import sys

from flows.cluster.demo import main

sys.exit(main())
